// The training loss of GPT-2 and ClipCap: mean token cross-entropy under a mask, with a hand-written
// gradient (one softmax pass, no dense one-hot tensor). Checked against a float64 reference and
// finite differences in test/gpt2.test.ts.
import * as tf from '@tensorflow/tfjs';

/**
 * Mean cross-entropy over positions where `mask` is 1: `logits[b, t]` predicts `targets[b, t]`.
 * Targets under mask 0 are ignored (any value).
 *
 * One softmax pass: p = softmax(logits) (a fused kernel); loss = lse - logit[target] with
 * lse = max - log(max p) (max p >= 1/V never underflows); the gradient (p - onehot) * weight reuses
 * p, with the target entries fixed by a scatter instead of a dense one-hot tensor.
 */
export function lmLoss(logits: tf.Tensor3D, targets: tf.Tensor2D, mask: tf.Tensor2D): tf.Scalar {
  const [B, T, V] = logits.shape;
  if (targets.shape[0] !== B || targets.shape[1] !== T || mask.shape[0] !== B || mask.shape[1] !== T) {
    throw new Error(`lmLoss: logits [${logits.shape}], targets [${targets.shape}] and mask [${mask.shape}] disagree`);
  }
  const N = B * T;
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32').reshape([N]);
    const count = tf.maximum(tf.sum(m), 1);
    const w = tf.div(m, count); // per-position weight
    const tgt = tf.cast(tf.clipByValue(targets.reshape([N]), 0, V - 1), 'int32') as tf.Tensor1D;
    const idx2 = tf.stack([tf.range(0, N, 1, 'int32'), tgt], 1) as tf.Tensor2D; // [N, 2]
    // Tensors the gradient needs go through save(): closures would see them disposed by this tidy.
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const lg = args[0] as tf.Tensor;
      const save = args[1] as tf.GradSaveFunc;
      const l2 = lg.reshape([N, V]);
      const p = tf.softmax(l2);
      const lse = tf.sub(tf.max(l2, 1), tf.log(tf.max(p, 1)));
      const picked = tf.gatherND(l2, idx2);
      const value = tf.sum(tf.mul(tf.sub(lse, picked), w)) as tf.Scalar;
      save([p, w, idx2]);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [ps, ws, ix] = saved;
          const scale = tf.mul(ws, dy); // [N]
          const g = tf.mul(ps, scale.reshape([N, 1]));
          const atTarget = tf.sub(tf.gatherND(g, ix), scale);
          return tf.tensorScatterUpdate(g, ix, atTarget).reshape([B, T, V]);
        },
      };
    });
    return f(logits) as tf.Scalar;
  });
}
