// Patch 6 of the wasm backend (see wasm-patches.ts): the Slice, SplitV and PadV2 kernels.
//
// What it works around: tfjs-backend-wasm 4.22 computes the source of every element of a slice (and of
// each part of a split, and of a pad) separately: 4-12 ns an element here. GPT-2 splits q, k, v every
// layer, and ClipCap slices its logits [B, T + 1, V] to the caption positions and pads the gradient
// back (15 and 31 ms a step at the offline shapes). These three only move contiguous runs of memory,
// so here each run is one typed-array copy on the heap. float32 and int32; other dtypes keep the
// stock kernels. Checked against the cpu backend in test/gpt2-patches.test.ts.
import * as tf from '@tensorflow/tfjs';
import { sizeOf, typedView, type KernelFn, type TensorInfo, type WasmBackend } from './wasm-internals';

type Arr = Float32Array | Int32Array;

function strides(shape: number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

/**
 * Copy the box of `size` starting at `srcBegin` in `src` (shape `srcShape`) to `dstBegin` in `dst`
 * (shape `dstShape`), one contiguous run at a time. Pure.
 */
export function copyBox(src: Arr, srcShape: number[], srcBegin: number[], dst: Arr, dstShape: number[], dstBegin: number[], size: number[]): void {
  const r = size.length;
  if (r === 0) {
    dst[0] = src[0];
    return;
  }
  if (size.some((s) => s === 0)) return;
  // the trailing dimensions taken whole in both form one run with the last partial one
  let k = r - 1;
  while (k > 0 && size[k] === srcShape[k] && size[k] === dstShape[k]) k--;
  const run = sizeOf(size.slice(k));
  const ss = strides(srcShape);
  const ds = strides(dstShape);
  const lead = size.slice(0, k);
  const count = sizeOf(lead);
  const idx = new Array<number>(k).fill(0);
  for (let i = 0; i < count; i++) {
    let so = srcBegin[k] * ss[k];
    let dof = dstBegin[k] * ds[k];
    for (let d = 0; d < k; d++) {
      so += (srcBegin[d] + idx[d]) * ss[d];
      dof += (dstBegin[d] + idx[d]) * ds[d];
    }
    dst.set(src.subarray(so, so + run), dof);
    for (let d = k - 1; d >= 0; d--) {
      if (++idx[d] < lead[d]) break;
      idx[d] = 0;
    }
  }
}

const supported = (t: TensorInfo) => t.dtype === 'float32' || t.dtype === 'int32';

export function makeSlice(orig: KernelFn): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (!supported(x)) return orig(args);
    const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
    const [b0, s0] = tf.slice_util.parseSliceParams(x as unknown as tf.TensorInfo, begin, size);
    const b: WasmBackend = args.backend;
    const out = b.makeOutput(s0, x.dtype);
    copyBox(typedView(b, x, sizeOf(x.shape)), x.shape, b0, typedView(b, out, sizeOf(s0)), s0, s0.map(() => 0), s0);
    return out;
  };
}

export function makeSplitV(orig: KernelFn): (args: Parameters<KernelFn>[0]) => TensorInfo[] | TensorInfo {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (!supported(x)) return orig(args);
    const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, ax);
    const b: WasmBackend = args.backend;
    const outs: TensorInfo[] = [];
    let at = 0;
    for (const s of sizes) {
      const shape = x.shape.slice();
      shape[ax] = s;
      outs.push(b.makeOutput(shape, x.dtype));
    }
    // views after all the allocations (the heap may have grown)
    const xv = typedView(b, x, sizeOf(x.shape));
    outs.forEach((o, i) => {
      const begin = x.shape.map(() => 0);
      begin[ax] = at;
      copyBox(xv, x.shape, begin, typedView(b, o, sizeOf(o.shape)), o.shape, o.shape.map(() => 0), o.shape);
      at += sizes[i];
    });
    return outs;
  };
}

export function makePadV2(orig: KernelFn): KernelFn {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (!supported(x)) return orig(args);
    const { paddings, constantValue } = args.attrs as { paddings: [number, number][]; constantValue: number };
    if (paddings.some(([lo, hi]) => lo < 0 || hi < 0)) return orig(args);
    const shape = x.shape.map((d, i) => paddings[i][0] + d + paddings[i][1]);
    const b: WasmBackend = args.backend;
    const out = b.makeOutput(shape, x.dtype);
    const ov = typedView(b, out, sizeOf(shape));
    ov.fill(constantValue ?? 0);
    copyBox(typedView(b, x, sizeOf(x.shape)), x.shape, x.shape.map(() => 0), ov, shape, paddings.map(([lo]) => lo), x.shape);
    return out;
  };
}
