// AdamW (PyTorch `torch.optim.AdamW` semantics: decoupled weight decay, bias correction), the linear
// warm-up / linear decay schedule of transformers (`get_linear_schedule_with_warmup`), and global-norm
// gradient clipping (`torch.nn.utils.clip_grad_norm_`).
//
// Memory (the kernel: tfjs/adamw-kernel.ts; storage access: tfjs/storage.ts): the moments live outside the backend (the wasm heap is capped at 4 GiB), in the memory of a
// small WebAssembly SIMD kernel that runs the fused update, one parameter at a time (plain
// JavaScript when WebAssembly SIMD is unavailable): on the wasm and cpu
// backends it reads parameter and gradient in the backend's own memory and writes the new parameter
// straight into a fresh backend buffer that the variable then takes (no
// tensor temporaries beyond the new parameter); elsewhere it falls back to dataSync + assign.
//
// State (step count and moments) can be saved and restored exactly (getState/setState, or a
// safetensors file with saveState/loadState), so a resumed run continues bit-for-bit.
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs';
import { parseSafetensors, toFloat32, writeSafetensors, type SafeTensorInput } from '../io/safetensors';
import { assertFiniteWeights } from '../io/weights';
import { AdamKernel, type MomentSlot, type StepScalars } from '../tfjs/adamw-kernel';
import { freshStorage, storageView } from '../tfjs/storage';
import { fusedSumSquares } from '../tfjs/ops';

export interface AdamWOptions {
  /** Learning rate, or a schedule of the step index (0-based, before the update). */
  lr: number | ((step: number) => number);
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (PyTorch default 0.01). */
  weightDecay?: number;
}

export interface NamedVariable {
  name: string;
  variable: tf.Variable;
}

export interface AdamWState {
  /** Number of updates done. */
  step: number;
  /** First and second moments by parameter name. */
  m: Record<string, Float32Array>;
  v: Record<string, Float32Array>;
}

// ---------------------------------------------------------------------------------------------
// Schedule, gradient accumulation and clipping.

/** transformers' get_linear_schedule_with_warmup: 0 -> lr over warmupSteps, then linearly to 0 at totalSteps. */
export function linearWarmupDecay(step: number, opts: { lr: number; warmupSteps: number; totalSteps: number }): number {
  const { lr, warmupSteps, totalSteps } = opts;
  if (step < warmupSteps) return (lr * step) / Math.max(1, warmupSteps);
  return lr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
}

/**
 * Gradient accumulation over micro-batches: the first micro-batch's gradients are kept as they are;
 * later ones are added element-wise and both inputs disposed. Returns the running sums.
 */
export function accumulateGrads(acc: tf.Tensor[] | null, grads: tf.Tensor[]): tf.Tensor[] {
  if (!acc) return grads;
  return acc.map((a, i) => {
    const sum = tf.add(a, grads[i]);
    a.dispose();
    grads[i].dispose();
    return sum;
  });
}

type GradInput = tf.Tensor[] | Map<tf.Variable, tf.Tensor> | Record<string, tf.Tensor>;

function gradList(grads: GradInput): tf.Tensor[] {
  if (Array.isArray(grads)) return grads;
  if (grads instanceof Map) return [...grads.values()];
  return Object.values(grads);
}

/**
 * The four float64 partial sums of view^2 over its groups of four floats (sum l is over view[4k + l]),
 * the last length % 4 floats left out: four interleaved sums, so that the loop is not one long chain
 * of dependent additions. fusedSumSquares computes the same sums, bit for bit, with SIMD.
 */
function lanePartialSums(view: Float32Array): [number, number, number, number] {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const n4 = view.length - (view.length % 4);
  for (let i = 0; i < n4; i += 4) {
    s0 += view[i] * view[i];
    s1 += view[i + 1] * view[i + 1];
    s2 += view[i + 2] * view[i + 2];
    s3 += view[i + 3] * view[i + 3];
  }
  return [s0, s1, s2, s3];
}

/**
 * Global L2 norm of the gradients (float64 accumulation: per tensor, four partial sums over its groups
 * of four floats, the tail added to the first, added in a fixed order). On the wasm backend the
 * partial sums come from a SIMD kernel (tfjs/fused.ts), bit for bit the loop's.
 */
export function globalNorm(grads: GradInput): number {
  let sq = 0;
  for (const g of gradList(grads)) {
    const parts = fusedSumSquares(g);
    const view = storageView(g);
    if (view) {
      let [s0, s1, s2, s3] = parts ?? lanePartialSums(view);
      for (let i = view.length - (view.length % 4); i < view.length; i++) s0 += view[i] * view[i];
      sq += s0 + s1 + s2 + s3;
    } else sq += tf.tidy(() => tf.sum(tf.square(g))).dataSync()[0];
  }
  return Math.sqrt(sq);
}

