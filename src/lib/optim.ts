// AdamW (PyTorch `torch.optim.AdamW` semantics: decoupled weight decay, bias correction), the linear
// warm-up / linear decay schedule of transformers (`get_linear_schedule_with_warmup`), and global-norm
// gradient clipping (`torch.nn.utils.clip_grad_norm_`).
//
// Memory: the moments live in plain Float32Arrays outside the backend (the wasm heap is capped at
// 4 GiB), and the update runs in JavaScript, fused, one parameter at a time: on the wasm and cpu
// backends it reads parameter and gradient in the backend's own memory and writes the new parameter
// straight into a fresh backend buffer that the variable then takes (no
// tensor temporaries beyond the new parameter); elsewhere it falls back to dataSync + assign.
//
// State (step count and moments) can be saved and restored exactly (getState/setState, or a
// safetensors file with saveState/loadState), so a resumed run continues bit-for-bit.
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs';
import { parseSafetensors, toFloat32, writeSafetensors, type SafeTensorInput } from './safetensors';

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
// Direct access to tensor storage on the CPU backends (no copies).

interface WasmLike {
  dataIdMap: { get(id: object): { memoryOffset: number; refCount: number } | undefined };
  wasm: { HEAPU8: Uint8Array };
  refCount(id: object): number;
}
interface CpuLike {
  data: { get(id: object): { values?: unknown; refCount: number } | undefined };
  refCount(id: object): number;
}

function currentBackend(): { name: string; backend: unknown } {
  const engine = tf.engine() as unknown as { backend: unknown; backendName: string };
  return { name: engine.backendName, backend: engine.backend };
}

/**
 * A Float32Array over the tensor's own storage (wasm heap or cpu array) when the backend allows it,
 * else null. The view is valid until the next backend allocation (the wasm heap may grow).
 * `forWrite` also requires that no other tensor shares the storage.
 */
export function storageView(t: tf.Tensor, forWrite = false): Float32Array | null {
  if (t.dtype !== 'float32' || t.isDisposed) return null;
  const { name, backend } = currentBackend();
  const dataId = t.dataId as object;
  if (name === 'wasm') {
    const b = backend as WasmLike;
    const d = b.dataIdMap.get(dataId);
    if (!d || d.memoryOffset == null) return null;
    if (forWrite && b.refCount(dataId) !== 1) return null;
    return new Float32Array(b.wasm.HEAPU8.buffer, d.memoryOffset, t.size);
  }
  if (name === 'cpu') {
    const b = backend as CpuLike;
    const d = b.data.get(dataId);
    if (!d || !(d.values instanceof Float32Array) || d.values.length !== t.size) return null;
    if (forWrite && b.refCount(dataId) !== 1) return null;
    return d.values;
  }
  return null;
}

/**
 * A new, uninitialised float32 tensor of the variable's shape on the wasm or cpu backend, with a
 * function giving a writable view of its storage; null on other backends.
 */
function freshStorage(like: tf.Tensor): { tensor: tf.Tensor; view: () => Float32Array } | null {
  const { name, backend } = currentBackend();
  if (name !== 'wasm' && name !== 'cpu') return null;
  const engine = tf.engine() as unknown as { makeTensorFromTensorInfo(info: { dataId: object; shape: number[]; dtype: string }): tf.Tensor };
  if (name === 'wasm') {
    const info = (backend as { makeOutput(shape: number[], dtype: string): { dataId: object; shape: number[]; dtype: string } }).makeOutput(like.shape, 'float32');
    const tensor = engine.makeTensorFromTensorInfo(info);
    return { tensor, view: () => storageView(tensor)! };
  }
  const values = new Float32Array(like.size);
  const tensor = tf.tensor(values, like.shape, 'float32');
  return { tensor, view: () => storageView(tensor) ?? values };
}

// ---------------------------------------------------------------------------------------------

/** transformers' get_linear_schedule_with_warmup: 0 -> lr over warmupSteps, then linearly to 0 at totalSteps. */
export function linearWarmupDecay(step: number, opts: { lr: number; warmupSteps: number; totalSteps: number }): number {
  const { lr, warmupSteps, totalSteps } = opts;
  if (step < warmupSteps) return (lr * step) / Math.max(1, warmupSteps);
  return lr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
}

type GradInput = tf.Tensor[] | Map<tf.Variable, tf.Tensor> | Record<string, tf.Tensor>;

function gradList(grads: GradInput): tf.Tensor[] {
  if (Array.isArray(grads)) return grads;
  if (grads instanceof Map) return [...grads.values()];
  return Object.values(grads);
}

/** Global L2 norm of the gradients (float64 accumulation). */
export function globalNorm(grads: GradInput): number {
  let sq = 0;
  for (const g of gradList(grads)) {
    const view = storageView(g);
    if (view) {
      let s = 0;
      for (let i = 0; i < view.length; i++) s += view[i] * view[i];
      sq += s;
    } else sq += tf.tidy(() => tf.sum(tf.square(g))).dataSync()[0];
  }
  return Math.sqrt(sq);
}

