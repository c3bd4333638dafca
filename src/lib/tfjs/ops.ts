// Building blocks of GPT-2 with hand-written gradients: fewer kernels than automatic
// differentiation of the same formulas, fewer tensors kept for the backward pass, and no kernel the
// wasm backend lacks.
//
// `gatherRows` has its gradient written with `scatterND` (the wasm backend has no
// UnsortedSegmentSum kernel, which the stock gather gradient needs). Tensors a custom gradient
// needs are passed through `save()` (a closure would see them disposed by the caller's tidy).
// Every gradient here is checked against finite differences of a float64 reference in
// test/gpt2.test.ts.
import * as tf from '@tensorflow/tfjs';
import { ATTENTION, ATTENTION_GRAD, DROPOUT_MASK, fusedKernels, GELU, GELU_GRAD, LAYER_NORM, LAYER_NORM_GRAD, SUM_SQUARES, type DropoutMaskAttrs } from './fused';

type Args = (tf.Tensor | tf.GradSaveFunc)[];

/** Is a gradient tape recording (inside tf.grad / variableGrads)? Without one, custom gradients are skipped. */
export function recordingGradients(): boolean {
  return ((tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth ?? 1) > 0;
}

/** `table[idx]` for a 2-D table and 1-D int32 indices; gradient to the table via scatterND. */
export function gatherRows(table: tf.Tensor, idx: tf.Tensor1D): tf.Tensor2D {
  if (!recordingGradients()) return tf.gather(table, idx) as tf.Tensor2D;
  const [V, d] = table.shape;
  const f = tf.customGrad((...args: Args) => {
    const t = args[0] as tf.Tensor;
    (args[1] as tf.GradSaveFunc)([idx]);
    return {
      value: tf.gather(t, idx),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.scatterND(saved[0].reshape([-1, 1]), dy.reshape([-1, d]), [V, d]),
    };
  });
  return f(table) as tf.Tensor2D;
}

/** `a @ b^T` (the tied LM head: hidden states times the token embedding table). */
export function matMulNT(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(a, b, false, true);
}

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_K = 0.044715;

/**
 * GPT-2's `gelu_new`: 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3), c = sqrt(2/pi); computed as
 * x * sigmoid(2u) (the same function: 0.5 (1 + tanh(u)) = sigmoid(2u)), because the wasm backend's
 * sigmoid is vectorised and its tanh is not (6 vs 35 ns per element here).
 * d/dx = s + x s (1 - s) 2c (1 + 3 * 0.044715 x^2), s = sigmoid(2u).
 */
export function gptGelu(x: tf.Tensor): tf.Tensor {
  if (fusedKernels() && x.size % 4 === 0) return fusedGelu(x);
  if (!recordingGradients()) {
    return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, tf.add(tf.mul(tf.square(x), 2 * GELU_C * GELU_K), 2 * GELU_C)))));
  }
  const f = tf.customGrad((...args: Args) => {
    const v = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const x2 = tf.square(v);
    const s = tf.sigmoid(tf.mul(v, tf.add(tf.mul(x2, 2 * GELU_C * GELU_K), 2 * GELU_C)));
    save([v, s]);
    return {
      value: tf.mul(v, s),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ss] = saved;
        const du = tf.add(tf.mul(tf.square(xs), 6 * GELU_C * GELU_K), 2 * GELU_C); // d(2u)/dx
        const t = tf.mul(tf.mul(xs, tf.sub(1, ss)), du);
        return tf.mul(dy, tf.mul(ss, tf.add(t, 1)));
      },
    };
  });
  return f(x);
}

