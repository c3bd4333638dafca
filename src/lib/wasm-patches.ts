// Patches for TensorFlow.js's wasm backend in Node, applied at run time from outside node_modules
// (see ../shared/notes/tfjs-wasm-in-node.md for the facts behind them):
//
//  1. MatMul through onnxruntime (MLAS, native AVX2/AVX-512, multi-threaded). The wasm backend's
//     BatchMatMul uses XNNPACK (128-bit SIMD, one thread) only without transposes and at batch 1, and
//     a slow scalar loop otherwise (every matMul gradient, attention). onnxruntime-node (installed with
//     transformers.js) runs a one-node MatMul/Gemm graph synchronously on the wasm heap's own memory:
//     inputs and output are zero-copy views. Small products stay on XNNPACK. Without onnxruntime,
//     transposed 2-D products are made plain by an explicit transpose before XNNPACK.
//  2. Identity shares its input's buffer (the wasm kernel copies; tfjs-core clones every tensor it
//     saves for gradients).
//  3. UnsortedSegmentSum (missing in wasm; the gradient of tf.gather needs it).
//  4. Optional XNNPACK threads (CLIPCAP_WASM_THREADS=n): the threaded wasm binary loaded with a real
//     worker file, the main script given by path, and the core count the C++ sees doubled (it caps
//     the pool at cores / 2). Only XNNPACK ops use the pool.
//
// Settings: CLIPCAP_MATMUL=ort|wasm (default ort when onnxruntime-node loads), CLIPCAP_ORT_THREADS
// (default: the number of cores), CLIPCAP_WASM_THREADS (default 1: the matMuls go to onnxruntime).
// Every patch is checked against the stock kernels / the cpu backend in test/gpt2-patches.test.ts.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { modelProto, DataType, type NodeInit } from './encoders/onnx-writer';
import { writeFileAtomic } from './fsutil';

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

class OrtMatMul {
  private readonly sessions = new Map<string, OrtSessionLike>();
  constructor(
    private readonly binding: { InferenceSession: new () => OrtSessionLike & { loadModel: (...a: unknown[]) => void } },
    readonly threads: number,
  ) {}

