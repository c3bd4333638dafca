// Bootstrap confidence intervals over evaluation images (Efron's percentile method), for corpus metrics
// whose value on any multiset of images can be recomputed: BLEU from the pooled per-image counts,
// ROUGE-L and CIDEr-D as means of per-image scores.
//
// Each resample draws n image indices with replacement (seeded, so a rerun gives the same interval) and
// recomputes the statistic. Paired comparisons (system A minus system B on the same resampled images)
// use one statistic that reads both systems at the same indices.
//
// CIDEr-D's document frequencies stay those of the full evaluation set (they are not recomputed per
// resample), so its interval reflects which images were drawn, not a re-estimated idf.
import { mulberry32 } from '../../util/rng';

export interface Interval {
  /** The statistic on the original images. */
  estimate: number;
  lo: number;
  hi: number;
  /** Coverage, e.g. 0.95. */
  level: number;
  /** Number of resamples. */
  samples: number;
}

export interface BootstrapOptions {
  /** Resamples (default 1000). */
  samples?: number;
  /** Coverage (default 0.95). */
  level?: number;
  seed?: number;
}

/** Quantile of sorted values with linear interpolation (numpy's default). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) throw new Error('quantileSorted: no values');
  const pos = (sorted.length - 1) * Math.min(1, Math.max(0, q));
  const i = Math.floor(pos);
  const f = pos - i;
  return i + 1 < sorted.length ? sorted[i] + f * (sorted[i + 1] - sorted[i]) : sorted[i];
}

/** Percentile bootstrap interval of `stat` over n items; `stat` receives the resampled indices. */
export function bootstrapInterval(n: number, stat: (idx: Int32Array) => number, opts: BootstrapOptions = {}): Interval {
  const samples = opts.samples ?? 1000;
  const level = opts.level ?? 0.95;
  if (!Number.isInteger(n) || n < 1) throw new Error(`bootstrapInterval: need at least one item, got ${n}`);
  if (!(level > 0 && level < 1)) throw new Error(`bootstrapInterval: level must lie in (0, 1), got ${level}`);
  if (!Number.isInteger(samples) || samples < 1) throw new Error(`bootstrapInterval: samples must be a positive integer, got ${samples}`);
  const identity = Int32Array.from({ length: n }, (_, i) => i);
  const estimate = stat(identity);
  const rand = mulberry32(opts.seed ?? 0);
  const values = new Float64Array(samples);
  const idx = new Int32Array(n);
  for (let s = 0; s < samples; s++) {
    for (let j = 0; j < n; j++) idx[j] = Math.floor(rand() * n);
    values[s] = stat(idx);
  }
  values.sort();
  const tail = (1 - level) / 2;
  return { estimate, lo: quantileSorted(values, tail), hi: quantileSorted(values, 1 - tail), level, samples };
}