/**
 * torch.nn.utils.clip_grad_norm_: when the global norm exceeds maxNorm, every gradient is scaled by
 * maxNorm / (norm + 1e-6). Returns the same container (not copied) when no scaling is needed,
 * otherwise new tensors of the same container type (the caller disposes the old ones).
 */
export function clipByGlobalNorm<G extends GradInput>(grads: G, maxNorm: number): { grads: G; norm: number } {
  const norm = globalNorm(grads);
  const scale = maxNorm / (norm + 1e-6);
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
  private readonly moments = new Map<tf.Variable, { m: Float32Array; v: Float32Array }>();

  constructor(opts: AdamWOptions) {
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
   * One update. Either `step(variables, grads[, lr])` with parallel arrays, or
   * `step(Map<variable, grad> | {variableName: grad}[, lr])`. `lr` overrides the configured rate.
   * Gradients are not disposed.
   */
  step(vars: tf.Variable[], grads: tf.Tensor[], lr?: number): void;
  step(grads: Map<tf.Variable, tf.Tensor> | Record<string, tf.Tensor>, lr?: number): void;
  step(a: tf.Variable[] | Map<tf.Variable, tf.Tensor> | Record<string, tf.Tensor>, b?: tf.Tensor[] | number, c?: number): void {
    let pairs: [tf.Variable, tf.Tensor][];
    let lr: number | undefined;
    if (Array.isArray(a)) {
      const grads = b as tf.Tensor[];
      if (!Array.isArray(grads) || grads.length !== a.length) throw new Error('AdamW.step: variables and gradients differ in number');
      pairs = a.map((v, i) => [v, grads[i]]);
      lr = c;
    } else if (a instanceof Map) {
      pairs = [...a];
      lr = b as number | undefined;
    } else {
      const registry = tf.engine().registeredVariables as Record<string, tf.Variable>;
      pairs = Object.entries(a).map(([name, g]) => {
        const v = registry[name];
        if (!v) throw new Error(`AdamW.step: no variable named ${name}`);
        return [v, g];
      });
      lr = b as number | undefined;
    }
    const rate = lr ?? this.currentLr();
    this.t += 1;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2 = 1 - this.beta2 ** this.t;
    for (const [v, g] of pairs) {
      if (!g) throw new Error(`AdamW.step: no gradient for variable ${v.name}`);
      if (g.size !== v.size) throw new Error(`AdamW.step: gradient of ${v.name} has ${g.size} values, the variable ${v.size}`);
      let mom = this.moments.get(v);
      if (!mom) {
        mom = { m: new Float32Array(v.size), v: new Float32Array(v.size) };
        this.moments.set(v, mom);
      }
      this.update(v, g, mom.m, mom.v, rate, bc1, bc2);
    }
  }

  private update(variable: tf.Variable, grad: tf.Tensor, m: Float32Array, v: Float32Array, lr: number, bc1: number, bc2: number): void {
    const { beta1, beta2, eps } = this;
    const decay = 1 - lr * this.weightDecay;
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    // The new parameter goes into fresh storage that then replaces the variable's (a new tensor id):
    // the wasm backend caches packed copies of matMul weights by tensor id, so writing in place would
    // leave stale copies behind. Allocate first, then take the views (no allocation after that).
    const gCopy = storageView(grad) ? null : (grad.dataSync() as Float32Array);
    const out = freshStorage(variable);
    const pCopy = storageView(variable) ? null : (variable.dataSync() as Float32Array);
    const g = gCopy ?? storageView(grad)!;
    const p = pCopy ?? storageView(variable)!;
    const q = out ? out.view() : new Float32Array(p.length);
    const n = p.length;
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const mi = beta1 * m[i] + (1 - beta1) * gi;
      const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      q[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
    }
    const t = out ? out.tensor : tf.tensor(q, variable.shape, 'float32');
    variable.assign(t);
    t.dispose();
  }

  /** The state as plain arrays, keyed by `named` names (default: tfjs variable names). Copies. */
  getState(named?: NamedVariable[]): AdamWState {
    const s: AdamWState = { step: this.t, m: {}, v: {} };
    const list = named ?? [...this.moments.keys()].map((v) => ({ name: v.name, variable: v }));
    for (const { name, variable } of list) {
      const mom = this.moments.get(variable);
      if (!mom) continue; // never updated
      s.m[name] = mom.m.slice();
      s.v[name] = mom.v.slice();
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
      this.moments.set(variable, { m: Float32Array.from(m), v: Float32Array.from(v) });
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
      if (kind === 'm') s.m[name] = toFloat32(entry);
      else if (kind === 'v') s.v[name] = toFloat32(entry);
    }
    const known = new Set(named.map((n) => n.name));
    const stray = Object.keys(s.m).filter((n) => !known.has(n));
    if (stray.length) throw new Error(`${file}: moments for unknown parameter(s) ${stray.slice(0, 5).join(', ')}`);
    this.setState(s, named);
  }
}
