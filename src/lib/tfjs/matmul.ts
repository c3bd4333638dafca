// Patch 4 of the wasm backend (see wasm-patches.ts): the BatchMatMul and _FusedMatMul kernels.
//
// What it works around: the wasm backend's BatchMatMul uses XNNPACK (128-bit SIMD, one thread) only
// without transposes and at batch 1, and a scalar loop otherwise (10-30x slower): every matMul
// gradient and attention hit that loop (docs/tfjs-wasm-in-node.md, properties 1 and 2). So:
//  - large products go to a native engine, zero-copy on the heap: OpenBLAS when it loads
//    (blas-matmul.ts: the fastest here, transposes native), else onnxruntime (ort-matmul.ts: MLAS);
//    _FusedMatMul (tf.fused.matMul) with a bias is one product with the bias;
//  - small products, and products with few rows (generation), stay on XNNPACK, which keeps packed
//    weights across calls; transposed 2-D products are made plain by an explicit transpose first;
//  - frozen 2-D weights keep a cached transpose (transpose-cache.ts): with XNNPACK (generation's
//    few-row products) and onnxruntime, where small transposed operands are also transposed
//    explicitly (a plain Gemm is faster there); OpenBLAS takes transposed operands as they are.
// CLIPCAP_MATMUL chooses: auto (default: blas, else ort), blas, ort, wasm (XNNPACK with explicit
// transposes), stock (tfjs's own kernels, for comparisons). Checked against the cpu backend in
// test/gpt2-patches.test.ts.
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import { loadBlas, type BlasMatMul } from './blas-matmul';
import { loadOrt, type OrtMatMul } from './ort-matmul';
import { status, wasmPatchStatus, type WasmPatchStatus } from './patch-status';
import { FrozenTransposes, transposeLastTwo } from './transpose-cache';
import type { MatMulMode } from '../settings';
import { f32, replaceKernel, sizeOf, type KernelFn, type TensorInfo, type WasmBackend } from './wasm-internals';

/** A native product engine: out = op(a) @ op(b) (+ bias) on heap views (blas-matmul.ts, ort-matmul.ts). */
type Engine = OrtMatMul | BlasMatMul;

/** What other patches (conv1x1.ts, sum-leading.ts) use of the engine. */
export type ProductEngine = Pick<Engine, 'run'>;

/** Products smaller than this (multiply-adds) stay on XNNPACK when it can take them. */
export const ORT_MIN_MACS = 1 << 17;
/**
 * 2-D products with fewer rows than this stay on XNNPACK (when no large transpose is needed): they
 * are memory-bound, and XNNPACK keeps packed weights across calls while onnxruntime packs them on
 * every call (generation: 82 vs 161 ms/token measured here).
 */
const ORT_MIN_ROWS = 8;
/** A transposed operand this much smaller than the product is transposed explicitly (plain Gemm is faster). */
const EXPLICIT_TRANSPOSE_RATIO = 256;

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

/** op(a) @ op(b) (+ bias) through the engine; for onnxruntime, transposes made plain where that is cheaper. */
function ortProduct(ort: Engine, backend: WasmBackend, p: MatMulParts, cache: FrozenTransposes, transposeKernel: KernelFn, bias?: TensorInfo): TensorInfo {
  let { a, b, tA, tB } = p;
  const { batchA, batchB, M, K, N } = p;
  const batch = Math.max(batchA, batchB);
  const macs = batch * M * N * K;
  const temps: TensorInfo[] = [];
  const flip = (t: TensorInfo): TensorInfo => {
    const res = transposeLastTwo(transposeKernel, backend, t);
    temps.push(res);
    return res;
  };
  if (batch === 1 && !isBlas(ort)) {
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

const isBlas = (e: Engine): e is BlasMatMul => 'description' in e;

function makeBatchMatMul(orig: KernelFn, transposeKernel: KernelFn, ort: Engine | null, cache: FrozenTransposes): KernelFn {
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
        const res = transposeLastTwo(transposeKernel, backend, t);
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
function makeFusedMatMul(orig: KernelFn, transposeKernel: KernelFn, ort: Engine | null, cache: FrozenTransposes): KernelFn {
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

let stock: { batchMatMul: KernelFn; fusedMatMul: KernelFn } | null = null;
let activeEngine: Engine | null = null;

/** The native engine the matMuls go to now (OpenBLAS or onnxruntime), or null (XNNPACK / stock kernels). */
export function productEngine(): Engine | null {
  return activeEngine;
}
let transposes: FrozenTransposes | null = null;

/**
 * Route matMuls: 'auto' (OpenBLAS when it loads, else onnxruntime), 'blas', 'ort' (native engines
 * for large products; 'blas' falls back to onnxruntime, 'ort' to XNNPACK, with the reason in the
 * status), 'wasm' (XNNPACK with explicit transposes), or 'stock' (the package's kernels).
 * Options (wasm-patches.ts passes the settings): the engines' threads (onnxruntime: the cores;
 * OpenBLAS: 1), `cacheTransposes` keeps W^T of frozen weights (used by XNNPACK and onnxruntime;
 * OpenBLAS transposes natively), `blasLibrary` (CLIPCAP_BLAS_LIB).
 */
export function setMatMulProvider(mode: MatMulMode, opts: { ortThreads?: number; blasThreads?: number; cacheTransposes?: boolean; blasLibrary?: string } = {}): WasmPatchStatus {
  const { ortThreads = os.cpus().length, blasThreads = 1, cacheTransposes = true, blasLibrary } = opts;
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
  status.patched = status.patched.filter((p) => !p.startsWith('BatchMatMul') && !p.startsWith('_FusedMatMul') && !p.startsWith('frozen'));
  status.ortReason = undefined;
  status.blasReason = undefined;
  status.blas = undefined;
  activeEngine = null;
  if (mode === 'stock') {
    transposes.enabled = false;
    replaceKernel('BatchMatMul', stock.batchMatMul);
    replaceKernel('_FusedMatMul', stock.fusedMatMul);
    status.matmul = 'xnnpack';
    status.ortThreads = 0;
    status.ortReason = 'stock kernel';
    return wasmPatchStatus();
  }
  let engine: Engine | null = null;
  if (mode === 'auto' || mode === 'blas') {
    const r = loadBlas(blasThreads, blasLibrary);
    engine = r.blas;
    if (r.blas) status.blas = r.blas.description;
    else status.blasReason = r.reason;
  }
  if (!engine && mode !== 'wasm') {
    const r = loadOrt(ortThreads);
    engine = r.ort;
    if (!engine) status.ortReason = r.reason;
  } else if (mode === 'wasm') status.ortReason = 'CLIPCAP_MATMUL=wasm';
  activeEngine = engine;
  const blas = engine !== null && isBlas(engine);
  // kept with OpenBLAS too: generation's few-row products with a frozen W^T stay on XNNPACK (packed weights)
  transposes.enabled = cacheTransposes;
  const threads = blas ? blasThreads : ortThreads;
  replaceKernel('BatchMatMul', makeBatchMatMul(stock.batchMatMul, transpose, engine, transposes));
  replaceKernel('_FusedMatMul', makeFusedMatMul(stock.fusedMatMul, transpose, engine, transposes));
  status.matmul = blas ? 'openblas' : engine ? 'onnxruntime' : 'xnnpack';
  status.ortThreads = engine ? threads : 0;
  status.patched.push(engine ? `BatchMatMul + _FusedMatMul -> ${status.matmul} (${threads} threads)` : 'BatchMatMul (explicit transposes before XNNPACK)');
  if (transposes.enabled) status.patched.push('frozen weights: transposes cached');
  return wasmPatchStatus();
}