/**
 * The factor torch.nn.utils.clip_grad_norm_ scales every gradient by: maxNorm / (norm + 1e-6) when the
 * global norm exceeds maxNorm, else 1 (and the norm). AdamW.step takes it as `gradScale` and applies it
 * inside its update (the same float32 product as scaling the tensors first, without the copies).
 */
export function clipScale(grads: GradInput, maxNorm: number): { scale: number; norm: number } {
  const norm = globalNorm(grads);
  const scale = maxNorm / (norm + 1e-6);
  return { scale: scale < 1 ? scale : 1, norm };
}

/**
 * torch.nn.utils.clip_grad_norm_: when the global norm exceeds maxNorm, every gradient is scaled by
 * maxNorm / (norm + 1e-6). Returns the same container (not copied) when no scaling is needed,
 * otherwise new tensors of the same container type (the caller disposes the old ones).
 */
export function clipByGlobalNorm<G extends GradInput>(grads: G, maxNorm: number): { grads: G; norm: number } {
  const { scale, norm } = clipScale(grads, maxNorm);
  if (!(scale < 1)) return { grads, norm };
  const f = (g: tf.Tensor) => tf.mul(g, scale);
  if (Array.isArray(grads)) return { grads: grads.map(f) as G, norm };
  if (grads instanceof Map) return { grads: new Map([...(grads as Map<tf.Variable, tf.Tensor>)].map(([k, g]) => [k, f(g)])) as G, norm };
  return { grads: Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, f(g)])) as G, norm };
}


