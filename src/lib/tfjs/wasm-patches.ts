// Patches for TensorFlow.js's wasm backend in Node, applied at run time from outside node_modules
// (see docs/tfjs-wasm-in-node.md for the facts behind them):
//
//  1. MatMul through onnxruntime (MLAS, native AVX2 kernels, multi-threaded). The wasm backend's
//     BatchMatMul uses XNNPACK (128-bit SIMD, one thread) only without transposes and at batch 1, and
//     a slow scalar loop otherwise (every matMul gradient, attention). onnxruntime-node (installed with
//     transformers.js) runs a one-node MatMul/Gemm graph synchronously on the wasm heap's own memory:
//     inputs and output are zero-copy views (copies when the heap is shared, i.e. with XNNPACK
//     threads). Small products and products with few rows (generation) stay on XNNPACK, which keeps
//     packed weights across calls. Without onnxruntime,
//     transposed 2-D products are made plain by an explicit transpose before XNNPACK. _FusedMatMul
//     (tf.fused.matMul) with a bias is one Gemm. Frozen (non-trainable) 2-D weights keep a cached
//     transpose while their storage lives (W^T in a frozen model's backward pass, wte^T in the LM
//     head); small transposed operands are transposed explicitly (plain Gemm is faster).
//  2. Identity shares its input's buffer (the wasm kernel copies; tfjs-core clones every tensor it
//     saves for gradients).
//  3. UnsortedSegmentSum (missing in wasm; the gradient of tf.gather needs it).
//  4. Optional XNNPACK threads (CLIPCAP_WASM_THREADS=n): the threaded wasm binary loaded with a real
//     worker file, the main script given by path, and the core count the C++ sees doubled (it caps
//     the pool at cores / 2). Only XNNPACK ops use the pool.
//
// Settings: CLIPCAP_MATMUL=ort|wasm|stock (default ort when onnxruntime-node loads), CLIPCAP_ORT_THREADS
// (default: the number of cores), CLIPCAP_WASM_THREADS (default 1: the matMuls go to onnxruntime),
// CLIPCAP_CACHE_TRANSPOSES=0 (no cached transposes of frozen weights: saves their memory),
// CLIPCAP_ORT_PROFILE=1 (per-shape timings of the onnxruntime products, printed at exit).
// Every patch is checked against the stock kernels / the cpu backend in test/gpt2-patches.test.ts.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { modelProto, DataType, type NodeInit } from './onnx-writer';
import { writeFileAtomic } from '../util/files';

