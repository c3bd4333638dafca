// Building blocks of GPT-2 with gradients that every backend can run.
//
// `gatherRows` has its gradient written with `scatterND` (the wasm backend has no
// UnsortedSegmentSum kernel, which the stock gather gradient needs). Tensors a custom gradient
// needs are passed through `save()` (a closure would see them disposed by the caller's tidy).
import * as tf from '@tensorflow/tfjs';

/** `table[idx]` for a 2-D table and 1-D int32 indices; gradient to the table via scatterND. */
export function gatherRows(table: tf.Tensor, idx: tf.Tensor1D): tf.Tensor2D {
  const [V, d] = table.shape;
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
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

/** GPT-2's `gelu_new`: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
export function gptGelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), GELU_C);
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  });
}

/** LayerNorm over the last axis. */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor2D {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    const xhat = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(xhat, gamma), beta) as tf.Tensor2D;
  });
}
