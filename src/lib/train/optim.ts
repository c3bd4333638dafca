// AdamW (PyTorch `torch.optim.AdamW` semantics: decoupled weight decay, bias correction), the linear
// warm-up / linear decay schedule of transformers (`get_linear_schedule_with_warmup`), and global-norm
// gradient clipping (`torch.nn.utils.clip_grad_norm_`).
//
// Memory: the moments live outside the backend (the wasm heap is capped at 4 GiB), in the memory of a
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


// ---------------------------------------------------------------------------------------------
// The fused update as a small hand-assembled WebAssembly SIMD function (f32x4; JavaScript's scalar
// double sqrt and division made the update ~3x slower). The moments live in this module's own
// memory (not the tfjs heap); parameter and gradient are copied in by cache-sized chunks, the new
// parameter copied out. Float32 arithmetic in PyTorch's order:
//   m = m*b1 + g*(1-b1); v = v*b2 + (g*(1-b2))*g; q = p*decay - (m / (sqrt(v)/sqrt(bc2) + eps)) * step

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function adamWasmBytes(): Uint8Array {
  const vec = (b: number[]) => [...leb(b.length), ...b];
  const section = (id: number, b: number[]) => [id, ...vec(b)];
  const simd = (op: number) => [0xfd, ...leb(op)];
  const [I32, F32, V128] = [0x7f, 0x7d, 0x7b];
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const tee = (i: number) => [0x22, i];
  const load = [...simd(0x00), 4, 0];
  const store = [...simd(0x0b), 4, 0];
  const [splat, sqrt, add, sub, mul, div] = [simd(0x13), simd(0xe3), simd(0xe4), simd(0xe5), simd(0xe6), simd(0xe7)];
  // params: 0 p, 1 g, 2 m, 3 v, 4 q (byte offsets), 5 groups of 4; 6 b1, 7 1-b1, 8 b2, 9 1-b2, 10 eps, 11 decay, 12 step, 13 sqrt(bc2)
  // locals: 14 i, 15 end; 16.. splats B1 OMB1 B2 OMB2 EPS DECAY STEP SQ (16-23); 24 G, 25 M, 26 V
  const at = (base: number) => [...get(base), ...get(14), 0x6a];
  const splats: number[] = [];
  for (let k = 0; k < 8; k++) splats.push(...get(6 + k), ...splat, ...set(16 + k));
  const body = [
    ...get(5), 0x41, 4, 0x74, ...set(15), // end = groups << 4
    ...splats,
    0x02, 0x40, 0x03, 0x40,
    ...get(14), ...get(15), 0x4f, 0x0d, 1, // if (i >= end) break
    ...at(1), ...load, ...set(24),
    ...at(2), ...at(2), ...load, ...get(16), ...mul, ...get(24), ...get(17), ...mul, ...add, ...tee(25), ...store,
    ...at(3), ...at(3), ...load, ...get(18), ...mul, ...get(24), ...get(19), ...mul, ...get(24), ...mul, ...add, ...tee(26), ...store,
    ...at(4), ...at(0), ...load, ...get(21), ...mul, ...get(25), ...get(26), ...sqrt, ...get(23), ...div, ...get(20), ...add, ...div, ...get(22), ...mul, ...sub, ...store,
    ...get(14), 0x41, 16, 0x6a, ...set(14),
    0x0c, 0, 0x0b, 0x0b, 0x0b,
  ];
  const func = [2, 2, I32, 11, V128, ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, ...vec([I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32, F32]), 0]),
    ...section(3, [1, 0]),
    ...section(5, [1, 0, 1]),
    ...section(7, [2, ...vec([...Buffer.from('mem')]), 2, 0, ...vec([...Buffer.from('adamw')]), 0, 0]),
    ...section(10, [1, ...vec(func)]),
  ]);
}

/** Hyperparameters of one update, as the kernel takes them. */
interface StepScalars {
  b1: number;
  omb1: number;
  b2: number;
  omb2: number;
  eps: number;
  decay: number;
  step: number;
  sqrtBc2: number;
}

/** Where one parameter's moments live. */
interface MomentSlot {
  size: number;
  /** Byte offsets in the kernel memory (SIMD) ... */
  mOff: number;
  vOff: number;
  /** ... or plain arrays (fallback). */
  m?: Float32Array;
  v?: Float32Array;
}

const CHUNK = 16384; // floats per copy-in chunk (3 x 64 KiB stay in cache)