type TensorInfo = { dataId: object; shape: number[]; dtype: string };
interface WasmBackend {
  wasm: { HEAPU8: Uint8Array; wasmMemory?: { buffer: ArrayBufferLike } };
  dataIdMap: { get(id: object): { id: number; memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: string): TensorInfo;
  incRef(id: object): void;
  disposeData(id: object, force?: boolean): boolean;
}

export interface WasmPatchStatus {
  /** XNNPACK threads of the wasm backend. */
  threads: number;
  /** Who computes large matMuls. */
  matmul: 'onnxruntime' | 'xnnpack';
  ortThreads: number;
  /** Why onnxruntime is not used, when it is not. */
  ortReason?: string;
  patched: string[];
}

const status: WasmPatchStatus = { threads: 1, matmul: 'xnnpack', ortThreads: 0, patched: [] };

export function wasmPatchStatus(): WasmPatchStatus {
  return { ...status, patched: status.patched.slice() };
}

function heapBuffer(b: WasmBackend): ArrayBufferLike {
  return b.wasm.wasmMemory?.buffer ?? b.wasm.HEAPU8.buffer;
}

/**
 * The wasm heap's size in bytes, or null on another backend. A WebAssembly memory only grows, so this
 * is the high-water mark of everything the backend held since the process started.
 */
export function wasmHeapBytes(): number | null {
  if (tf.getBackend() !== 'wasm') return null;
  return heapBuffer(tf.backend() as unknown as WasmBackend).byteLength;
}

function f32(b: WasmBackend, t: TensorInfo, size: number): Float32Array {
  return new Float32Array(heapBuffer(b), b.dataIdMap.get(t.dataId)!.memoryOffset, size);
}

const sizeOf = (shape: number[]) => shape.reduce((a, s) => a * s, 1);

// ---------------------------------------------------------------------------------------------
// 4. threads (before the backend is created)

/**
 * Replace the 'wasm' backend factory by one that loads the threaded SIMD binary with `threads`
 * XNNPACK threads. Call before tf.setBackend('wasm').
 */
export function registerThreadedWasm(threads: number): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const wasmPkg = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js'));
  const mainJs = path.join(dir, 'tfjs-backend-wasm-threaded-simd.js');
  // The package ships the pthread worker as a JS string (meant for a Blob URL); Node's workers need a file.
  const { wasmWorkerContents } = require(path.join(dir, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  const contents = wasmWorkerContents.replace(/\n/g, '\\n');
  const workerFile = path.join(os.tmpdir(), `clipcap-tfjs-wasm-${tf.version_core}-worker.js`);
  if (!fs.existsSync(workerFile) || fs.readFileSync(workerFile, 'utf8') !== contents) writeFileAtomic(workerFile, contents);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const factory = require(mainJs) as (cfg: Record<string, unknown>) => Promise<Record<string, unknown> & { cwrap: (...a: unknown[]) => unknown }>;
  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      // The C++ caps the pool at emscripten_num_logical_cores() / 2, read from os.cpus() while the module starts.
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const nodeOs = require('os') as { cpus: () => os.CpuInfo[] };
      const cpus = nodeOs.cpus;
      nodeOs.cpus = () => {
        const c = cpus();
        return Array.from({ length: 2 * threads }, (_, i) => c[i % c.length]);
      };
      try {
        const module = await factory({
          locateFile: (p: string) => (p.endsWith('.worker.js') ? workerFile : path.join(dir, p)),
          mainScriptUrlOrBlob: mainJs,
        });
        module.tfjs = {
          init: module.cwrap('init', null, []),
          initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
          getThreadsCount: module.cwrap('get_threads_count', 'number', []),
          registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
          disposeData: module.cwrap('dispose_data', null, ['number']),
          dispose: module.cwrap('dispose', null, []),
        };
        wasmPkg.setThreadsCount(threads);
        const backend = new wasmPkg.BackendWasm(module as never);
        // XNNPACK's pool threads run for good; their workers must not keep the process alive.
        const pt = module.PThread as { runningWorkers?: { unref?: () => void }[]; unusedWorkers?: { unref?: () => void }[] } | undefined;
        for (const w of [...(pt?.runningWorkers ?? []), ...(pt?.unusedWorkers ?? [])]) w.unref?.();
        return backend;
      } finally {
        nodeOs.cpus = cpus;
      }
    },
    2,
  );
}

/** Settings read before the wasm backend starts (called by backend.ts). */
export function prepareWasm(env: NodeJS.ProcessEnv = process.env): void {
  const n = env.CLIPCAP_WASM_THREADS ? Number(env.CLIPCAP_WASM_THREADS) : 1;
  if (!Number.isInteger(n) || n < 1) throw new Error(`CLIPCAP_WASM_THREADS=${env.CLIPCAP_WASM_THREADS} must be a positive integer`);
  if (n > 1) registerThreadedWasm(n);
}

// ---------------------------------------------------------------------------------------------
// 2. Identity without a copy

