// ROUGE-L as the COCO caption toolkit computes it (pycocoevalcap rouge/rouge.py): for one image, the
// longest common subsequence (LCS) of the candidate with each reference gives precision LCS/|candidate|
// and recall LCS/|reference|; the image's score is the F-measure with beta = 1.2 of the *maximum*
// precision and the *maximum* recall over the references (taken separately, as the toolkit does), or 0
// when either maximum is 0. The corpus score is the mean over images.
// Tokens come from Python's `s.split(" ")`, so an empty caption is one empty token (as in the toolkit).
import { pySplitSpace } from './pysplit';
import { mean } from './mean';

export const ROUGE_BETA = 1.2;

/** Length of the longest common subsequence of two token arrays. */
export function lcsLength(a: string[], b: string[]): number {
  if (a.length < b.length) [a, b] = [b, a];
  // One row over the shorter sequence.
  let prev = new Int32Array(b.length + 1);
  let cur = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    const ai = a[i - 1];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = ai === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

/** ROUGE-L of one tokenized candidate against its tokenized references. */
export function rougeLSingle(candidate: string, refs: string[], beta = ROUGE_BETA): number {
  if (refs.length === 0) throw new Error('rougeL: no reference');
  const c = pySplitSpace(candidate);
  let precMax = -Infinity;
  let recMax = -Infinity;
  for (const r of refs) {
    const t = pySplitSpace(r);
    const lcs = lcsLength(t, c);
    precMax = Math.max(precMax, lcs / c.length);
    recMax = Math.max(recMax, lcs / t.length);
  }
  if (precMax !== 0 && recMax !== 0) return ((1 + beta ** 2) * precMax * recMax) / (recMax + beta ** 2 * precMax);
  return 0;
}

export interface RougeResult {
  corpus: number;
  perImage: number[];
}

/** Corpus (mean) and per-image ROUGE-L. */
export function rougeL(gts: string[][], res: string[], beta = ROUGE_BETA): RougeResult {
  if (gts.length !== res.length) throw new Error(`rougeL: ${gts.length} reference sets but ${res.length} candidates`);
  const perImage = res.map((c, i) => rougeLSingle(c, gts[i], beta));
  return { corpus: mean(perImage), perImage };
}
