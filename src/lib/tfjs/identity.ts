// Patch 2 of the wasm backend (see wasm-patches.ts): an Identity kernel that shares its input's buffer.
//
// What it works around: tfjs-core clones every tensor it keeps for the backward pass (tf.clone is the
// Identity kernel), and the wasm backend's Identity copies the memory, so every saved activation was
// stored twice on the 4 GiB heap. A tensor's buffer is never written in place by a kernel (ops write
// new buffers), so sharing it with a reference count is safe; test/gpt2-patches.test.ts checks that a
// clone keeps its values when the original is disposed. Facts: docs/tfjs-wasm-in-node.md (property 4).
import type { TensorInfo, WasmBackend } from './wasm-internals';

export function identityShared(args: { inputs: { x: TensorInfo }; backend: WasmBackend }): TensorInfo {
  const { x } = args.inputs;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}
