// COCO caption metrics equal to the official toolkit (pycocoevalcap): BLEU-1..4, ROUGE-L and CIDEr-D on
// PTB-tokenized, lower-cased captions without punctuation. Given the same tokenized inputs every figure
// equals the Python toolkit's (see test/metrics.test.ts, which checks against vectors the toolkit made);
// tokenization differences are documented in tokenize.ts.
//
// (Notebooks import this file as lib/metrics/index: tslab needs the file, not the directory.)
//   const { scores, perImage } = scoreCaptions(refsById, candidateById);
//   scores.CIDEr, scores.Bleu_4, perImage.get(id)!.ROUGE_L
import { bleu } from './bleu';
import { ciderD } from './cider';
import { rougeL } from './rouge';
import { tokenizeAll, tokenizeCaptions } from './tokenize';

export { bleu } from './bleu';
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
  return { scores, perImage, count: ids.length };
}