function identityShared(args: { inputs: { x: TensorInfo }; backend: WasmBackend }): TensorInfo {
  const { x } = args.inputs;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

// ---------------------------------------------------------------------------------------------
// 3. UnsortedSegmentSum

function unsortedSegmentSum(args: { inputs: { x: TensorInfo; segmentIds: TensorInfo }; backend: WasmBackend; attrs: { numSegments: number } }): TensorInfo {
  const { x, segmentIds } = args.inputs;
  const b = args.backend;
  const { numSegments } = args.attrs;
  const inner = sizeOf(x.shape.slice(segmentIds.shape.length));
  const nSeg = sizeOf(segmentIds.shape);
  const out = b.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype);
  const buf = heapBuffer(b);
  const Arr = x.dtype === 'int32' ? Int32Array : Float32Array;
  const o = new Arr(buf, b.dataIdMap.get(out.dataId)!.memoryOffset, numSegments * inner);
  const xv = new Arr(buf, b.dataIdMap.get(x.dataId)!.memoryOffset, nSeg * inner);
  const sv = new Int32Array(buf, b.dataIdMap.get(segmentIds.dataId)!.memoryOffset, nSeg);
  o.fill(0);
  for (let i = 0; i < nSeg; i++) {
    const s = sv[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += xv[src + j];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// 1. MatMul

interface OrtSessionLike {
  run(feeds: Record<string, unknown>, fetches: Record<string, unknown>, options: Record<string, unknown>): Record<string, { data: Float32Array }>;
}

/** CLIPCAP_ORT_PROFILE=1: time every onnxruntime product by kind and shape; printed at exit. */
const ortProfile: Map<string, { ms: number; n: number; flop: number }> | null = process.env.CLIPCAP_ORT_PROFILE ? new Map() : null;
if (ortProfile) {
  process.on('exit', () => {
    const rows = [...ortProfile].sort((a, b) => b[1].ms - a[1].ms);
    const total = rows.reduce((a, [, e]) => a + e.ms, 0);
    console.error(`onnxruntime products: ${total.toFixed(0)} ms in total`);
    for (const [k, e] of rows.slice(0, 30)) console.error(`  ${k.padEnd(44)} ${e.ms.toFixed(0).padStart(7)} ms ${String(e.n).padStart(5)} calls ${(e.flop / e.ms / 1e6).toFixed(1).padStart(7)} GFLOP/s`);
  });
}

class OrtMatMul {
  private readonly sessions = new Map<string, OrtSessionLike>();
  constructor(
    private readonly binding: { InferenceSession: new () => OrtSessionLike & { loadModel: (...a: unknown[]) => void } },
    readonly threads: number,
  ) {}

  /** key: g (2-D Gemm), c (2-D Gemm with bias) or b (batched MatMul) + transposeA + transposeB */
  private session(kind: 'g' | 'c' | 'b', tA: boolean, tB: boolean): OrtSessionLike {
    const key = `${kind}${+tA}${+tB}`;
    let s = this.sessions.get(key);
    if (s) return s;
    const F = DataType.FLOAT;
    let nodes: NodeInit[];
    let inputs;
    if (kind !== 'b') {
      const ins = kind === 'c' ? ['A', 'B', 'C'] : ['A', 'B'];
      nodes = [{ opType: 'Gemm', inputs: ins, outputs: ['Y'], attrs: { transA: { kind: 'int', v: +tA }, transB: { kind: 'int', v: +tB } } }];
      inputs = [
        { name: 'A', elemType: F, shape: tA ? ['k', 'm'] : ['m', 'k'] },
        { name: 'B', elemType: F, shape: tB ? ['n', 'k'] : ['k', 'n'] },
        ...(kind === 'c' ? [{ name: 'C', elemType: F, shape: ['n'] }] : []),
      ];
    } else {
      nodes = [];
      let a = 'A';
      let bb = 'B';
      if (tA) nodes.push({ opType: 'Transpose', inputs: ['A'], outputs: (a = 'At', ['At']), attrs: { perm: { kind: 'ints', v: [0, 2, 1] } } });
      if (tB) nodes.push({ opType: 'Transpose', inputs: ['B'], outputs: (bb = 'Bt', ['Bt']), attrs: { perm: { kind: 'ints', v: [0, 2, 1] } } });
      nodes.push({ opType: 'MatMul', inputs: [a, bb], outputs: ['Y'] });
      inputs = [
        { name: 'A', elemType: F, shape: tA ? ['ba', 'k', 'm'] : ['ba', 'm', 'k'] },
        { name: 'B', elemType: F, shape: tB ? ['bb', 'n', 'k'] : ['bb', 'k', 'n'] },
      ];
    }
    const model = modelProto({
      opset: 13,
      graph: { name: `matmul_${key}`, nodes, initializers: [], inputs, outputs: [{ name: 'Y', elemType: F, shape: kind === 'b' ? ['b', 'm', 'n'] : ['m', 'n'] }] },
    });
    const bytes = Buffer.concat(model.chunks);
    const sess = new this.binding.InferenceSession();
    sess.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, {
      intraOpNumThreads: this.threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
    });
    this.sessions.set(key, sess);
    return sess;
  }

  /**
   * out = op(a) @ op(b) (+ bias) on raw float32 views; a/b dims are 3-D [batch, rows, cols] as
   * stored. A bias needs batch 1.
   */
  run(a: Float32Array, aDims: number[], b: Float32Array, bDims: number[], tA: boolean, tB: boolean, out: Float32Array, outDims: number[], bias?: Float32Array): void {
    const batched = aDims[0] !== 1 || bDims[0] !== 1;
    if (batched && bias) throw new Error('OrtMatMul: a bias needs batch 1');
    const s = this.session(batched ? 'b' : bias ? 'c' : 'g', tA, tB);
    const ad = batched ? aDims : aDims.slice(1);
    const bd = batched ? bDims : bDims.slice(1);
    const od = batched ? outDims : outDims.slice(1);
    // onnxruntime-node cannot take views of a SharedArrayBuffer (the threaded wasm heap): copy
    const shared = typeof SharedArrayBuffer !== 'undefined' && a.buffer instanceof SharedArrayBuffer;
    const own = (v: Float32Array) => (shared ? v.slice() : v);
    const o = shared ? new Float32Array(out.length) : out;
    const feeds: Record<string, unknown> = { A: { dims: ad, type: 'float32', data: own(a) }, B: { dims: bd, type: 'float32', data: own(b) } };
    if (bias) feeds.C = { dims: [bias.length], type: 'float32', data: own(bias) };
    const t0 = ortProfile ? performance.now() : 0;
    const r = s.run(feeds, { Y: { dims: od, type: 'float32', data: o } }, {});
    if (ortProfile) {
      const key = `${batched ? 'b' : bias ? 'c' : 'g'}${+tA}${+tB} A[${ad}] B[${bd}]`;
      const e = ortProfile.get(key) ?? { ms: 0, n: 0, flop: 0 };
      e.ms += performance.now() - t0;
      e.n += 1;
      e.flop += 2 * outDims[0] * outDims[1] * outDims[2] * (tA ? aDims[1] : aDims[2]);
      ortProfile.set(key, e);
    }
    const y = r.Y.data;
    if (y !== out && (y.buffer !== out.buffer || y.byteOffset !== out.byteOffset)) out.set(y);
  }
}

/** Products smaller than this (multiply-adds) stay on XNNPACK when it can take them. */
const ORT_MIN_MACS = 1 << 17;
/**
 * 2-D products with fewer rows than this stay on XNNPACK (when no large transpose is needed): they
 * are memory-bound, and XNNPACK keeps packed weights across calls while onnxruntime packs them on
 * every call (generation: 82 vs 161 ms/token measured here).
 */
const ORT_MIN_ROWS = 8;
/** A transposed operand this much smaller than the product is transposed explicitly (plain Gemm is faster). */
const EXPLICIT_TRANSPOSE_RATIO = 256;

function loadOrt(threads: number): { ort: OrtMatMul | null; reason?: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { binding } = require('onnxruntime-node/dist/binding');
    const ort = new OrtMatMul(binding, threads);
    // self-check on a small product with transposes
    const a = new Float32Array([1, 2, 3, 4, 5, 6]); // [1, 3, 2] stored, used transposed: [2, 3]
    const b = new Float32Array([1, 0, 0, 1, 1, 1]); // [1, 3, 2]
    const out = new Float32Array(4);
    ort.run(a, [1, 3, 2], b, [1, 3, 2], true, false, out, [1, 2, 2], new Float32Array([10, 20]));
    const want = [1 + 5 + 10, 3 + 5 + 20, 2 + 6 + 10, 4 + 6 + 20];
    if (want.some((v, i) => v !== out[i])) return { ort: null, reason: `self-check failed (${[...out]})` };
    return { ort };
  } catch (e) {
    return { ort: null, reason: (e as Error).message.split('\n')[0] };
  }
}

type KernelFn = (args: { inputs: Record<string, TensorInfo>; backend: WasmBackend; attrs: Record<string, unknown> }) => TensorInfo;

/**
 * Transposes of frozen (non-trainable) 2-D weights, kept while the weight's storage lives: a frozen
 * GPT-2 multiplies by W^T in every backward pass (and by wte^T in every forward pass).
 */
class FrozenTransposes {
  private readonly entries = new Map<object, TensorInfo>();
  enabled = true;
  constructor(private readonly transposeKernel: KernelFn) {}

  /** dataIds of frozen variables (checked on every call: variables come, go and change). */
  private frozen(): Set<object> {
    const s = new Set<object>();
    const reg = tf.engine().registeredVariables as Record<string, tf.Variable>;
    for (const name in reg) {
      const v = reg[name];
      if (!v.trainable && !v.isDisposed && v.dtype === 'float32') s.add(v.dataId as object);
    }
    return s;
  }

  /** Would get() return a transpose of t (t is a frozen weight)? */
  has(t: TensorInfo): boolean {
    return this.enabled && (this.entries.has(t.dataId) || this.frozen().has(t.dataId));
  }

  /** The transpose of `t` (last two axes) when t is a frozen weight; null otherwise. */
  get(backend: WasmBackend, t: TensorInfo): TensorInfo | null {
    if (!this.enabled) return null;
    const frozen = this.frozen();
    for (const [id, info] of this.entries) {
      if (!frozen.has(id)) {
        backend.disposeData(info.dataId);
        this.entries.delete(id);
      }
    }
    if (!frozen.has(t.dataId)) return null;
    let e = this.entries.get(t.dataId);
    if (!e) {
      const r = t.shape.length;
      e = this.transposeKernel({ inputs: { x: t }, backend, attrs: { perm: [...Array(r - 2).keys(), r - 1, r - 2] } });
      this.entries.set(t.dataId, e);
    }
    return e;
  }

  clear(backend: WasmBackend): void {
    for (const info of this.entries.values()) backend.disposeData(info.dataId);
    this.entries.clear();
  }
}

interface MatMulParts {
  a: TensorInfo;
  b: TensorInfo;
  tA: boolean;
  tB: boolean;
  batchA: number;
  batchB: number;
  M: number;
  K: number;
  N: number;
}

function matMulParts(a: TensorInfo, b: TensorInfo, tA: boolean, tB: boolean): MatMulParts | null {
  const ar = a.shape.length;
  const br = b.shape.length;
  if (ar < 2 || br < 2 || ar !== br) return null;
  const batchA = sizeOf(a.shape.slice(0, -2));
  const batchB = sizeOf(b.shape.slice(0, -2));
  const M = tA ? a.shape[ar - 1] : a.shape[ar - 2];
  const K = tA ? a.shape[ar - 2] : a.shape[ar - 1];
  const N = tB ? b.shape[br - 2] : b.shape[br - 1];
  const Kb = tB ? b.shape[br - 1] : b.shape[br - 2];
  if (K !== Kb || !(batchA === batchB || batchA === 1 || batchB === 1)) return null;
  return { a, b, tA, tB, batchA, batchB, M, K, N };
}

/** op(a) @ op(b) (+ bias) through onnxruntime; transposes made plain where that is cheaper. */
function ortProduct(ort: OrtMatMul, backend: WasmBackend, p: MatMulParts, cache: FrozenTransposes, transposeKernel: KernelFn, bias?: TensorInfo): TensorInfo {
  let { a, b, tA, tB } = p;
  const { batchA, batchB, M, K, N } = p;
  const batch = Math.max(batchA, batchB);
  const macs = batch * M * N * K;
  const temps: TensorInfo[] = [];
  const flip = (t: TensorInfo): TensorInfo => {
    const r = t.shape.length;
    const res = transposeKernel({ inputs: { x: t }, backend, attrs: { perm: [...Array(r - 2).keys(), r - 1, r - 2] } });
    temps.push(res);
    return res;
  };
  if (batch === 1) {
    if (tB) {
      const c = cache.get(backend, b);
      if (c) [b, tB] = [c, false];
      else if (K * N * EXPLICIT_TRANSPOSE_RATIO <= macs) [b, tB] = [flip(b), false];
    }
    if (tA) {
      const c = cache.get(backend, a);
      if (c) [a, tA] = [c, false];
      else if (M * K * EXPLICIT_TRANSPOSE_RATIO <= macs) [a, tA] = [flip(a), false];
    }
  }
  try {
    const ar = a.shape.length;
    const br = b.shape.length;
    const out = backend.makeOutput([batch, M, N], 'float32');
    // views after the allocations (the heap may have grown)
    const av = f32(backend, a, batchA * M * K);
    const bv = f32(backend, b, batchB * K * N);
    const ov = f32(backend, out, batch * M * N);
    const biasV = bias ? f32(backend, bias, N) : undefined;
    ort.run(av, [batchA, a.shape[ar - 2], a.shape[ar - 1]], bv, [batchB, b.shape[br - 2], b.shape[br - 1]], tA, tB, ov, [batch, M, N], biasV);
    return out;
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}

function makeBatchMatMul(orig: KernelFn, transposeKernel: KernelFn, ort: OrtMatMul | null, cache: FrozenTransposes): KernelFn {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return orig(args);
    const p = matMulParts(a, b, transposeA, transposeB);
    if (!p) return orig(args);
    const batch = Math.max(p.batchA, p.batchB);
    const macs = batch * p.M * p.N * p.K;
    if (ort && macs >= ORT_MIN_MACS) {
      const fewRows = batch === 1 && p.M < ORT_MIN_ROWS;
      const bigTranspose = (transposeA && !cache.has(a)) || (transposeB && !cache.has(b));
      if (!fewRows || bigTranspose) {
        const out = ortProduct(ort, backend, p, cache, transposeKernel);
        const outerShape = (p.batchA >= p.batchB ? a : b).shape.slice(0, -2);
        return { ...out, shape: [...outerShape, p.M, p.N] };
      }
    }
    if (batch === 1 && (transposeA || transposeB)) {
      // XNNPACK takes only untransposed products: transpose explicitly first
      const tmp: TensorInfo[] = [];
      const flip = (t: TensorInfo): TensorInfo => {
        const c = cache.get(backend, t);
        if (c) return c;
        const r = t.shape.length;
        const res = transposeKernel({ inputs: { x: t }, backend, attrs: { perm: [...Array(r - 2).keys(), r - 1, r - 2] } });
        tmp.push(res);
        return res;
      };
      const a2 = transposeA ? flip(a) : a;
      const b2 = transposeB ? flip(b) : b;
      try {
        return orig({ inputs: { a: a2, b: b2 }, backend, attrs: { ...args.attrs, transposeA: false, transposeB: false } });
      } finally {
        for (const t of tmp) backend.disposeData(t.dataId);
      }
    }
    return orig(args);
  };
}

/** _FusedMatMul (tf.fused.matMul) with a linear activation and a 1-D bias: one Gemm with the bias. */
function makeFusedMatMul(orig: KernelFn, transposeKernel: KernelFn, ort: OrtMatMul | null, cache: FrozenTransposes): KernelFn {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo | undefined>;
    const { transposeA, transposeB, activation } = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string };
    if (!ort || !a || !b || preluActivationWeights || (activation && activation !== 'linear') || a.dtype !== 'float32' || b.dtype !== 'float32') return orig(args);
    if (bias && (bias.dtype !== 'float32' || bias.shape.length !== 1)) return orig(args);
    const p = matMulParts(a, b, transposeA, transposeB);
    if (!p || p.batchA !== 1 || p.batchB !== 1 || (bias && bias.shape[0] !== p.N) || p.M * p.N * p.K < ORT_MIN_MACS) return orig(args);
    if (p.M < ORT_MIN_ROWS && !transposeA && !transposeB) return orig(args); // XNNPACK keeps packed weights
    const out = ortProduct(ort, args.backend, p, cache, transposeKernel, bias);
    return { ...out, shape: [...a.shape.slice(0, -2), p.M, p.N] };
  };
}