/** Moments storage and the update loop: wasm SIMD when available, plain JavaScript otherwise. */
class AdamKernel {
  private readonly mem: { buffer: ArrayBuffer; grow(pages: number): number } | null = null;
  private readonly fn: ((...a: number[]) => void) | null = null;
  private top = 3 * CHUNK * 4; // scratch P, G, Q first
  constructor(useSimd = true) {
    if (!useSimd) return;
    try {
      // (no DOM lib in this project's TypeScript settings: the WebAssembly API typed by hand)
      const WA = (globalThis as unknown as { WebAssembly: { Module: new (b: Uint8Array) => object; Instance: new (m: object, i: object) => { exports: Record<string, unknown> } } }).WebAssembly;
      const inst = new WA.Instance(new WA.Module(adamWasmBytes()), {});
      this.mem = inst.exports.mem as unknown as { buffer: ArrayBuffer; grow(pages: number): number };
      this.fn = inst.exports.adamw as unknown as (...a: number[]) => void;
      this.ensure(this.top);
    } catch {
      this.mem = null;
      this.fn = null;
    }
  }
  get simd(): boolean {
    return this.fn !== null;
  }
  private ensure(bytes: number): void {
    const have = this.mem!.buffer.byteLength;
    if (bytes > have) this.mem!.grow(Math.ceil((bytes - have) / 65536));
  }
  alloc(size: number): MomentSlot {
    if (!this.fn) return { size, mOff: 0, vOff: 0, m: new Float32Array(size), v: new Float32Array(size) };
    const bytes = Math.ceil(size / 4) * 16; // whole f32x4 groups
    const slot = { size, mOff: this.top, vOff: this.top + bytes };
    this.top += 2 * bytes;
    this.ensure(this.top); // fresh pages are zero
    return slot;
  }
  /** Copies of the moments (or views for write when `write`). */
  views(slot: MomentSlot): { m: Float32Array; v: Float32Array } {
    if (slot.m && slot.v) return { m: slot.m, v: slot.v };
    return { m: new Float32Array(this.mem!.buffer, slot.mOff, slot.size), v: new Float32Array(this.mem!.buffer, slot.vOff, slot.size) };
  }
  run(p: Float32Array, g: Float32Array, slot: MomentSlot, q: Float32Array, scalars: StepScalars): void {
    const n = p.length;
    const f32 = Math.fround;
    const k = Object.fromEntries(Object.entries(scalars).map(([key, x]) => [key, f32(x)])) as unknown as StepScalars;
    if (!this.fn) {
      const { m, v } = this.views(slot);
      for (let i = 0; i < n; i++) {
        const gi = g[i];
        const mi = Math.fround(Math.fround(m[i] * k.b1) + Math.fround(gi * k.omb1));
        const vi = Math.fround(Math.fround(v[i] * k.b2) + Math.fround(Math.fround(gi * k.omb2) * gi));
        m[i] = mi;
        v[i] = vi;
        const denom = Math.fround(Math.fround(Math.fround(Math.sqrt(vi)) / k.sqrtBc2) + k.eps);
        q[i] = Math.fround(p[i] * k.decay) - Math.fround(Math.fround(mi / denom) * k.step); // stored as f32
      }
      return;
    }
    const F = new Float32Array(this.mem!.buffer);
    const [P, G, Q] = [0, CHUNK, 2 * CHUNK];
    for (let s = 0; s < n; s += CHUNK) {
      const len = Math.min(CHUNK, n - s);
      F.set(p.subarray(s, s + len), P);
      F.set(g.subarray(s, s + len), G);
      this.fn(P * 4, G * 4, slot.mOff + s * 4, slot.vOff + s * 4, Q * 4, Math.ceil(len / 4), k.b1, k.omb1, k.b2, k.omb2, k.eps, k.decay, k.step, k.sqrtBc2);
      q.set(F.subarray(Q, Q + len), s);
    }
  }
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
      let slot = this.moments.get(v);
      if (!slot) {
        slot = this.kernel.alloc(v.size);
        this.moments.set(v, slot);
      }
      this.update(v, g, slot, rate, bc1, bc2);
    }
  }

  /** Whether the update runs as WebAssembly SIMD (else plain JavaScript). */
  get simd(): boolean {
    return this.kernel.simd;
  }

  private update(variable: tf.Variable, grad: tf.Tensor, slot: MomentSlot, lr: number, bc1: number, bc2: number): void {
    const k: StepScalars = {
      b1: this.beta1,
      omb1: 1 - this.beta1,
      b2: this.beta2,
      omb2: 1 - this.beta2,
      eps: this.eps,
      decay: 1 - lr * this.weightDecay,
      step: lr / bc1,
      sqrtBc2: Math.sqrt(bc2),
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
      if (kind === 'm') s.m[name] = toFloat32(entry);
      else if (kind === 'v') s.v[name] = toFloat32(entry);
    }
    const known = new Set(named.map((n) => n.name));
    const stray = Object.keys(s.m).filter((n) => !known.has(n));
    if (stray.length) throw new Error(`${file}: moments for unknown parameter(s) ${stray.slice(0, 5).join(', ')}`);
    this.setState(s, named);
  }
}