  /** key: g|b (2-D Gemm or batched MatMul) + transposeA + transposeB */
  private session(batched: boolean, tA: boolean, tB: boolean): OrtSessionLike {
    const key = `${batched ? 'b' : 'g'}${+tA}${+tB}`;
    let s = this.sessions.get(key);
    if (s) return s;
    const F = DataType.FLOAT;
    let nodes: NodeInit[];
    let inputs;
    if (!batched) {
      nodes = [{ opType: 'Gemm', inputs: ['A', 'B'], outputs: ['Y'], attrs: { transA: { kind: 'int', v: +tA }, transB: { kind: 'int', v: +tB } } }];
      inputs = [
        { name: 'A', elemType: F, shape: tA ? ['k', 'm'] : ['m', 'k'] },
        { name: 'B', elemType: F, shape: tB ? ['n', 'k'] : ['k', 'n'] },
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
      graph: { name: `matmul_${key}`, nodes, initializers: [], inputs, outputs: [{ name: 'Y', elemType: F, shape: batched ? ['b', 'm', 'n'] : ['m', 'n'] }] },
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

  /** out = op(a) @ op(b) on raw float32 views; a/b dims are 3-D [batch, rows, cols] as stored. */
  run(a: Float32Array, aDims: number[], b: Float32Array, bDims: number[], tA: boolean, tB: boolean, out: Float32Array, outDims: number[]): void {
    const batched = aDims[0] !== 1 || bDims[0] !== 1;
    const s = this.session(batched, tA, tB);
    const ad = batched ? aDims : aDims.slice(1);
    const bd = batched ? bDims : bDims.slice(1);
    const od = batched ? outDims : outDims.slice(1);
    const r = s.run(
      { A: { dims: ad, type: 'float32', data: a }, B: { dims: bd, type: 'float32', data: b } },
      { Y: { dims: od, type: 'float32', data: out } },
      {},
    );
    const y = r.Y.data;
    if (y !== out && (y.buffer !== out.buffer || y.byteOffset !== out.byteOffset)) out.set(y);
  }
}

/** Products smaller than this (multiply-adds) stay on XNNPACK when it can take them. */
const ORT_MIN_MACS = 1 << 17;

function loadOrt(threads: number): { ort: OrtMatMul | null; reason?: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { binding } = require('onnxruntime-node/dist/binding');
    const ort = new OrtMatMul(binding, threads);
    // self-check on a small product with transposes
    const a = new Float32Array([1, 2, 3, 4, 5, 6]); // [1, 3, 2] stored, used transposed: [2, 3]
    const b = new Float32Array([1, 0, 0, 1, 1, 1]); // [1, 3, 2]
    const out = new Float32Array(4);
    ort.run(a, [1, 3, 2], b, [1, 3, 2], true, false, out, [1, 2, 2]);
    const want = [1 + 5, 3 + 5, 2 + 6, 4 + 6];
    if (want.some((v, i) => v !== out[i])) return { ort: null, reason: `self-check failed (${[...out]})` };
    return { ort };
  } catch (e) {
    return { ort: null, reason: (e as Error).message.split('\n')[0] };
  }
}

type KernelFn = (args: { inputs: Record<string, TensorInfo>; backend: WasmBackend; attrs: Record<string, unknown> }) => TensorInfo;

function makeBatchMatMul(orig: KernelFn, transposeKernel: KernelFn, ort: OrtMatMul | null): KernelFn {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return orig(args);
    const ar = a.shape.length;
    const br = b.shape.length;
    const batchA = sizeOf(a.shape.slice(0, -2));
    const batchB = sizeOf(b.shape.slice(0, -2));
    const M = transposeA ? a.shape[ar - 1] : a.shape[ar - 2];
    const K = transposeA ? a.shape[ar - 2] : a.shape[ar - 1];
    const N = transposeB ? b.shape[br - 2] : b.shape[br - 1];
    const Kb = transposeB ? b.shape[br - 1] : b.shape[br - 2];
    const batch = Math.max(batchA, batchB);
    const sameBatch = batchA === batchB || batchA === 1 || batchB === 1;
    if (K !== Kb || !sameBatch || a.shape.slice(0, -2).length !== b.shape.slice(0, -2).length) return orig(args);
    const macs = batch * M * N * K;
    const plain = !transposeA && !transposeB && batch === 1;
    if (ort && macs > 0 && (!plain || macs >= ORT_MIN_MACS)) {
      const outerShape = (batchA >= batchB ? a : b).shape.slice(0, -2);
      const out = backend.makeOutput([batch, M, N], 'float32');
      // views after the allocation (the heap may have grown)
      const av = f32(backend, a, batchA * M * K);
      const bv = f32(backend, b, batchB * K * N);
      const ov = f32(backend, out, batch * M * N);
      const aDims = [batchA, a.shape[ar - 2], a.shape[ar - 1]];
      const bDims = [batchB, b.shape[br - 2], b.shape[br - 1]];
      ort.run(av, aDims, bv, bDims, transposeA, transposeB, ov, [batch, M, N]);
      return { ...out, shape: [...outerShape, M, N] };
    }
    if (batch === 1 && (transposeA || transposeB)) {
      // XNNPACK takes only untransposed products: transpose explicitly first
      const tmp: TensorInfo[] = [];
      const flip = (t: TensorInfo): TensorInfo => {
        const r = t.shape.length;
        const perm = [...Array(r - 2).keys(), r - 1, r - 2];
        const res = transposeKernel({ inputs: { x: t }, backend, attrs: { perm } });
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

let installed = false;
let stockBatchMatMul: KernelFn | null = null;

function replaceKernel(name: string, kernelFunc: unknown): void {
  const old = tf.getKernel(name, 'wasm');
  if (old) tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: kernelFunc as tf.KernelFunc, setupFunc: old?.setupFunc, disposeFunc: old?.disposeFunc });
}

/** Route matMuls: 'ort' (onnxruntime for large products), 'wasm' (XNNPACK with explicit transposes), or 'stock'. */
export function setMatMulProvider(mode: 'ort' | 'wasm' | 'stock', ortThreads = os.cpus().length): WasmPatchStatus {
  if (!stockBatchMatMul) stockBatchMatMul = tf.getKernel('BatchMatMul', 'wasm').kernelFunc as unknown as KernelFn;
  const transpose = tf.getKernel('Transpose', 'wasm').kernelFunc as unknown as KernelFn;
  status.patched = status.patched.filter((p) => !p.startsWith('BatchMatMul'));
  status.ortReason = undefined;
  if (mode === 'stock') {
    replaceKernel('BatchMatMul', stockBatchMatMul);
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
  replaceKernel('BatchMatMul', makeBatchMatMul(stockBatchMatMul, transpose, ort));
  status.matmul = ort ? 'onnxruntime' : 'xnnpack';
  status.ortThreads = ort ? ortThreads : 0;
  status.patched.push(ort ? `BatchMatMul -> onnxruntime (${ortThreads} threads)` : 'BatchMatMul (explicit transposes before XNNPACK)');
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
  return setMatMulProvider(mode, threads);
}

/** One line for logs: what computes what. */
export function describeWasmPatches(): string {
  const s = wasmPatchStatus();
  return `wasm: ${s.threads} XNNPACK thread(s); matMul: ${s.matmul}${s.matmul === 'onnxruntime' ? ` (${s.ortThreads} threads)` : s.ortReason ? ` (onnxruntime not used: ${s.ortReason})` : ''}`;
}
