// Reference rows for the evaluation table, as pure functions:
//
// 1. Nearest-neighbour caption retrieval (Devlin et al. 2015, "Exploring nearest neighbor approaches for
//    image captioning"): for a query photo, the k training photos whose embeddings (from the same image
//    encoder) are most cosine-similar; their captions form a candidate pool, and the answer is the pool's
//    *consensus caption*: the caption with the highest mean similarity to the other captions of the pool.
//    Similarity is CIDEr-D exactly as the COCO toolkit computes it (src/lib/eval/metrics/cider.ts): a caption's
//    consensus score is its CIDEr-D with the rest of the pool as its references, with document frequencies
//    over the whole training caption set (one document per training photo, like the toolkit's per-image
//    reference sets). Devlin et al. tried BLEU and CIDEr for this step; CIDEr-D is chosen here because its
//    TF-IDF weighting favours the informative words the neighbours agree on rather than "a", "of", "the".
//    Ties go to the caption that comes first in the pool (nearest photo first, its captions in order).
//
// 2. Human leave-one-out: how well one person's caption scores against the other four references.
import * as tf from '@tensorflow/tfjs';
import { tokenizeCaptions } from './metrics/tokenize';
import { scoreCaptions, METRIC_NAMES, MetricScores } from './metrics/index';
import { type Neighbour, type SimilarityEngine, jsSimilarity, tfjsSimilarity, nearestNeighbours } from './knn';
import { ConsensusScorer } from './metrics/consensus';

export interface NearestNeighbourCaptionOptions<K, Q> {
  /** Number of nearest training photos whose captions form the pool (default 25). */
  k?: number;
  /** Leave out a training photo for a query (default: equal ids). */
  exclude?: (query: Q, train: K) => boolean;
  /** Similarity engine for the neighbour search (default jsSimilarity; tfjsSimilarity(tf) is much faster). */
  engine?: SimilarityEngine;
  /**
   * How captions become toolkit tokens for the CIDEr-D consensus (default: the toolkit tokenization,
   * tokenizeCaptions). Pass `(cs) => cs` when the captions are already tokenized.
   */
  tokenize?: (captions: string[]) => string[];
}

export interface RetrievedCaption<K> {
  /** The consensus caption, as written in the training set (not tokenized). */
  caption: string;
  /** The training photo it came from. */
  from: K;
  /** Its consensus score (CIDEr-D against the rest of the pool). */
  score: number;
  /** The k nearest training photos, most similar first. */
  neighbours: Neighbour<K>[];
}

/**
 * Nearest-neighbour caption retrieval (see the header): for every query embedding, the consensus caption
 * of the captions of its k nearest training photos. `trainEmbeddings` and `trainCaptions` must have the
 * same ids; a training photo without captions contributes nothing to the pool.
 */
