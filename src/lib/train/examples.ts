// Training examples of ClipCap: caption rows and image embeddings -> token lists, padded batches, and
// the TrainTask the training loop runs (train/loop.ts). Shared with the LM pretraining (padBatch).
import * as tf from '@tensorflow/tfjs';
import type { CaptionRow } from '../data/schema';
import type { EmbeddingSet } from '../embed/embedding-set';
import { ClipCapModel } from '../model/clipcap';
import { GPT2, weightShapes, type GPT2Config } from '../model/gpt2';
import { createMapper, type MapperConfig } from '../model/mapper';
import { formatCaption } from '../model/text';
import type { Tokenizer } from '../model/tokenizer';
import { epochPermutation } from './loop';
import { REPLICA_WEIGHT_IO, type TrainTask } from './task';
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

/** Caption rows -> training examples (rows whose image has no embedding are skipped and counted). */
export function buildExamples(rows: CaptionRow[], emb: EmbeddingSet, tok: Tokenizer, maxTokens: number): { examples: CaptionExample[]; skipped: number } {
  const examples: CaptionExample[] = [];
  let skipped = 0;
  const cache = new Map<string, Float32Array>();
  for (const r of rows) {
    if (!emb.has(r.image_id)) {
      skipped++;
      continue;
    }
    const text = formatCaption(r.caption);
    if (!text) continue;
    let e = cache.get(r.image_id);
    if (!e) {
      e = emb.get(r.image_id);
      cache.set(r.image_id, e);
    }
    examples.push({ imageId: r.image_id, embedding: e, tokens: captionTokens(tok.encode(text), tok.eosId, maxTokens) });
  }
  return { examples, skipped };
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

/**
 * For each example, the embedding of another photo: a seeded permutation of the examples, repaired
 * so that no example keeps a photo of its own (the image-use measure of TrainTask.lossSum). Needs
 * at least two distinct photos; with one, every example keeps its own.
 */
export function shuffledEmbeddings(examples: readonly CaptionExample[], seed: number): Float32Array[] {
  const n = examples.length;
  const perm = epochPermutation(n, seed, 0);
  for (let i = 0; i < n; i++) {
    if (examples[perm[i]].imageId !== examples[i].imageId) continue;
    // swap with the first later (or earlier) slot whose photo differs from both
    for (let k = 1; k < n; k++) {
      const j = (i + k) % n;
      if (examples[perm[j]].imageId !== examples[i].imageId && examples[perm[i]].imageId !== examples[j].imageId) {
        [perm[i], perm[j]] = [perm[j], perm[i]];
        break;
      }
    }
  }
  return perm.map((p) => examples[p].embedding);
}

/** A TrainTask over caption examples, for runTraining. */
export function clipCapTask(
  model: ClipCapModel,
  train: CaptionExample[],
  val: CaptionExample[],
  io: { saveWeights: (dir: string) => Promise<void>; loadWeights: (dir: string) => Promise<void> },
): TrainTask {
  const pick = (split: 'train' | 'val', idx: number[]) => idx.map((i) => (split === 'train' ? train : val)[i]);
  const shuffled: Record<'train' | 'val', Float32Array[] | null> = { train: null, val: null };
  return {
    replica: () => ({
      module: __filename,
      exportName: 'clipCapTaskReplica',
      data: {
        lm: { config: model.lm.config, weights: Object.fromEntries([...model.lm.namedWeights()].map(([n, v]) => [n, v.dataSync() as Float32Array])) },
        mapper: model.mapper.config,
        finetuneLM: model.finetuneLM,
        train,
        val,
      } satisfies ClipCapReplicaData,
    }),
    imageConditioned: true,
    numTrain: train.length,
    numVal: val.length,
    trainable: () => model.trainable(),
    lengthOf: (i) => train[i].tokens.length,
    tokenCount: (split, idx) => pick(split, idx).reduce((n, e) => n + e.tokens.length, 0),
    lossSum: (split, idx, opts) => {
      // Called inside the training loop's tidy scopes, which dispose these inputs.
      let ex = pick(split, idx);
      if (opts.shuffledImages) {
        const other = (shuffled[split] ??= shuffledEmbeddings(split === 'train' ? train : val, 1));
        ex = ex.map((e, k) => ({ ...e, embedding: other[idx[k]] }));
      }
      const { ids, mask } = padBatch(ex.map((e) => e.tokens));
      return model.lossSum(embeddingBatch(ex), ids, mask, { training: opts.training, seed: opts.seed });
    },
    saveWeights: io.saveWeights,
    loadWeights: io.loadWeights,
  };
}

interface ClipCapReplicaData {
  lm: { config: GPT2Config; weights: Record<string, Float32Array> };
  mapper: MapperConfig;
  finetuneLM: boolean;
  train: CaptionExample[];
  val: CaptionExample[];
}

/**
 * clipCapTask in a worker thread of data-parallel training (TaskReplica): GPT-2 with the training
 * thread's weights (the frozen ones stay so), the mapper's weights copied in before every step.
 */
export function clipCapTaskReplica(data: ClipCapReplicaData): TrainTask {
  const shapes = weightShapes(data.lm.config);
  const weights = new Map(Object.entries(data.lm.weights).map(([n, w]) => [n, tf.tensor(w, shapes.get(n) ?? [w.length])]));
  const lm = new GPT2(data.lm.config, weights, { seed: 0 });
  tf.dispose([...weights.values()]);
  const model = new ClipCapModel(lm, createMapper(data.mapper, 0), data.finetuneLM);
  return clipCapTask(model, data.train, data.val, REPLICA_WEIGHT_IO);
}