/**
 * `x @ W + b` (Conv1D layout W [in, out]) as one fused kernel (one Gemm with the bias on
 * onnxruntime). tf.fused.matMul's gradient always computes dW and db; for a frozen weight (a
 * non-trainable variable) a custom gradient computes dx only.
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  if (!recordingGradients() || !(w instanceof tf.Variable) || w.trainable) return tf.fused.matMul({ a: x, b: w as tf.Tensor2D, bias: b }) as tf.Tensor2D;
  const f = tf.customGrad((...args: Args) => {
    const xi = args[0] as tf.Tensor2D;
    return {
      value: tf.fused.matMul({ a: xi, b: w as tf.Tensor2D, bias: b }),
      // w is a variable: alive as long as the model, not disposed by the caller's tidy
      gradFunc: (dy: tf.Tensor) => tf.matMul(dy as tf.Tensor2D, w as tf.Tensor2D, false, true),
    };
  });
  return f(x) as tf.Tensor2D;
}

/**
 * LayerNorm over the last axis of a 2-D `[N, d]` tensor:
 * y = (x - mean) / sqrt(var + eps) * gamma + beta. Gradient: with xhat and r = 1/sqrt(var + eps),
 * dxhat = dy * gamma, dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
 * dgamma = sum(dy xhat), dbeta = sum(dy) over rows.
 */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor2D {
  if (fusedKernels() && x.shape[x.shape.length - 1] % 4 === 0) return fusedLayerNorm(x, gamma, beta, eps);
  if (!recordingGradients()) {
    return tf.tidy(() => {
      const { mean, variance } = tf.moments(x, -1, true);
      return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gamma), beta) as tf.Tensor2D;
    });
  }
  const f = tf.customGrad((...args: Args) => {
    const [xi, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const mean = tf.mean(xi, -1, true);
    const xc = tf.sub(xi, mean);
    const variance = tf.mean(tf.square(xc), -1, true);
    const r = tf.rsqrt(tf.add(variance, eps));
    const xhat = tf.mul(xc, r);
    save([xhat, r, g]);
    return {
      value: tf.add(tf.mul(xhat, g), b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xh, rs, gs] = saved;
        const dxhat = tf.mul(dy, gs);
        const m1 = tf.mean(dxhat, -1, true);
        const m2 = tf.mean(tf.mul(dxhat, xh), -1, true);
        const dx = tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(xh, m2)), rs);
        const dg = tf.sum(tf.mul(dy, xh), 0);
        const db = tf.sum(dy, 0);
        return [dx, dg, db];
      },
    };
  });
  return f(x, gamma, beta) as tf.Tensor2D;
}

/** Run a kernel of tfjs/fused.ts by name, leaving out null inputs; its outputs as a list. */
function runFused(name: string, inputs: Record<string, tf.Tensor | null>, attrs: object = {}): tf.Tensor[] {
  const present = Object.fromEntries(Object.entries(inputs).filter(([, t]) => t)) as tf.NamedTensorMap;
  const out = tf.engine().runKernel(name, present, attrs as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
  return Array.isArray(out) ? out : [out];
}

/**
 * The four float64 partial sums of x^2 over x's groups of four floats (sum l is over x[4k + l]; the
 * last size % 4 floats are left out), by tfjs/fused.ts's kernel when it is registered, else null.
 */
export function fusedSumSquares(x: tf.Tensor): [number, number, number, number] | null {
  if (x.dtype !== 'float32' || !tf.getKernel(SUM_SQUARES, tf.getBackend())) return null;
  const out = runFused(SUM_SQUARES, { x })[0];
  const f = out.dataSync() as Float32Array;
  out.dispose();
  const d = new Float64Array(f.buffer, f.byteOffset, 4);
  return [d[0], d[1], d[2], d[3]];
}

/** gptGelu as one kernel forward and one backward (tfjs/fused.ts, the wasm backend). */
function fusedGelu(x: tf.Tensor): tf.Tensor {
  if (!recordingGradients()) return runFused(GELU, { x })[0];
  // training: the forward keeps s = sigmoid(2u) for the gradient, which then needs no exp
  const f = tf.customGrad((...args: Args) => {
    const v = args[0] as tf.Tensor;
    const [y, s] = runFused(GELU, { x: v }, { keepS: 1 });
    (args[1] as tf.GradSaveFunc)([v, s]);
    return { value: y, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => runFused(GELU_GRAD, { x: saved[0], s: saved[1], dy })[0] };
  });
  return f(x);
}

/** layerNorm as one kernel forward and one backward (tfjs/fused.ts, the wasm backend). */
function fusedLayerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor2D {
  if (!recordingGradients()) {
    const [y, xhat, rstd] = runFused(LAYER_NORM, { x, gamma, beta }, { eps });
    xhat.dispose();
    rstd.dispose();
    return y as tf.Tensor2D;
  }
  const f = tf.customGrad((...args: Args) => {
    const [xi, g, b] = args as tf.Tensor[];
    const [y, xhat, rstd] = runFused(LAYER_NORM, { x: xi, gamma: g, beta: b }, { eps });
    (args[3] as tf.GradSaveFunc)([xhat, rstd, g]);
    return { value: y, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => runFused(LAYER_NORM_GRAD, { dy, xhat: saved[0], rstd: saved[1], gamma: saved[2] }) };
  });
  return f(x, gamma, beta) as tf.Tensor2D;
}

/**
 * Inverted dropout's mask: each value 1 / (1 - rate) with probability 1 - rate, else 0, drawn by a
 * seeded mulberry32: reproducible from `seed`, and several times faster than tf.dropout on the wasm
 * backend (whose random numbers come from a slower generator). Drawn by tfjs/fused.ts's SIMD kernel
 * where it is registered (the same values, four draws at a time: 0.5 vs 7 ns a value here), else in
 * JavaScript.
 */
export function dropoutMask(shape: number[], rate: number, seed: number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const keep = 1 - rate;
  const scale = 1 / keep;
  // mulberry32 of util/rng.ts from this state: the same stream as mulberry32(a)
  let a = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  if (fusedKernels() && n > 0) return runFused(DROPOUT_MASK, {}, { shape, a0: a, keep, scale } satisfies DropoutMaskAttrs)[0];
  const mask = new Float32Array(n);
  // inlined: calling the closure once an element made the mask about twice as slow (15 vs 7 ms a
  // million elements, node 20)
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    mask[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296 < keep ? scale : 0;
  }
  return tf.tensor(mask, shape, 'float32');
}

/** Inverted dropout (keep with probability 1 - rate, scale by 1 / (1 - rate)) with dropoutMask's mask. */
export function dropout(x: tf.Tensor, rate: number, seed: number): tf.Tensor {
  if (!(rate > 0)) return x;
  if (rate >= 1) return tf.zerosLike(x);
  return tf.tidy(() => {
    const m = dropoutMask(x.shape, rate, seed);
    if (!recordingGradients()) return tf.mul(x, m);
    const f = tf.customGrad((...args: Args) => {
      const xi = args[0] as tf.Tensor;
      (args[1] as tf.GradSaveFunc)([m]);
      return { value: tf.mul(xi, m), gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, saved[0]) };
    });
    return f(x);
  });
}

