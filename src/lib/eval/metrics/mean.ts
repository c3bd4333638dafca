// The corpus score of a metric: the mean of its per-image scores, as numpy computes it.
export function mean(xs: ArrayLike<number>): number {
  if (xs.length === 0) return NaN; // numpy's mean of an empty array
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s / xs.length;
}
