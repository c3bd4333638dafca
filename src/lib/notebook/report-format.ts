// How REPORT.md writes numbers: scores, intervals and durations.
import type { Interval } from '../eval/metrics/index';

/** A number to `digits` decimals; '' for a missing or non-finite one, never "-0.000". */
export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '';
  const t = x.toFixed(digits);
  return /^-0\.?0*$/.test(t) ? t.slice(1) : t; // no "-0.000" for a value that rounds to zero
}

/** A confidence interval as "[lo, hi]"; '' when there is none. */
export function interval(iv: Interval | undefined): string {
  return iv ? `[${fmt(iv.lo)}, ${fmt(iv.hi)}]` : '';
}

/** A duration: seconds below 90 s, minutes from there. */
export function seconds(s: number): string {
  if (!Number.isFinite(s)) return '';
  return s >= 90 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`;
}
