// The patches of TensorFlow.js's wasm backend in Node, applied at run time from outside node_modules,
// in this order (the facts behind them: docs/tfjs-wasm-in-node.md):
//
//  1. threads.ts        optional XNNPACK threads (CLIPCAP_WASM_THREADS=n): the threaded binary with a
//                       real worker file; before the backend is created (prepareWasm).
//  2. identity.ts       Identity shares its input's buffer (the stock kernel copies, and tfjs-core
//                       clones every tensor it saves for gradients).
//  3. segment-sum.ts    UnsortedSegmentSum (missing in wasm; the gradient of tf.gather needs it).
//  4. matmul.ts         BatchMatMul / _FusedMatMul: large products through OpenBLAS (blas-matmul.ts)
//                       or onnxruntime (ort-matmul.ts), both timed by ort-profile.ts; XNNPACK with
//                       explicit transposes otherwise, cached transposes of frozen weights
//                       (transpose-cache.ts).
//  5. gather.ts         GatherV2 copies whole blocks (the stock kernel computes every element's source;
//                       beam search's KV-cache reordering spent most of its time there).
//  6. slice.ts          Slice, SplitV and PadV2 copy contiguous runs (the stock kernels go element by
//                       element: GPT-2's q/k/v split, ClipCap's logits slice and its gradient).
//  7. conv1x1.ts        Conv2D / FusedConv2D: 1x1 convolutions as one product on matmul.ts's native
//                       engine (the offline image encoder, CenterNet, has 62 of them).
//  8. sum-leading.ts    Sum over leading axes (bias and LayerNorm gradients) as one product with a
//                       vector of ones on the same engine (the stock kernel transposes first).
//  9. fused.ts          GELU, LayerNorm and attention, forward and backward, one WebAssembly SIMD kernel each
//                       on the wasm heap (model code calls them through tfjs/ops.ts).
//
// Settings: CLIPCAP_MATMUL=auto|blas|ort|wasm|stock (default auto: OpenBLAS when it loads, else
// onnxruntime), CLIPCAP_BLAS_THREADS (default 1), CLIPCAP_BLAS_LIB (a library file or path),
// CLIPCAP_ORT_THREADS (default: the number of cores), CLIPCAP_WASM_THREADS (default 1: the matMuls go to onnxruntime),
// CLIPCAP_CACHE_TRANSPOSES=0 (no cached transposes of frozen weights: saves their memory),
// CLIPCAP_FUSED=0 (GELU, LayerNorm and attention composed of tfjs ops instead of patch 9's kernels),
// CLIPCAP_ORT_PROFILE=1 (per-shape timings of the onnxruntime products, printed at exit).
// What was patched: patch-status.ts. Every patch is checked against the stock kernels / the cpu
// backend in test/gpt2-patches.test.ts.
import * as tf from '@tensorflow/tfjs';
import { settings, type Environment } from '../settings';
import { makeGatherV2 } from './gather';
import { makePadV2, makeSlice, makeSplitV } from './slice';
import { identityShared } from './identity';
import { productEngine, setMatMulProvider } from './matmul';
import { makeConv1x1 } from './conv1x1';
import { makeSumLeading } from './sum-leading';
import { installFusedKernels } from './fused';
import { status, wasmPatchStatus, type WasmPatchStatus } from './patch-status';
import { unsortedSegmentSum } from './segment-sum';
import { registerThreadedWasm } from './threads';
import { replaceKernel, type KernelFn, type WasmBackend } from './wasm-internals';

/** Patch 1, before the wasm backend starts (called by backend.ts): the threaded binary when CLIPCAP_WASM_THREADS > 1. */
export function prepareWasm(env?: Environment): void {
  const n = settings(env).wasmThreads;
  if (n > 1) registerThreadedWasm(n);
}

let installed = false;

/**
 * Patches 2-9 on the active wasm backend (once per process). Called by ensureBackend(). Settings
 * from the environment (see the module comment; parsed by settings.ts).
 */
export function installWasmPatches(env?: Environment): WasmPatchStatus {
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
  const stockKernel = (name: string) => tf.getKernel(name, 'wasm').kernelFunc as unknown as KernelFn;
  replaceKernel('GatherV2', makeGatherV2(stockKernel('GatherV2')));
  replaceKernel('Slice', makeSlice(stockKernel('Slice')));
  replaceKernel('SplitV', makeSplitV(stockKernel('SplitV')));
  replaceKernel('PadV2', makePadV2(stockKernel('PadV2')));
  replaceKernel('Conv2D', makeConv1x1(stockKernel('Conv2D'), productEngine));
  replaceKernel('FusedConv2D', makeConv1x1(stockKernel('FusedConv2D'), productEngine));
  replaceKernel('Sum', makeSumLeading(stockKernel('Sum'), productEngine));
  status.patched.push('Identity (shared buffer)', 'UnsortedSegmentSum', 'GatherV2, Slice, SplitV, PadV2 (block copies)', 'Conv2D / FusedConv2D 1x1 and Sum over leading axes -> the matMul engine');
  const s = settings(env);
  const fusedWhyNot = s.fusedKernels ? installFusedKernels(tf.backend() as unknown as WasmBackend) : 'CLIPCAP_FUSED=0';
  status.patched.push(fusedWhyNot ? `GELU, LayerNorm and attention composed of tfjs ops (no fused kernels: ${fusedWhyNot})` : 'GELU, LayerNorm and attention as fused SIMD kernels');
  return setMatMulProvider(s.matmul, { ortThreads: s.ortThreads, blasThreads: s.blasThreads, cacheTransposes: s.cacheTransposes, blasLibrary: s.blasLibrary });
}
