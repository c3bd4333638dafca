// Patch 5 of the wasm backend (see wasm-patches.ts): the GatherV2 kernel.
//
// What it works around: tfjs-backend-wasm 4.22's GatherV2 computes the source of every output element
// separately, about 65 ns an element here; beam search reorders its KV cache with one gather per
// layer and per step (rows of [beams, heads, positions, head size]), which made a batch of 8 photos
// spend 1.4 s of 2.5 s in GatherV2. A gather copies whole contiguous blocks (everything after the
// gathered axis), so here each block is one typed-array copy on the heap. Indices out of range are an
// error, as on the cpu backend. batchDims > 0 and other dtypes keep the stock kernel. Checked
// against the cpu backend in test/gpt2-patches.test.ts.
import { sizeOf, typedView, type KernelFn, type TensorInfo, type WasmBackend } from './wasm-internals';

export function makeGatherV2(orig: KernelFn): KernelFn {
  return (args) => {
    const { x, indices } = args.inputs as { x: TensorInfo; indices: TensorInfo };
    const { axis, batchDims } = args.attrs as { axis: number; batchDims?: number };
    const b: WasmBackend = args.backend;
    if ((batchDims ?? 0) !== 0 || (x.dtype !== 'float32' && x.dtype !== 'int32') || indices.dtype !== 'int32') return orig(args);
    const ax = axis < 0 ? axis + x.shape.length : axis;
    const outer = sizeOf(x.shape.slice(0, ax));
    const n = x.shape[ax];
    const inner = sizeOf(x.shape.slice(ax + 1));
    const m = sizeOf(indices.shape);
    const out = b.makeOutput([...x.shape.slice(0, ax), ...indices.shape, ...x.shape.slice(ax + 1)], x.dtype);
    // views after the allocation (the heap may have grown)
    const xv = typedView(b, x, outer * n * inner);
    const ov = typedView(b, out, outer * m * inner);
    const iv = typedView(b, indices, m);
    for (let j = 0; j < m; j++) {
      const k = iv[j];
      if (!(k >= 0 && k < n)) {
        b.disposeData(out.dataId);
        throw new Error(`GatherV2: the index value ${k} is not in [0, ${n - 1}]`);
      }
    }
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < m; j++) {
        const src = (o * n + iv[j]) * inner;
        ov.set(xv.subarray(src, src + inner), (o * m + j) * inner);
      }
    }
    return out;
  };
}