let installed = false;
let stock: { batchMatMul: KernelFn; fusedMatMul: KernelFn } | null = null;
let transposes: FrozenTransposes | null = null;

function replaceKernel(name: string, kernelFunc: unknown): void {
  const old = tf.getKernel(name, 'wasm');
  if (old) tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: kernelFunc as tf.KernelFunc, setupFunc: old?.setupFunc, disposeFunc: old?.disposeFunc });
}

/**
 * Route matMuls: 'ort' (onnxruntime for large products), 'wasm' (XNNPACK with explicit transposes),
 * or 'stock' (the package's kernels). `cacheFrozenTransposes` keeps W^T of frozen weights.
 */
export function setMatMulProvider(mode: 'ort' | 'wasm' | 'stock', ortThreads = os.cpus().length, cacheFrozenTransposes = true): WasmPatchStatus {
  if (!stock) {
    stock = {
      batchMatMul: tf.getKernel('BatchMatMul', 'wasm').kernelFunc as unknown as KernelFn,
      fusedMatMul: tf.getKernel('_FusedMatMul', 'wasm').kernelFunc as unknown as KernelFn,
    };
  }
  const transpose = tf.getKernel('Transpose', 'wasm').kernelFunc as unknown as KernelFn;
  const backend = tf.findBackend('wasm') as unknown as WasmBackend | null;
  if (transposes && backend) transposes.clear(backend);
  transposes = new FrozenTransposes(transpose);
  transposes.enabled = cacheFrozenTransposes && mode !== 'stock';
  status.patched = status.patched.filter((p) => !p.startsWith('BatchMatMul') && !p.startsWith('_FusedMatMul') && !p.startsWith('frozen'));
  status.ortReason = undefined;
  if (mode === 'stock') {
    replaceKernel('BatchMatMul', stock.batchMatMul);
    replaceKernel('_FusedMatMul', stock.fusedMatMul);
    status.matmul = 'xnnpack';
    status.ortThreads = 0;
    status.ortReason = 'stock kernel';
    return wasmPatchStatus();
  }
  let ort: OrtMatMul | null = null;
  if (mode === 'ort') {
    const r = loadOrt(ortThreads);
    ort = r.ort;
    if (!ort) status.ortReason = r.reason;
  } else status.ortReason = 'CLIPCAP_MATMUL=wasm';
  replaceKernel('BatchMatMul', makeBatchMatMul(stock.batchMatMul, transpose, ort, transposes));
  replaceKernel('_FusedMatMul', makeFusedMatMul(stock.fusedMatMul, transpose, ort, transposes));
  status.matmul = ort ? 'onnxruntime' : 'xnnpack';
  status.ortThreads = ort ? ortThreads : 0;
  status.patched.push(ort ? `BatchMatMul + _FusedMatMul -> onnxruntime (${ortThreads} threads)` : 'BatchMatMul (explicit transposes before XNNPACK)');
  if (transposes.enabled) status.patched.push('frozen weights: transposes cached');
  return wasmPatchStatus();
}

