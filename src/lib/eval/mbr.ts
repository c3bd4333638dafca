// Minimum Bayes risk (consensus) choice of a caption among a model's own candidates (Kumar & Byrne
// 2004; for captioning e.g. Borgeaud & Emerson 2020): each candidate is scored by its CIDEr-D against
// all the other candidates of the pool, taken as references, and the highest wins. The pool is what
// the model itself proposes for one photo (its beams and samples drawn from it), so the choice is the
// caption with the most support under the model's own distribution: a caption sampled many times
// votes for itself through its copies. Nothing outside the model is read: every n-gram weighs the same
// (no document frequencies from a corpus), so the utility is CIDEr-D's clipped n-gram cosine with its
// length penalty. Ties go to the earlier candidate (the beams come first: the best beam wins a tie).
import { ConsensusScorer } from './metrics/consensus';
import { tokenizeCaption } from './metrics/tokenize';

/** Scores uniform n-gram weights: a corpus of two empty documents, so every n-gram has the same idf (log 2). */
const UNIFORM = new ConsensusScorer([[], []]);

/** Each candidate's consensus score (CIDEr-D, uniform n-gram weights) against the rest of the pool. */
export function consensusScores(pool: readonly string[]): Float64Array {
  // one caption at a time, so that a candidate's tokens never depend on its neighbours in the pool
  return UNIFORM.poolScores(pool.map((c) => tokenizeCaption(c)));
}

/** Index of the consensus candidate of a non-empty pool (the first of equal scores). */
export function mbrChoice(pool: readonly string[]): number {
  if (pool.length === 0) throw new Error('mbrChoice: an empty pool of candidates');
  const s = consensusScores(pool);
  let best = 0;
  for (let i = 1; i < s.length; i++) if (s[i] > s[best]) best = i;
  return best;
}
