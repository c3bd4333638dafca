// Patch 3 of the wasm backend (see wasm-patches.ts): the UnsortedSegmentSum kernel.
//
// What it works around: tfjs-backend-wasm 4.22 has no UnsortedSegmentSum, and the gradient of tf.gather
// needs it, so any trainable embedding (GPT-2's wte when fine-tuned) cannot train on wasm without it.
// A plain loop over the segments on the heap; checked against the cpu backend in
// test/gpt2-patches.test.ts. Facts: docs/tfjs-wasm-in-node.md (property 3).
import { heapBuffer, sizeOf, typedView, type TensorInfo, type WasmBackend } from './wasm-internals';

export function unsortedSegmentSum(args: { inputs: { x: TensorInfo; segmentIds: TensorInfo }; backend: WasmBackend; attrs: { numSegments: number } }): TensorInfo {
  const { x, segmentIds } = args.inputs;
  const b = args.backend;
  const { numSegments } = args.attrs;
  const inner = sizeOf(x.shape.slice(segmentIds.shape.length));
  const nSeg = sizeOf(segmentIds.shape);
  const out = b.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype);
  const o = typedView(b, out, numSegments * inner);
  const xv = typedView(b, x, nSeg * inner);
  const sv = new Int32Array(heapBuffer(b), b.dataIdMap.get(segmentIds.dataId)!.memoryOffset, nSeg);
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