/** A block of columns of a 2-D tensor of rows: [rows, width] from column `col`. */
export type Columns = [tensor: tf.Tensor2D, col: number];

/** Can `fusedAttention` run here: the fused kernels registered, and head sizes a multiple of 4? */
export function fusedAttentionFits(headDim: number): boolean {
  return fusedKernels() && headDim % 4 === 0;
}

/**
 * Multi-head scaled dot-product attention as one kernel forward and one backward (tfjs/fused.ts, the
 * wasm backend; check fusedAttentionFits first). q, k and v are column blocks of rows [B*T, ...]
 * (row b T + t, heads side by side); k and v in one tensor, q in it or in another. Returns the heads'
 * outputs side by side, [B*T, d]: softmax(q k^T scale, causal: each position sees itself and those
 * before it) with inverted dropout on the probabilities (dropoutMask's mask, [B, H, T, T]) times v.
 */
export function fusedAttention(q: Columns, k: Columns, v: Columns, B: number, T: number, H: number, opts: { causal: boolean; scale: number; dropout?: { rate: number; seed: number } }): tf.Tensor2D {
  if (k[0] !== v[0]) throw new Error('fusedAttention: k and v must be columns of one tensor');
  const two = q[0] !== k[0];
  const attrs = { B, T, H, qCol: q[1], kCol: k[1], vCol: v[1], scale: opts.scale, causal: opts.causal ? 1 : 0 };
  const run = (name: string, inputs: Record<string, tf.Tensor | null>) => runFused(name, inputs, attrs);
  return tf.tidy(() => {
    const rate = opts.dropout?.rate ?? 0;
    const mask = rate > 0 ? dropoutMask([B, H, T, T], rate, opts.dropout!.seed) : null;
    const inputs = two ? [q[0], k[0]] : [q[0]];
    if (!recordingGradients()) return run(ATTENTION, { a: inputs[0], b: inputs[1] ?? null, drop: mask })[0] as tf.Tensor2D;
    const f = tf.customGrad((...args: Args) => {
      const ins = args.slice(0, inputs.length) as tf.Tensor[];
      const [o, p] = run(ATTENTION, { a: ins[0], b: ins[1] ?? null, drop: mask });
      (args[inputs.length] as tf.GradSaveFunc)([p, ...ins, ...(mask ? [mask] : [])]);
      return {
        value: o,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => run(ATTENTION_GRAD, { dO: dy, p: saved[0], a: saved[1], b: two ? saved[2] : null, drop: mask ? saved[saved.length - 1] : null }),
      };
    });
    return f(...inputs) as tf.Tensor2D;
  });
}
