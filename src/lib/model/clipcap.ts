// The ClipCap model: image embedding -> mapper -> prefix vectors, followed by the caption's token
// embeddings, into GPT-2. Only the caption tokens are scored (cross-entropy); the prefix positions
// and the padding after the caption never contribute. GPT-2 is fine-tuned or frozen.
import * as tf from '@tensorflow/tfjs';
import { GPT2, lmLoss } from './gpt2';
import type { Mapper } from './mapper';
import type { TrainableVar, TrainTask } from '../train/loop';

/** One training example: an image embedding and one of its captions as token ids (EOS appended). */
export interface CaptionExample {
  imageId: string;
  embedding: Float32Array;
  tokens: number[];
}

/** Token ids of a caption for training: the caption's ids, cut to maxTokens - 1, then EOS. */
export function captionTokens(ids: number[], eosId: number, maxTokens: number): number[] {
  if (maxTokens < 2) throw new Error(`maxCaptionTokens must be at least 2, got ${maxTokens}`);
  return [...ids.slice(0, maxTokens - 1), eosId];
}

/** Pad token lists to the longest one: ids (pad 0) and mask (1 = caption token) as [B, T]. */
export function padBatch(lists: number[][]): { ids: tf.Tensor2D; mask: tf.Tensor2D; tokens: number } {
  const B = lists.length;
  const T = Math.max(1, ...lists.map((l) => l.length));
  const ids = new Int32Array(B * T);
  const mask = new Float32Array(B * T);
  let tokens = 0;
  lists.forEach((l, b) => {
    for (let t = 0; t < l.length; t++) {
      ids[b * T + t] = l[t];
      mask[b * T + t] = 1;
    }
    tokens += l.length;
  });
  return { ids: tf.tensor2d(ids, [B, T], 'int32'), mask: tf.tensor2d(mask, [B, T]), tokens };
}

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
      const { logits } = this.lm.forward({
        inputsEmbeds: inputs,
        training: opts.training && this.finetuneLM,
        dropoutSeed: opts.seed,
        logitsFrom: P - 1,
      });
      const V = logits.shape[2];
      const pred = tf.slice(logits, [0, 0, 0], [B, T, V]) as tf.Tensor3D;
      const count = tf.sum(mask);
      return tf.mul(lmLoss(pred, ids, mask), count) as tf.Scalar;
    });
  }

  trainable(): TrainableVar[] {
    const names = this.mapper.parameterNames();
    const vars: TrainableVar[] = this.mapper.variables().map((v, i) => ({ name: `mapper.${names[i]}`, variable: v }));
    if (this.finetuneLM) for (const [n, v] of this.lm.namedWeights()) vars.push({ name: `lm.${n}`, variable: v });
    return vars;
  }
}

/** Stack the embeddings of some examples into a [B, dim] tensor. */
export function embeddingBatch(examples: CaptionExample[]): tf.Tensor2D {
  const dim = examples[0].embedding.length;
  const data = new Float32Array(examples.length * dim);
  examples.forEach((e, i) => {
    if (e.embedding.length !== dim) throw new Error(`embedding of ${e.imageId} has ${e.embedding.length} values, expected ${dim}`);
    data.set(e.embedding, i * dim);
  });
  return tf.tensor2d(data, [examples.length, dim]);
}

/** A TrainTask over caption examples, for runTraining. */
export function clipCapTask(
  model: ClipCapModel,
  train: CaptionExample[],
  val: CaptionExample[],
  io: { saveWeights: (dir: string) => Promise<void>; loadWeights: (dir: string) => Promise<void> },
): TrainTask {
  const pick = (split: 'train' | 'val', idx: number[]) => idx.map((i) => (split === 'train' ? train : val)[i]);
  return {
    numTrain: train.length,
    numVal: val.length,
    trainable: () => model.trainable(),
    lengthOf: (i) => train[i].tokens.length,
    tokenCount: (split, idx) => pick(split, idx).reduce((n, e) => n + e.tokens.length, 0),
    lossSum: (split, idx, opts) => {
      // Called inside the training loop's tidy scopes, which dispose these inputs.
      const ex = pick(split, idx);
      const { ids, mask } = padBatch(ex.map((e) => e.tokens));
      return model.lossSum(embeddingBatch(ex), ids, mask, opts);
    },
    saveWeights: io.saveWeights,
    loadWeights: io.loadWeights,
  };
}