export function nearestNeighbourCaptions<K, Q>(
  trainEmbeddings: Map<K, Float32Array>,
  trainCaptions: Map<K, string[]>,
  queries: Map<Q, Float32Array>,
  opts: NearestNeighbourCaptionOptions<K, Q> = {},
): Map<Q, RetrievedCaption<K>> {
  const k = opts.k ?? 25;
  for (const id of trainEmbeddings.keys()) {
    if (!trainCaptions.has(id)) throw new Error(`nearestNeighbourCaptions: training photo ${String(id)} has an embedding but no captions`);
  }
  const tokenize = opts.tokenize ?? tokenizeCaptions;
  // Tokenize the training captions once (one batch), keeping each photo's slice.
  const ids = [...trainEmbeddings.keys()];
  const flat: string[] = [];
  for (const id of ids) flat.push(...trainCaptions.get(id)!);
  const tok = tokenize(flat);
  if (tok.length !== flat.length) throw new Error(`nearestNeighbourCaptions: tokenize returned ${tok.length} captions for ${flat.length}`);
  const tokenized = new Map<K, string[]>();
  let o = 0;
  for (const id of ids) {
    const n = trainCaptions.get(id)!.length;
    tokenized.set(id, tok.slice(o, o + n));
    o += n;
  }
  const scorer = new ConsensusScorer(tokenized.values());
  const tokIndex = new Map<K, number[]>();
  for (const [id, t] of tokenized) tokIndex.set(id, t.map((c) => scorer.indexOf(c)));
  const knn = nearestNeighbours(trainEmbeddings, queries, { k, exclude: opts.exclude, engine: opts.engine });
  const out = new Map<Q, RetrievedCaption<K>>();
  for (const [q, neighbours] of knn) {
    const pool: number[] = [];
    const origin: { id: K; raw: string }[] = [];
    for (const nb of neighbours) {
      const raw = trainCaptions.get(nb.id)!;
      const t = tokIndex.get(nb.id)!;
      raw.forEach((c, i) => {
        pool.push(t[i]);
        origin.push({ id: nb.id, raw: c });
      });
    }
    if (pool.length === 0) throw new Error(`nearestNeighbourCaptions: no training captions near query ${String(q)}`);
    const scores = scorer.poolScoresByIndex(pool);
    let best = 0;
    for (let i = 1; i < scores.length; i++) if (scores[i] > scores[best]) best = i;
    out.set(q, { caption: origin[best].raw, from: origin[best].id, score: scores[best], neighbours });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Human leave-one-out.

export interface HumanScore {
  /** Mean over the 5 rotations of each corpus metric. */
  scores: MetricScores;
  /** The corpus metrics of each rotation r = 0..4 (reference r of every image as its candidate). */
  rotations: MetricScores[];
  /** Photos used (those with at least 5 references). */
  count: number;
  /** Photos left out for having fewer than 5 references. */
  skipped: number;
}

/**
 * The human row of the table: how one person's caption scores against the other people's.
 *
 * Exactly: take the photos with at least 5 reference captions and use their first 5 (a photo with fewer
 * is skipped; with more, the extras are ignored, so every rotation has 4 references). For rotation
 * r = 0..4, reference r of every photo is its candidate and the other 4 its references; the corpus metrics
 * of that rotation are computed exactly like a model's (scoreCaptions: BLEU pooled over photos, ROUGE-L
 * and CIDEr-D averaged over photos, CIDEr-D document frequencies from that rotation's reference sets). The
 * reported score of each metric is the plain mean of its 5 rotation values.
 *
 * All captions are tokenized once, as one batch in photo order (not per rotation as the toolkit would;
 * this can only matter for the rare cross-caption lookahead described in metrics/tokenize.ts).
 */
export function humanLeaveOneOut<K>(gts: Map<K, string[]>, opts: { tokenized?: boolean } = {}): HumanScore {
  const R = 5;
  const used = new Map<K, string[]>();
  let skipped = 0;
  for (const [k, refs] of gts) {
    if (refs.length >= R) used.set(k, refs.slice(0, R));
    else skipped++;
  }
  if (used.size === 0) throw new Error(`humanLeaveOneOut: no photo has ${R} reference captions (${skipped} photos have fewer)`);
  const ids = [...used.keys()];
  let sets = ids.map((k) => used.get(k)!);
  if (!opts.tokenized) {
    const flat = tokenizeCaptions(sets.flat());
    sets = sets.map((_, i) => flat.slice(i * R, (i + 1) * R));
  }
  const rotations: MetricScores[] = [];
  for (let r = 0; r < R; r++) {
    const g = new Map<K, string[]>();
    const c = new Map<K, string>();
    ids.forEach((k, i) => {
      c.set(k, sets[i][r]);
      g.set(k, sets[i].filter((_, j) => j !== r));
    });
    rotations.push(scoreCaptions(g, c, { tokenized: true }).scores);
  }
  const scores = Object.fromEntries(METRIC_NAMES.map((m) => [m, rotations.reduce((s, x) => s + x[m], 0) / R])) as MetricScores;
  return { scores, rotations, count: ids.length, skipped };
}

/**
 * The retrieval baseline of the evaluation (and of the dev scores): for each query photo, the consensus
 * caption of its k nearest training photos by the same encoder, through TensorFlow.js matMuls.
 */
export function retrievalCaptions(
  train: readonly { image_id: string; captions: string[] }[],
  embedding: (id: string) => Float32Array,
  queries: Map<string, Float32Array>,
  k: number,
): Map<string, string> {
  const got = nearestNeighbourCaptions(
    new Map(train.map((g) => [g.image_id, embedding(g.image_id)])),
    new Map(train.map((g) => [g.image_id, g.captions])),
    queries,
    { k, engine: tfjsSimilarity(tf) },
  );
  return new Map([...got].map(([id, r]) => [id, r.caption]));
}
