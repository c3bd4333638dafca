// COCO caption metrics equal to the official toolkit (pycocoevalcap): BLEU-1..4, ROUGE-L and CIDEr-D on
// PTB-tokenized, lower-cased captions without punctuation. Given the same tokenized inputs every figure
// equals the Python toolkit's (see test/metrics.test.ts, which checks against vectors the toolkit made);
// tokenization differences are documented in tokenize.ts.
//
// (Notebooks import this file as lib/metrics/index: tslab needs the file, not the directory.)
//   const { scores, perImage } = scoreCaptions(refsById, candidateById);
//   scores.CIDEr, scores.Bleu_4, perImage.get(id)!.ROUGE_L
import { bleu, corpusBleu, type BleuStats } from './bleu';
import { bootstrapInterval, type BootstrapOptions, type Interval } from './bootstrap';
import { ciderD } from './cider';
import { rougeL } from './rouge';
import { tokenizeAll, tokenizeCaptions } from './tokenize';

export { bleu, corpusBleu } from './bleu';
export { bootstrapInterval, quantileSorted, type Interval, type BootstrapOptions } from './bootstrap';
export { ciderD } from './cider';
export { rougeL, lcsLength } from './rouge';
export { tokenizeCaption, tokenizeCaptions, tokenizeAll, ptbTokens, PUNCTUATIONS } from './tokenize';

/** The toolkit's metric keys, in its order. */
export const METRIC_NAMES = ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'ROUGE_L', 'CIDEr'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];
export type MetricScores = Record<MetricName, number>;

export interface CaptionScores<K> {
  /** Corpus scores (BLEU pooled over images, ROUGE-L and CIDEr-D averaged over images). */
  scores: MetricScores;
  /** Each image's scores (the toolkit's imgToEval). */
  perImage: Map<K, MetricScores>;
  /** Number of images scored. */
  count: number;
  /** The images scored, in scoring order (the order of `gts`). */
  ids: K[];
  /** Each image's BLEU counts, in the order of `ids` (for BLEU on resamples: metricOnImages). */
  bleuStats: BleuStats[];
}

export interface ScoreOptions {
  /**
   * The captions are already in the toolkit's tokenized form (lower case, tokens separated by spaces,
   * punctuation removed): skip tokenization. Default false: tokenize like the toolkit.
   */
  tokenized?: boolean;
}

/**
 * Scores candidate captions `res` (one per image) against reference captions `gts` (one or more per image)
 * as the COCO toolkit's COCOEvalCap does: the images scored are those of `res`, each of which must have
 * references in `gts` (images of `gts` without a candidate are ignored, as in the toolkit), taken in the
 * order of `gts`; references and candidates are tokenized as two batches, like the toolkit's two
 * PTBTokenizer calls.
 */
export function scoreCaptions<K>(gts: Map<K, string[]>, res: Map<K, string>, opts: ScoreOptions = {}): CaptionScores<K> {
  const missing: K[] = [];
  for (const k of res.keys()) if (!gts.has(k)) missing.push(k);
  if (missing.length) {
    throw new Error(`scoreCaptions: ${missing.length} candidate image id(s) have no references, e.g. ${missing.slice(0, 5).map(String).join(', ')}`);
  }
  const ids: K[] = [];
  for (const [k, refs] of gts) {
    if (!res.has(k)) continue;
    if (refs.length === 0) throw new Error(`scoreCaptions: image ${String(k)} has no reference captions`);
    ids.push(k);
  }
  if (ids.length === 0) throw new Error('scoreCaptions: no candidate captions to score');
  let refSets = ids.map((k) => gts.get(k)!);
  let cands = ids.map((k) => res.get(k)!);
  if (!opts.tokenized) {
    const tg = tokenizeAll(new Map(ids.map((k, i) => [k, refSets[i]])));
    refSets = ids.map((k) => tg.get(k)!);
    cands = tokenizeCaptions(cands);
  }
  const b = bleu(refSets, cands, 4);
  const r = rougeL(refSets, cands);
  const c = ciderD(refSets, cands);
  const scores: MetricScores = { Bleu_1: b.corpus[0], Bleu_2: b.corpus[1], Bleu_3: b.corpus[2], Bleu_4: b.corpus[3], ROUGE_L: r.corpus, CIDEr: c.corpus };
  const perImage = new Map<K, MetricScores>();
  ids.forEach((k, i) => {
    const bi = b.perImage[i];
    perImage.set(k, { Bleu_1: bi[0], Bleu_2: bi[1], Bleu_3: bi[2], Bleu_4: bi[3], ROUGE_L: r.perImage[i], CIDEr: c.perImage[i] });
  });
  return { scores, perImage, count: ids.length, ids, bleuStats: b.stats };
}

/**
 * A metric recomputed on the images at positions `idx` of `sc.ids` (repeats allowed): BLEU pooled from
 * the per-image counts, ROUGE-L and CIDEr-D averaged (CIDEr-D keeps the full set's document frequencies).
 * On every image once it equals sc.scores[metric].
 */
export function metricOnImages<K>(sc: CaptionScores<K>, metric: MetricName, idx: ArrayLike<number>): number {
  const m = /^Bleu_(\d)$/.exec(metric);
  if (m) return corpusBleu(sc.bleuStats, idx)[Number(m[1]) - 1];
  let sum = 0;
  for (let j = 0; j < idx.length; j++) sum += sc.perImage.get(sc.ids[idx[j]])![metric];
  return sum / idx.length;
}

/** 95% (by default) bootstrap interval of one system's metric over its evaluation images. */
export function scoreInterval<K>(sc: CaptionScores<K>, metric: MetricName, opts: BootstrapOptions = {}): Interval {
  return bootstrapInterval(sc.count, (idx) => metricOnImages(sc, metric, idx), opts);
}

/**
 * Paired bootstrap interval of a - b on the same images (both scored on the same ids, in the same order):
 * an interval that excludes 0 says the difference is not an accident of which photos were drawn.
 */
export function differenceInterval<K>(a: CaptionScores<K>, b: CaptionScores<K>, metric: MetricName, opts: BootstrapOptions = {}): Interval {
  if (a.count !== b.count || a.ids.some((id, i) => id !== b.ids[i])) {
    throw new Error('differenceInterval: the two systems were not scored on the same images in the same order');
  }
  return bootstrapInterval(a.count, (idx) => metricOnImages(a, metric, idx) - metricOnImages(b, metric, idx), opts);
}
