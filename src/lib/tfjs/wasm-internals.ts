// The parts of TensorFlow.js's wasm backend (@tensorflow/tfjs-backend-wasm 4.22) that our kernel
// patches touch, typed: a tensor's storage is a `dataId` whose bytes lie in the backend's wasm heap at
// `memoryOffset`; a kernel gets its inputs as TensorInfos and returns one made by `makeOutput`.
// The package does not export these types, so they are declared here from its sources, and every
// patch that relies on them is checked against the stock kernels in test/gpt2-patches.test.ts.
import * as tf from '@tensorflow/tfjs';

export type TensorInfo = { dataId: object; shape: number[]; dtype: string };

export interface WasmBackend {
  wasm: { HEAPU8: Uint8Array; wasmMemory?: { buffer: ArrayBufferLike } };
  dataIdMap: { get(id: object): { id: number; memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: string): TensorInfo;
  incRef(id: object): void;
  disposeData(id: object, force?: boolean): boolean;
}

export type KernelFn = (args: { inputs: Record<string, TensorInfo>; backend: WasmBackend; attrs: Record<string, unknown> }) => TensorInfo;

/** The heap's current buffer (it is replaced when the heap grows: take views after allocating). */
export function heapBuffer(b: WasmBackend): ArrayBufferLike {
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

/** A float32 view of the first `size` values of a tensor's storage on the heap. */
export function f32(b: WasmBackend, t: TensorInfo, size: number): Float32Array {
  return new Float32Array(heapBuffer(b), b.dataIdMap.get(t.dataId)!.memoryOffset, size);
}

/** A float32 or int32 view (by the tensor's dtype) of the first `size` values of its storage on the heap. */
export function typedView(b: WasmBackend, t: TensorInfo, size: number): Float32Array | Int32Array {
  const Ctor = t.dtype === 'int32' ? Int32Array : Float32Array;
  return new Ctor(heapBuffer(b), b.dataIdMap.get(t.dataId)!.memoryOffset, size);
}

export const sizeOf = (shape: number[]) => shape.reduce((a, s) => a * s, 1);

/** Register `kernelFunc` as the wasm backend's kernel `name`, keeping the old kernel's setup and dispose. */
export function replaceKernel(name: string, kernelFunc: unknown): void {
  const old = tf.getKernel(name, 'wasm');
  if (old) tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: kernelFunc as tf.KernelFunc, setupFunc: old?.setupFunc, disposeFunc: old?.disposeFunc });
}
