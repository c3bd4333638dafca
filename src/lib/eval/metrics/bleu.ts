// BLEU-1..4 exactly as the COCO caption toolkit computes it (pycocoevalcap bleu/bleu_scorer.py, as called by
// bleu/bleu.py with option "closest"):
// - per image: clipped n-gram matches (each candidate n-gram count clipped by its maximum count in any
//   one reference), n-gram "guesses" max(0, len - n + 1), and the reference length closest to the
//   candidate's length (ties go to the shorter reference);
// - corpus BLEU-n: geometric mean of the pooled precisions (matches + 1e-15) / (guesses + 1e-9) for
//   1..n, times the brevity penalty exp(1 - r/c) when the pooled candidate length c is below the pooled
//   reference length r (c and r also get the +1e-15 / +1e-9 guards);
// - per-image BLEU-n: the same formula on one image's counts (the toolkit's second return value).
// Input captions are already tokenized; words are whatever Python's `str.split()` yields.
import { pySplit } from './pysplit';

export const BLEU_SMALL = 1e-9; // added to denominators (the toolkit's `small`)
export const BLEU_TINY = 1e-15; // added to numerators (the toolkit's `tiny`)

export interface BleuResult {
  /** Corpus BLEU-1..n. */
  corpus: number[];
  /** perImage[i][k]: BLEU-(k+1) of image i. */
  perImage: number[][];
  /** Each image's counts, from which corpus BLEU of any subset (or resample) follows: corpusBleu. */
  stats: BleuStats[];
}

/** One image's BLEU counts: candidate length, chosen reference length, n-gram guesses and clipped matches. */
export interface BleuStats {
  testlen: number;
  reflen: number;
  guess: number[];
  correct: number[];
}

function ngramCounts(words: string[], n: number): Map<string, number>[] {
  const out: Map<string, number>[] = [];
  for (let k = 1; k <= n; k++) {
    const m = new Map<string, number>();
    for (let i = 0; i + k <= words.length; i++) {
      const g = words.slice(i, i + k).join(' ');
      m.set(g, (m.get(g) ?? 0) + 1);
    }
    out.push(m);
  }
  return out;
}

function cook(candidate: string, refs: string[], n: number): BleuStats {
  const maxCounts: Map<string, number>[] = Array.from({ length: n }, () => new Map());
  const reflens: number[] = [];
  for (const r of refs) {
    const w = pySplit(r);
    reflens.push(w.length);
    const c = ngramCounts(w, n);
    for (let k = 0; k < n; k++) for (const [g, v] of c[k]) if (v > (maxCounts[k].get(g) ?? 0)) maxCounts[k].set(g, v);
  }
  const words = pySplit(candidate);
  const testlen = words.length;
  // "closest": min over (|l - testlen|, l), i.e. ties broken by the shorter reference.
  let reflen = reflens[0];
  for (const l of reflens) {
    const d = Math.abs(l - testlen);
    const best = Math.abs(reflen - testlen);
    if (d < best || (d === best && l < reflen)) reflen = l;
  }
  const counts = ngramCounts(words, n);
  const guess: number[] = [];
  const correct: number[] = [];
  for (let k = 0; k < n; k++) {
    guess.push(Math.max(0, testlen - k));
    let c = 0;
    for (const [g, v] of counts[k]) c += Math.min(maxCounts[k].get(g) ?? 0, v);
    correct.push(c);
  }
  return { testlen, reflen, guess, correct };
}

function bleuFrom(correct: number[], guess: number[], testlen: number, reflen: number, n: number): number[] {
  const out: number[] = [];
  let prod = 1;
  for (let k = 0; k < n; k++) {
    prod *= (correct[k] + BLEU_TINY) / (guess[k] + BLEU_SMALL);
    out.push(prod ** (1 / (k + 1)));
  }
  const ratio = (testlen + BLEU_TINY) / (reflen + BLEU_SMALL);
  if (ratio < 1) {
    const bp = Math.exp(1 - 1 / ratio);
    for (let k = 0; k < n; k++) out[k] *= bp;
  }
  return out;
}

/**
 * Corpus and per-image BLEU-1..n of tokenized candidates (`res[i]`) against tokenized references (`gts[i]`,
 * at least one each).
 */
export function bleu(gts: string[][], res: string[], n = 4): BleuResult {
  if (gts.length !== res.length) throw new Error(`bleu: ${gts.length} reference sets but ${res.length} candidates`);
  const stats: BleuStats[] = res.map((r, i) => {
    if (gts[i].length === 0) throw new Error(`bleu: image ${i} has no reference`);
    return cook(r, gts[i], n);
  });
  const perImage = stats.map((c) => bleuFrom(c.correct, c.guess, c.testlen, c.reflen, n));
  return { corpus: corpusBleu(stats, undefined, n), perImage, stats };
}

/**
 * Corpus BLEU-1..n pooled over `stats[idx[j]]` (every image when `idx` is omitted; an index may repeat,
 * as in a bootstrap resample). Equals bleu(...).corpus on the same images.
 */
export function corpusBleu(stats: readonly BleuStats[], idx?: ArrayLike<number>, n = 4): number[] {
  let testlen = 0;
  let reflen = 0;
  const guess = new Array<number>(n).fill(0);
  const correct = new Array<number>(n).fill(0);
  const count = idx ? idx.length : stats.length;
  for (let j = 0; j < count; j++) {
    const c = stats[idx ? idx[j] : j];
    testlen += c.testlen;
    reflen += c.reflen;
    for (let k = 0; k < n; k++) {
      guess[k] += c.guess[k];
      correct[k] += c.correct[k];
    }
  }
  return bleuFrom(correct, guess, testlen, reflen, n);
}
