// The ClipCap model: image embedding -> mapper -> prefix vectors, followed by the caption's token
// embeddings, into GPT-2. Only the caption tokens are scored (cross-entropy); the prefix positions
// and the padding after the caption never contribute. GPT-2 is fine-tuned or frozen.
import * as tf from '@tensorflow/tfjs';
import { GPT2 } from './gpt2';
import type { Mapper } from './mapper';

export class ClipCapModel {
  constructor(
    readonly lm: GPT2,
    readonly mapper: Mapper,
    readonly finetuneLM: boolean,
  ) {
    if (mapper.config.embedDim !== lm.config.nEmbd) {
      throw new Error(`mapper output width ${mapper.config.embedDim} != GPT-2 n_embd ${lm.config.nEmbd}`);
    }
    lm.setTrainable(finetuneLM);
  }

  get prefixLength(): number {
    return this.mapper.config.prefixLength;
  }

  /** [B, dim] image embeddings -> [B, prefix, d] prefix vectors. */
  prefix(embeddings: tf.Tensor2D): tf.Tensor3D {
    return this.mapper.forward(embeddings);
  }

  /**
   * Sum over caption tokens of the cross-entropy of GPT-2's prediction, for a batch of image
   * embeddings [B, dim] and padded captions ids/mask [B, T].
   */
  lossSum(embeddings: tf.Tensor2D, ids: tf.Tensor2D, mask: tf.Tensor2D, opts: { training: boolean; seed?: number }): tf.Scalar {
    return tf.tidy(() => {
      const [B, T] = ids.shape;
      const P = this.prefixLength;
      const prefix = this.prefix(embeddings);
      const tok = this.lm.embedTokens(ids);
      const inputs = tf.concat([prefix, tok], 1) as tf.Tensor3D;
      // A frozen GPT-2 runs in eval mode (no dropout), as ClipCaptionPrefix.train() does. The output
      // at position P-1+t predicts caption token t, so the LM head runs from position P-1 on only.
      // Causal attention keeps the padding after a caption from influencing its tokens, and the mask
      // drops the padded targets.
      const hidden = this.lm.hidden({
        inputsEmbeds: inputs,
        training: opts.training && this.finetuneLM,
        dropoutSeed: opts.seed,
        logitsFrom: P - 1,
      });
      const d = hidden.shape[2];
      const h = tf.slice(hidden, [0, 0, 0], [B, T, d]).reshape([B * T, d]) as tf.Tensor2D;
      const count = tf.sum(mask);
      return tf.mul(this.lm.headLoss(h, ids.reshape([B * T]) as tf.Tensor1D, mask.reshape([B * T]) as tf.Tensor1D), count) as tf.Scalar;
    });
  }

  /** The variables training updates, with stable names: the mapper's, and GPT-2's when fine-tuned. */
  trainable(): { name: string; variable: tf.Variable }[] {
    const names = this.mapper.parameterNames();
    const vars: { name: string; variable: tf.Variable }[] = this.mapper.variables().map((v, i) => ({ name: `mapper.${names[i]}`, variable: v }));
    if (this.finetuneLM) for (const [n, v] of this.lm.namedWeights()) vars.push({ name: `lm.${n}`, variable: v });
    return vars;
  }
}
