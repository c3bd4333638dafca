// How the two variants converge (notebook 05 and REPORT.md): their loss logs, convergence statistics,
// and the seed study's finding checked on them.
import { variantLabel, type ProfileConfig } from '../config';
import { runDirectory } from '../paths';
import { readEpochLog, readStepLog } from '../run/logs';
import { smooth, type EpochLoss, type StepLoss } from './plots';

export interface VariantLosses {
  name: string;
  label: string;
  runDir: string;
  steps: StepLoss[];
  epochs: EpochLoss[];
}

/** The loss logs of both variants of a profile (variants without a run are left out). */
export function loadVariantLosses(profile: ProfileConfig): VariantLosses[] {
  const out: VariantLosses[] = [];
  for (const t of [profile.mlp, profile.transformer]) {
    const runDir = runDirectory(profile, t.name);
    if (readStepLog(runDir).length === 0) continue;
    const label = variantLabel(t);
    out.push({
      name: t.name,
      label,
      runDir,
      steps: readStepLog(runDir).map((s) => ({ variant: label, step: s.step, epoch: s.epoch, loss: s.loss })),
      epochs: readEpochLog(runDir).flatMap((e) => [
        { variant: label, epoch: e.epoch + 1, split: 'train' as const, loss: e.trainLoss },
        ...(e.valLoss === null ? [] : [{ variant: label, epoch: e.epoch + 1, split: 'val' as const, loss: e.valLoss }]),
        ...(e.valLossShuffled == null ? [] : [{ variant: label, epoch: e.epoch + 1, split: 'val shuffled' as const, loss: e.valLossShuffled }]),
      ]),
    });
  }
  return out;
}

export interface ConvergenceStats {
  variant: string;
  steps: number;
  /** Smoothed train loss at 10%, 25%, 50% of the steps and at the end. */
  at10: number;
  at25: number;
  at50: number;
  final: number;
  /** First step at which the smoothed train loss is within 10% of the run's final smoothed loss. */
  stepsToWithin10pct: number;
  firstEpochVal: number | null;
  finalVal: number | null;
  /** The last epoch's val loss with shuffled images, and the gap to the true images (nats per token). */
  finalValShuffled: number | null;
  imageGap: number | null;
}

/** How fast each variant converges and where it ends (from the step and epoch logs). */
export function convergenceStats(v: VariantLosses, smoothing = 0.9): ConvergenceStats {
  const losses = smooth(
    v.steps.map((s) => s.loss),
    smoothing,
  );
  const n = losses.length;
  const at = (f: number) => (n ? losses[Math.min(n - 1, Math.max(0, Math.round(f * n) - 1))] : NaN);
  const final = n ? losses[n - 1] : NaN;
  const within = losses.findIndex((l) => l <= final * 1.1);
  const vals = v.epochs.filter((e) => e.split === 'val');
  const shuffled = v.epochs.filter((e) => e.split === 'val shuffled');
  const lastShuffled = shuffled.length ? shuffled[shuffled.length - 1] : null;
  const lastVal = vals.length ? vals[vals.length - 1] : null;
  return {
    variant: v.label,
    steps: n,
    at10: at(0.1),
    at25: at(0.25),
    at50: at(0.5),
    final,
    stepsToWithin10pct: within < 0 ? n : within + 1,
    firstEpochVal: vals.length ? vals[0].loss : null,
    finalVal: lastVal ? lastVal.loss : null,
    finalValShuffled: lastShuffled ? lastShuffled.loss : null,
    imageGap: lastShuffled && lastVal && lastShuffled.epoch === lastVal.epoch ? lastShuffled.loss - lastVal.loss : null,
  };
}

export interface SeedFinding {
  fasterHolds: boolean;
  lowerHolds: boolean;
  /** Both claims with the numbers that decide them, in a sentence each. */
  text: string;
}

/**
 * The seed study's finding, checked on our runs: the transformer + frozen variant converges faster
 * (lower smoothed loss at 25% of training), the MLP + fine-tuned variant ends lower (final val loss,
 * else final train loss).
 */
export function seedFinding(mlp: ConvergenceStats, tr: ConvergenceStats): SeedFinding {
  const fasterHolds = tr.at25 < mlp.at25;
  const endM = mlp.finalVal ?? mlp.final;
  const endT = tr.finalVal ?? tr.final;
  const lowerHolds = endM < endT;
  const f = (x: number) => x.toFixed(3);
  const text =
    `Converges faster: ${fasterHolds ? 'holds' : 'does not hold'} (smoothed train loss at 25% of training: transformer ${f(tr.at25)} vs MLP ${f(mlp.at25)}). ` +
    `Ends lower: ${lowerHolds ? 'holds' : 'does not hold'} (final ${mlp.finalVal !== null && tr.finalVal !== null ? 'val' : 'train'} loss: MLP ${f(endM)} vs transformer ${f(endT)}).`;
  return { fasterHolds, lowerHolds, text };
}
