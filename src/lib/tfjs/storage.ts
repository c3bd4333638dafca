// Direct access to tensor storage on the wasm and cpu backends (no copies): a Float32Array over a
// tensor's own memory, and a fresh uninitialised tensor to write into. Reaches into tfjs internals
// (the backends' data maps), so it lives here with the other backend workarounds; AdamW uses it to
// update parameters without tensor temporaries (train/optim.ts).
import * as tf from '@tensorflow/tfjs';


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
 * A new, uninitialised float32 tensor of the shape of `like` (a tensor, or just a shape and size) on the wasm or cpu backend, with a
 * function giving a writable view of its storage; null on other backends.
 */
export function freshStorage(like: Pick<tf.Tensor, 'shape' | 'size'>): { tensor: tf.Tensor; view: () => Float32Array } | null {
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
