// CIDEr-D exactly as the COCO caption toolkit computes it (pycocoevalcap cider/cider_scorer.py, the
// metric it reports as "CIDEr"):
// - each caption becomes, for n = 1..4, a TF-IDF vector over its n-grams: weight = count x
//   (log(#images) - log(max(1, df))), where df is the number of *evaluated* images whose reference set
//   contains the n-gram (document frequencies come from the evaluation references, nothing else);
// - similarity of the candidate to one reference, per n: sum over candidate n-grams of
//   min(w_cand, w_ref) x w_ref (the "clipping" of CIDEr-D), divided by the product of the two vector
//   norms (when both are non-zero), times the Gaussian length penalty exp(-delta^2 / (2 sigma^2)) with
//   sigma = 6;
// - image score = 10 x mean over n of the summed similarities / number of references; corpus = mean.
// Quirk kept on purpose: the toolkit's "length" of a caption is its number of *bigrams* (it counts
// term frequencies where the n-gram index is 1), i.e. max(0, words - 1), and delta uses that length. It
// equals the word-count difference unless one caption is empty, in which case the similarity is 0 anyway.
import { pySplit } from './pysplit';
import { mean } from './mean';

export const CIDER_N = 4;
export const CIDER_SIGMA = 6.0;

export interface CiderOptions {
  n?: number;
  sigma?: number;
}

/** All 1..n-gram counts of a token array, keyed "w1 w2 ..." (tokens never contain spaces), by order of n then position. */
export function ngramCounts(words: string[], n = CIDER_N): Map<string, number> {
  const m = new Map<string, number>();
  for (let k = 1; k <= n; k++) {
    for (let i = 0; i + k <= words.length; i++) {
      const g = k === 1 ? words[i] : words.slice(i, i + k).join(' ');
      m.set(g, (m.get(g) ?? 0) + 1);
    }
  }
  return m;
}

/** n-gram order (1-based) of a key made by ngramCounts. */
function orderOf(g: string): number {
  let k = 1;
  for (let i = 0; i < g.length; i++) if (g.charCodeAt(i) === 32) k++;
  return k;
}

/**
 * Document frequencies: for each n-gram, the number of reference sets (images) in which some reference
 * contains it.
 */
export function documentFrequencies(refSets: Map<string, number>[][]): Map<string, number> {
  const df = new Map<string, number>();
  for (const refs of refSets) {
    const seen = new Set<string>();
    for (const r of refs) for (const g of r.keys()) seen.add(g);
    for (const g of seen) df.set(g, (df.get(g) ?? 0) + 1);
  }
  return df;
}

/** A caption's CIDEr vector: per n-gram order, weights by n-gram, the norms, and the toolkit's "length". */
export interface CiderVector {
  vec: Map<string, number>[];
  norm: number[];
  length: number;
}

/** TF-IDF vector of one caption's n-gram counts (the toolkit's counts2vec). */
export function ciderVector(counts: Map<string, number>, df: Map<string, number>, logRefLen: number, n = CIDER_N): CiderVector {
  const vec: Map<string, number>[] = Array.from({ length: n }, () => new Map());
  const norm = new Array<number>(n).fill(0);
  let length = 0;
  for (const [g, tf] of counts) {
    const k = orderOf(g) - 1;
    if (k >= n) continue;
    const idf = Math.log(Math.max(1, df.get(g) ?? 0));
    const w = tf * (logRefLen - idf);
    vec[k].set(g, w);
    norm[k] += w * w;
    if (k === 1) length += tf; // the toolkit's length: number of bigrams
  }
  return { vec, norm: norm.map(Math.sqrt), length };
}

/** Per-order CIDEr-D similarity of a candidate vector to one reference vector (the toolkit's sim). */
export function ciderSim(hyp: CiderVector, ref: CiderVector, sigma = CIDER_SIGMA): number[] {
  const n = hyp.vec.length;
  const delta = hyp.length - ref.length;
  const penalty = Math.exp(-(delta * delta) / (2 * sigma * sigma));
  const val = new Array<number>(n).fill(0);
  for (let k = 0; k < n; k++) {
    const rv = ref.vec[k];
    let s = 0;
    for (const [g, h] of hyp.vec[k]) {
      const r = rv.get(g) ?? 0;
      s += Math.min(h, r) * r;
    }
    if (hyp.norm[k] !== 0 && ref.norm[k] !== 0) s /= hyp.norm[k] * ref.norm[k];
    val[k] = s * penalty;
  }
  return val;
}

/** Image score from a candidate vector and its reference vectors: 10 x mean over n of summed sims / #refs. */
export function ciderScoreOf(hyp: CiderVector, refs: CiderVector[], sigma = CIDER_SIGMA): number {
  const n = hyp.vec.length;
  const score = new Array<number>(n).fill(0);
  for (const r of refs) {
    const v = ciderSim(hyp, r, sigma);
    for (let k = 0; k < n; k++) score[k] += v[k];
  }
  let s = 0;
  for (let k = 0; k < n; k++) s += score[k];
  return ((s / n) / refs.length) * 10;
}

export interface CiderResult {
  corpus: number;
  perImage: number[];
}

/** Corpus (mean) and per-image CIDEr-D of tokenized candidates against tokenized references. */
export function ciderD(gts: string[][], res: string[], opts: CiderOptions = {}): CiderResult {
  const n = opts.n ?? CIDER_N;
  const sigma = opts.sigma ?? CIDER_SIGMA;
  if (gts.length !== res.length) throw new Error(`ciderD: ${gts.length} reference sets but ${res.length} candidates`);
  const refCounts = gts.map((refs, i) => {
    if (refs.length === 0) throw new Error(`ciderD: image ${i} has no reference`);
    return refs.map((r) => ngramCounts(pySplit(r), n));
  });
  const df = documentFrequencies(refCounts);
  const logRefLen = Math.log(gts.length);
  const perImage = res.map((c, i) => {
    const hyp = ciderVector(ngramCounts(pySplit(c), n), df, logRefLen, n);
    const refs = refCounts[i].map((rc) => ciderVector(rc, df, logRefLen, n));
    return ciderScoreOf(hyp, refs, sigma);
  });
  return { corpus: mean(perImage), perImage };
}
