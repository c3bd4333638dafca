// Patch 7 of the wasm backend (see wasm-patches.ts): 1x1 convolutions (Conv2D, FusedConv2D) as one
// matrix product on the native engine of matmul.ts (OpenBLAS or onnxruntime).
//
// What it works around: a 1x1 convolution with stride 1 and no padding over NHWC input is the product
// [N*H*W, Cin] @ [Cin, Cout]; XNNPACK runs it at wasm SIMD speed, the native engine 2-3x faster. The
// offline image encoder (CenterNet, MobileNetV3) has 62 such convolutions and one 3x3. A bias and a
// ReLU / ReLU6 / linear activation are applied as the stock kernel does (the bias added in the
// product, the activation clamped in place); anything else (other filter sizes, strides, dilations,
// padding, activations, dtypes) goes to the stock kernel. Checked against the cpu backend in
// test/gpt2-patches.test.ts.
import * as tf from '@tensorflow/tfjs';
import { ORT_MIN_MACS as MIN_MACS, type ProductEngine } from './matmul';
import { f32, sizeOf, type KernelFn, type TensorInfo } from './wasm-internals';

const ACTIVATIONS = new Set([undefined, null, 'linear', 'relu', 'relu6']);

/** A Conv2D / FusedConv2D kernel that sends 1x1 convolutions to `engine()` (null: the stock kernel always). */
export function makeConv1x1(orig: KernelFn, engine: () => ProductEngine | null): KernelFn {
  return (args) => {
    const e = engine();
    const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo | undefined>;
    const attrs = args.attrs as {
      strides: number | [number, number];
      pad: unknown;
      dilations: number | [number, number];
      dataFormat?: string;
      dimRoundingMode?: 'floor' | 'round' | 'ceil';
      activation?: string;
    };
    if (!e || !x || !filter || preluActivationWeights || !ACTIVATIONS.has(attrs.activation) || x.dtype !== 'float32' || filter.dtype !== 'float32') return orig(args);
    if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC' && attrs.dataFormat !== 'channelsLast') return orig(args);
    if (x.shape.length !== 4 || filter.shape.length !== 4 || filter.shape[0] !== 1 || filter.shape[1] !== 1) return orig(args);
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filter.shape as [number, number, number, number],
      attrs.strides,
      attrs.dilations,
      attrs.pad as 'same',
      attrs.dimRoundingMode,
    );
    const p = info.padInfo;
    if (info.strideHeight !== 1 || info.strideWidth !== 1 || info.dilationHeight !== 1 || info.dilationWidth !== 1 || p.top || p.bottom || p.left || p.right) return orig(args);
    const [N, H, W, Cin] = x.shape;
    const Cout = filter.shape[3];
    if (info.outHeight !== H || info.outWidth !== W || info.inChannels !== Cin) return orig(args);
    if (bias && (bias.dtype !== 'float32' || bias.shape.length !== 1 || bias.shape[0] !== Cout)) return orig(args);
    const rows = N * H * W;
    if (rows * Cin * Cout < MIN_MACS) return orig(args);
    const backend = args.backend;
    const out = backend.makeOutput([N, H, W, Cout], 'float32');
    // views after the allocation (the heap may have grown)
    const xv = f32(backend, x, sizeOf(x.shape));
    const fv = f32(backend, filter, Cin * Cout);
    const ov = f32(backend, out, rows * Cout);
    e.run(xv, [1, rows, Cin], fv, [1, Cin, Cout], false, false, ov, [1, rows, Cout], bias ? f32(backend, bias, Cout) : undefined);
    if (attrs.activation === 'relu') {
      for (let i = 0; i < ov.length; i++) if (ov[i] < 0) ov[i] = 0;
    } else if (attrs.activation === 'relu6') {
      for (let i = 0; i < ov.length; i++) {
        const v = ov[i];
        if (v < 0) ov[i] = 0;
        else if (v > 6) ov[i] = 6;
      }
    }
    return out;
  };
}
