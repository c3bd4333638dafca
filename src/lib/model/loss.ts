// The training loss of GPT-2 and ClipCap: mean token cross-entropy under a mask, with a hand-written
// gradient (one softmax pass, no dense one-hot tensor). Checked against a float64 reference and
// finite differences in test/gpt2.test.ts.
import * as tf from '@tensorflow/tfjs';
import { recordingGradients } from '../tfjs/ops';

/**
 * Targets as int32 ids in [0, V) (those under mask 0 may be anything), clipped in float32: the wasm
 * backend's ClipByValue does not clip int32. Exact for ids below 2^24.
 */
function validTargets(targets: tf.Tensor1D, V: number): tf.Tensor1D {
  return tf.cast(tf.clipByValue(tf.cast(targets, 'float32'), 0, V - 1), 'int32') as tf.Tensor1D;
}

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
    const tgt = validTargets(targets.reshape([N]) as tf.Tensor1D, V);
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

/**
 * The smallest positive normal float32. A target whose probability underflows below it (a loss above
 * 87.3 nats for that token) counts as this probability: the loss stays finite, the gradient is exact.
 */
export const MIN_PROB = 1.1754943508222875e-38;

/**
 * GPT-2's tied LM head and its loss in one: the mean cross-entropy, over the positions where `mask`
 * is 1, of softmax(h @ wte^T) against `targets`. `h` `[N, d]` (the final LayerNorm's output), `wte`
 * `[V, d]` (the token embedding table), `targets` `[N]` (any value under mask 0), `mask` `[N]`.
 *
 * The same value as `lmLoss(h @ wte^T, ...)` to float32 rounding, with less work on the `[N, V]`
 * tensors, which dominate a step at a caption LM's vocabulary (N = 2,048, V = 8,489: 17 million
 * numbers): the loss is -log p[target] from the softmax (no max passes), and the gradient
 * (p - onehot) * w never exists as a tensor. With s = w * dy per position:
 *   dh   = s * (p @ wte) - s * wte[target]
 *   dwte = p^T @ (s * h) - scatter of s * h onto the target rows
 * so p goes straight into the two products, and the one-hot part touches N rows only. A frozen `wte`
 * (a non-trainable variable) gets no gradient and its product is skipped.
 */
export function lmHeadLoss(h: tf.Tensor2D, wte: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
  const [N, d] = h.shape;
  const [V, dw] = wte.shape;
  if (dw !== d || targets.shape[0] !== N || mask.shape[0] !== N) {
    throw new Error(`lmHeadLoss: h [${h.shape}], wte [${wte.shape}], targets [${targets.shape}] and mask [${mask.shape}] disagree`);
  }
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32');
    const w = tf.div(m, tf.maximum(tf.sum(m), 1)); // per-position weight
    const tgt = validTargets(targets, V);
    const flat = tf.add(tf.range(0, N * V, V, 'int32'), tgt) as tf.Tensor1D; // index of p[n, target n] in p flattened
    const forward = (hi: tf.Tensor2D, table: tf.Tensor2D) => {
      const p = tf.softmax(tf.matMul(hi, table, false, true));
      const pt = tf.gather(p.reshape([N * V]), flat);
      const value = tf.neg(tf.sum(tf.mul(tf.log(tf.maximum(pt, MIN_PROB)), w))) as tf.Scalar;
      return { p, value };
    };
    if (!recordingGradients()) return forward(h, wte).value;
    const trainTable = !(wte instanceof tf.Variable) || wte.trainable;
    // Tensors the gradient needs go through save(): closures would see them disposed by this tidy.
    const grads = (dy: tf.Tensor, [p, hs, table, ws, ts]: tf.Tensor[]) => {
      const s = tf.mul(ws, dy).reshape([N, 1]);
      const dh = tf.mul(tf.sub(tf.matMul(p, table), tf.gather(table, ts)), s);
      if (!trainTable) return [dh];
      const sh = tf.mul(hs, s);
      const dwte = tf.sub(tf.matMul(p, sh, true, false), tf.scatterND(ts.reshape([N, 1]), sh, [V, d]));
      return [dh, dwte];
    };
    if (trainTable) {
      const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
        const [hi, table] = args as tf.Tensor2D[];
        const { p, value } = forward(hi, table);
        (args[2] as tf.GradSaveFunc)([p, hi, table, w, tgt]);
        return { value, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => grads(dy, saved) };
      });
      return f(h, wte) as tf.Scalar;
    }
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const hi = args[0] as tf.Tensor2D;
      const { p, value } = forward(hi, wte);
      (args[1] as tf.GradSaveFunc)([p, hi, wte, w, tgt]);
      return { value, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => grads(dy, saved)[0] };
    });
    return f(h) as tf.Scalar;
  });
}