/** AdamW with moments outside the backend; see the module comment. */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly lr: number | ((step: number) => number);
  private t = 0;
  private readonly moments = new Map<tf.Variable, MomentSlot>();
  private readonly kernel: AdamKernel;

  constructor(opts: AdamWOptions & { simd?: boolean }) {
    this.kernel = new AdamKernel(opts.simd ?? true);
    this.lr = opts.lr;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  /** Number of updates done. */
  get stepCount(): number {
    return this.t;
  }

  /** The learning rate of the next update. */
  currentLr(): number {
    return typeof this.lr === 'function' ? this.lr(this.t) : this.lr;
  }

  /**
   * One update of `vars` with their gradients `grads` (parallel arrays). `lr` overrides the
   * configured rate; `lrScales` (parallel to `vars`) multiplies it per variable (parameter groups
   * with their own learning rates, e.g. the mapper and GPT-2); every gradient is multiplied by
   * `gradScale` first (float32; clipScale's factor). Gradients are not disposed.
   */
  step(vars: tf.Variable[], grads: tf.Tensor[], lr?: number, lrScales?: readonly number[], gradScale = 1): void {
    if (!(gradScale > 0 && gradScale <= 1)) throw new Error(`AdamW.step: gradScale must be in (0, 1], got ${gradScale}`);
    if (lrScales && lrScales.length !== vars.length) throw new Error('AdamW.step: variables and learning-rate scales differ in number');
    if (grads.length !== vars.length) throw new Error('AdamW.step: variables and gradients differ in number');
    const pairs: [tf.Variable, tf.Tensor][] = vars.map((v, i) => [v, grads[i]]);
    const rate = lr ?? this.currentLr();
    this.t += 1;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2 = 1 - this.beta2 ** this.t;
    for (const [k, [v, g]] of pairs.entries()) {
      if (!g) throw new Error(`AdamW.step: no gradient for variable ${v.name}`);
      if (g.size !== v.size) throw new Error(`AdamW.step: gradient of ${v.name} has ${g.size} values, the variable ${v.size}`);
      let slot = this.moments.get(v);
      if (!slot) {
        slot = this.kernel.alloc(v.size);
        this.moments.set(v, slot);
      }
      this.update(v, g, slot, lrScales ? rate * lrScales[k] : rate, bc1, bc2, gradScale);
    }
  }

  /** Whether the update runs as WebAssembly SIMD (else plain JavaScript). */
  get simd(): boolean {
    return this.kernel.simd;
  }

  private update(variable: tf.Variable, grad: tf.Tensor, slot: MomentSlot, lr: number, bc1: number, bc2: number, gscale: number): void {
    const k: StepScalars = {
      b1: this.beta1,
      omb1: 1 - this.beta1,
      b2: this.beta2,
      omb2: 1 - this.beta2,
      eps: this.eps,
      decay: 1 - lr * this.weightDecay,
      step: lr / bc1,
      sqrtBc2: Math.sqrt(bc2),
      gscale,
    };
    // The new parameter goes into fresh storage that then replaces the variable's (a new tensor id):
    // the wasm backend caches packed copies of matMul weights by tensor id, so writing in place would
    // leave stale copies behind. Allocate first, then take the views (no allocation after that).
    const gCopy = storageView(grad) ? null : (grad.dataSync() as Float32Array);
    const out = freshStorage(variable);
    const pCopy = storageView(variable) ? null : (variable.dataSync() as Float32Array);
    const g = gCopy ?? storageView(grad)!;
    const p = pCopy ?? storageView(variable)!;
    const q = out ? out.view() : new Float32Array(p.length);
    this.kernel.run(p, g, slot, q, k);
    const t = out ? out.tensor : tf.tensor(q, variable.shape, 'float32');
    variable.assign(t);
    t.dispose();
  }

  /** The state as plain arrays, keyed by `named` names (default: tfjs variable names). Copies. */
  getState(named?: NamedVariable[]): AdamWState {
    const s: AdamWState = { step: this.t, m: {}, v: {} };
    const list = named ?? [...this.moments.keys()].map((v) => ({ name: v.name, variable: v }));
    for (const { name, variable } of list) {
      const slot = this.moments.get(variable);
      if (!slot) continue; // never updated
      const { m, v } = this.kernel.views(slot);
      s.m[name] = m.slice();
      s.v[name] = v.slice();
    }
    return s;
  }

  /** Restore a state from getState (same names). Variables absent from the state start from zero moments. */
  setState(state: AdamWState, named?: NamedVariable[]): void {
    const list = named ?? Object.keys(state.m).map((name) => {
      const v = (tf.engine().registeredVariables as Record<string, tf.Variable>)[name];
      if (!v) throw new Error(`AdamW.setState: no variable named ${name}`);
      return { name, variable: v };
    });
    this.moments.clear();
    this.t = state.step;
    for (const { name, variable } of list) {
      const m = state.m[name];
      const v = state.v[name];
      if (!m && !v) continue;
      if (!m || !v || m.length !== variable.size || v.length !== variable.size) {
        throw new Error(`AdamW.setState: moments of ${name} do not match the variable (${variable.size} values)`);
      }
      const slot = this.kernel.alloc(variable.size);
      const views = this.kernel.views(slot);
      views.m.set(m);
      views.v.set(v);
      this.moments.set(variable, slot);
    }
  }

  /** Write the state to a safetensors file (`m.<name>`, `v.<name>`; step and hyperparameters in the metadata). */
  saveState(file: string, named: NamedVariable[]): void {
    const s = this.getState(named);
    const tensors = new Map<string, SafeTensorInput>();
    for (const name of Object.keys(s.m)) {
      tensors.set(`m.${name}`, { shape: [s.m[name].length], data: s.m[name] });
      tensors.set(`v.${name}`, { shape: [s.v[name].length], data: s.v[name] });
    }
    writeSafetensors(file, tensors, {
      format: 'clipcap-adamw',
      step: String(s.step),
      beta1: String(this.beta1),
      beta2: String(this.beta2),
      eps: String(this.eps),
      weight_decay: String(this.weightDecay),
    });
  }

  /** Read a state written by saveState. */
  loadState(file: string, named: NamedVariable[]): void {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(file);
    } catch (e) {
      throw new Error(`cannot read optimizer state ${file}: ${(e as Error).message}`);
    }
    const f = parseSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), file);
    if (f.metadata.format !== 'clipcap-adamw') throw new Error(`${file} is not an AdamW state (metadata format ${f.metadata.format})`);
    const step = Number(f.metadata.step);
    if (!Number.isInteger(step) || step < 0) throw new Error(`${file}: bad step ${f.metadata.step}`);
    const s: AdamWState = { step, m: {}, v: {} };
    for (const [key, entry] of f.tensors) {
      const dot = key.indexOf('.');
      const kind = key.slice(0, dot);
      const name = key.slice(dot + 1);
      if (kind !== 'm' && kind !== 'v') continue;
      const data = toFloat32(entry);
      assertFiniteWeights(data, file, key);
      if (kind === 'm') s.m[name] = data;
      else s.v[name] = data;
    }
    const known = new Set(named.map((n) => n.name));
    const stray = Object.keys(s.m).filter((n) => !known.has(n));
    if (stray.length) throw new Error(`${file}: moments for unknown parameter(s) ${stray.slice(0, 5).join(', ')}`);
    this.setState(s, named);
  }
}