/**
 * Install the kernel patches on the active wasm backend (once per process). Called by
 * ensureBackend(). Settings from the environment (see the module comment).
 */
export function installWasmPatches(env: NodeJS.ProcessEnv = process.env): WasmPatchStatus {
  if (tf.getBackend() !== 'wasm') throw new Error(`installWasmPatches: the active backend is ${tf.getBackend()}, not wasm`);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const wasmPkg = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    status.threads = wasmPkg.getThreadsCount();
  } catch {
    status.threads = 1;
  }
  if (installed) return wasmPatchStatus();
  installed = true;
  replaceKernel('Identity', identityShared);
  replaceKernel('UnsortedSegmentSum', unsortedSegmentSum);
  status.patched.push('Identity (shared buffer)', 'UnsortedSegmentSum');
  const mode = env.CLIPCAP_MATMUL === 'wasm' || env.CLIPCAP_MATMUL === 'stock' ? env.CLIPCAP_MATMUL : 'ort';
  const threads = env.CLIPCAP_ORT_THREADS ? Number(env.CLIPCAP_ORT_THREADS) : os.cpus().length;
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`CLIPCAP_ORT_THREADS=${env.CLIPCAP_ORT_THREADS} must be a positive integer`);
  return setMatMulProvider(mode, threads, env.CLIPCAP_CACHE_TRANSPOSES !== '0');
}

/** One line for logs: what computes what. */
export function describeWasmPatches(): string {
  const s = wasmPatchStatus();
  return `wasm: ${s.threads} XNNPACK thread(s); matMul: ${s.matmul}${s.matmul === 'onnxruntime' ? ` (${s.ortThreads} threads)` : s.ortReason ? ` (onnxruntime not used: ${s.ortReason})` : ''}`;
}
