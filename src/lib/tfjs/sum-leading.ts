// Patch 8 of the wasm backend (see wasm-patches.ts): Sum over the leading axes as one product on the
// matMul engine of matmul.ts (OpenBLAS or onnxruntime): out[1, inner] = ones[1, outer] @ x[outer, inner].
//
// What it works around: the wasm Sum kernel reduces only innermost axes, so a sum over rows (every
// bias gradient and LayerNorm gain/bias gradient: dy [rows, d] summed over the rows) first transposes
// the whole input: about 6 ns an element here, 50 ms of a 360 ms transformer-mapper step. The product
// reads the input once. float32 only; other axes, dtypes and small inputs keep the stock kernel. The
// sums are the same up to float32 rounding (another order of additions); checked against the cpu
// backend in test/gpt2-patches.test.ts.
import type { ProductEngine } from './matmul';
import { f32, sizeOf, type KernelFn, type TensorInfo } from './wasm-internals';

/** Inputs smaller than this (elements) keep the stock kernel. */
const MIN_ELEMENTS = 1 << 14;

const onesCache = new Map<number, Float32Array>();
function ones(n: number): Float32Array {
  let o = onesCache.get(n);
  if (!o) {
    if (onesCache.size > 64) onesCache.clear();
    o = new Float32Array(n).fill(1);
    onesCache.set(n, o);
  }
  return o;
}

/** A Sum kernel that sends sums over leading axes to `engine()` (null: the stock kernel always). */
export function makeSumLeading(orig: KernelFn, engine: () => ProductEngine | null): KernelFn {
  return (args) => {
    const e = engine();
    const { x } = args.inputs as { x: TensorInfo };
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const rank = x.shape.length;
    if (!e || x.dtype !== 'float32' || rank < 2) return orig(args);
    const axes = [...new Set((Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + rank : a)))].sort((a, b) => a - b);
    const k = axes.length;
    if (k === 0 || k >= rank || axes.some((a, i) => a !== i)) return orig(args);
    const outer = sizeOf(x.shape.slice(0, k));
    const rest = x.shape.slice(k);
    const inner = sizeOf(rest);
    if (outer < 2 || outer * inner < MIN_ELEMENTS) return orig(args);
    const backend = args.backend;
    const out = backend.makeOutput(keepDims ? [...new Array<number>(k).fill(1), ...rest] : rest, 'float32');
    // views after the allocation (the heap may have grown)
    const xv = f32(backend, x, outer * inner);
    const ov = f32(backend, out, inner);
    e.run(ones(outer), [1, 1, outer], xv, [1, outer, inner], false, false, ov, [1, 1, inner]);
    return out;
  };
}
