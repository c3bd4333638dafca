// The training loop shared by ClipCap (both variants) and the offline language-model pretraining.
//
// - AdamW with linear warm-up then linear decay (transformers' get_linear_schedule_with_warmup, as
//   the original ClipCap), optional global-norm gradient clipping, micro-batches with gradient
//   accumulation (the loss is the mean over all caption tokens of the batch, as PyTorch's
//   cross-entropy with ignored padding), data-parallel shards on worker threads (train/parallel.ts).
// - Seeded data order: epoch e visits the training examples in permutation(seed, e); dropout seeds
//   derive from the step. So the order and the schedule are functions of (seed, step) alone, and a
//   resumed run continues exactly where a killed one stopped.
// - Logs under the run directory: steps.jsonl (one line per step) and epochs.jsonl (train and
//   validation loss per epoch); a progress line with steps/s, tokens/s, ETA and loss.
// - Checkpoints (task weights, optimizer moments, loop state) are written as a directory swapped in
//   atomically, every `checkpointEverySteps` steps and at each epoch end. A rerun resumes from the last
//   checkpoint; a finished run is not trained again.
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { buildDirAtomic, cleanStaleTemps, DiskFullError, isDiskFull, readJson, writeFileAtomic, writeJsonAtomic } from '../util/files';
import { AdamW, clipScale, linearWarmupDecay, type NamedVariable } from './optim';
import { Progress } from '../util/progress';
import { acquireLock, releaseLock } from '../util/lock';
import { mulberry32, shuffleInPlace } from '../util/rng';
import type { LoopConfig } from '../config';
import { settings } from '../settings';
import { chunkLossSum, shardPlan, DataParallel } from './parallel';
import type { TrainTask } from './task';
import { checkpointFiles, runFiles } from '../run/files';
import { readEpochLog, readStepLog, type EpochLog, type StepLog, type TrainSummary } from '../run/logs';

/**
 * A run whose loss or gradient norm became NaN or infinite, or whose loss rose far above its start
 * (LoopConfig.divergenceFactor): training stops at once, the last checkpoint (written before that
 * step) stays as it was, and the run is not marked complete.
 */
export class DivergenceError extends Error {
  constructor(readonly runDir: string, readonly step: number, what: string) {
    super(
      `training diverged at step ${step}: ${what}. The run (${runDir}) is not complete; ` +
        (fs.existsSync(runFiles(runDir).checkpoint.state) ? `its last checkpoint, from before step ${step}, is kept. ` : 'it has no checkpoint yet (nothing was saved). ') +
        'Lower the learning rate (lr), add gradient clipping (gradClip), or check the data; then rerun (new settings train a new run).',
    );
    this.name = 'DivergenceError';
  }
}

/** Steps in the moving mean that divergence compares with the first step's loss. */
export const DIVERGENCE_WINDOW = 10;

/**
 * Has the loss risen far above its start? With `earlier` the losses of the steps before this one and
 * `loss` this step's: the mean of the last DIVERGENCE_WINDOW steps (this one included, step 0 excluded)
 * above `factor` times the first step's loss. Returns what to say, or null.
 */
export function risingLoss(earlier: readonly number[], loss: number, factor: number): string | null {
  if (!(factor > 0) || earlier.length === 0 || !(earlier[0] > 0)) return null;
  const recent = [...earlier.slice(Math.max(1, earlier.length + 1 - DIVERGENCE_WINDOW)), loss];
  const mean = recent.reduce((a, b) => a + b, 0) / recent.length;
  if (!(mean > factor * earlier[0])) return null;
  return (
    `the training loss is ${mean.toFixed(3)} on average over the last ${recent.length} step(s), more than ${factor} times its starting value ${earlier[0].toFixed(3)} ` +
    '(divergenceFactor in the training config; 0 turns this check off)'
  );
}

/** The learning-rate multiplier of each variable (LoopConfig.lrScales). */
export function lrScalesFor(vars: readonly NamedVariable[], scales: Record<string, number> | undefined): number[] | undefined {
  if (!scales || Object.keys(scales).length === 0) return undefined;
  return vars.map((v) => {
    const hit = Object.keys(scales).find((p) => v.name.startsWith(p));
    return hit === undefined ? 1 : scales[hit];
  });
}

interface LoopState {
  step: number;
  epochTrainSum: number;
  epochTrainTokens: number;
  trainSeconds: number;
  trainTokens: number;
}


/** The order in which epoch `epoch` visits n examples (Fisher-Yates with a seeded PRNG). */
export function epochPermutation(n: number, seed: number, epoch: number): number[] {
  const rand = mulberry32((seed * 1_000_003 + epoch * 7919 + 17) >>> 0);
  return shuffleInPlace(Array.from({ length: n }, (_, i) => i), rand);
}

export function stepsPerEpoch(n: number, batch: number, dropLast: boolean): number {
  if (n <= 0) return 0;
  return Math.max(1, dropLast ? Math.floor(n / batch) : Math.ceil(n / batch));
}

const POOL_BATCHES = 32;

/**
 * The batches of one epoch, in order: the seeded permutation cut into batches, or, with
 * bucketByLength, pools of that permutation sorted by length, cut into batches, and the batches
 * shuffled (seeded). A deterministic function of (n, config, epoch, lengths).
 */
export function epochBatches(
  n: number,
  cfg: Pick<LoopConfig, 'batchSize' | 'seed' | 'dropLast' | 'bucketByLength'>,
  epoch: number,
  lengthOf?: (i: number) => number,
): number[][] {
  const spe = stepsPerEpoch(n, cfg.batchSize, cfg.dropLast);
  const order = epochPermutation(n, cfg.seed, epoch);
  const B = cfg.batchSize;
  let batches: number[][] = [];
  if (cfg.bucketByLength && lengthOf) {
    const pool = B * POOL_BATCHES;
    for (let p = 0; p < n; p += pool) {
      const part = order.slice(p, p + pool).sort((a, b) => lengthOf(a) - lengthOf(b) || a - b);
      for (let i = 0; i < part.length; i += B) batches.push(part.slice(i, i + B));
    }
    // a short batch can only come from the last pool; keep it last so that dropLast drops it
    const short = batches.length && batches[batches.length - 1].length < B ? batches.pop()! : null;
    shuffleInPlace(batches, mulberry32((cfg.seed * 7_368_787 + epoch * 31 + 5) >>> 0));
    if (short) batches.push(short);
  } else {
    for (let i = 0; i < n; i += B) batches.push(order.slice(i, i + B));
  }
  if (batches.length > spe) batches = batches.slice(0, spe);
  return batches;
}

/** Example indices of a step: a deterministic function of (config, step). */
export function batchIndices(
  n: number,
  cfg: Pick<LoopConfig, 'batchSize' | 'seed' | 'dropLast' | 'bucketByLength'>,
  step: number,
  lengthOf?: (i: number) => number,
): { epoch: number; indices: number[] } {
  const spe = stepsPerEpoch(n, cfg.batchSize, cfg.dropLast);
  const epoch = Math.floor(step / spe);
  return { epoch, indices: epochBatches(n, cfg, epoch, lengthOf)[step % spe] };
}

function chunks<T>(xs: T[], size: number): T[][] {
  if (size <= 0 || size >= xs.length) return [xs];
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size));
  return out;
}


/**
 * Mean loss over the validation set (token-weighted), no dropout; `shuffledImages`: see
 * TrainTask.lossSum. With `parallel`, the chunks are spread over its threads; the chunk sums are
 * added in the same order either way, so the mean is the same.
 */
export async function evaluateLoss(
  task: TrainTask,
  split: 'train' | 'val',
  batchSize: number,
  indices?: number[],
  opts: { shuffledImages?: boolean } = {},
  parallel?: DataParallel | null,
): Promise<number | null> {
  const n = split === 'val' ? task.numVal : task.numTrain;
  const all = indices ?? Array.from({ length: n }, (_, i) => i);
  if (all.length === 0) return null;
  const parts = chunks(all, batchSize);
  const sums = parallel ? await parallel.lossSums(split, parts, !!opts.shuffledImages) : parts.map((c) => chunkLossSum(task, split, c, opts.shuffledImages));
  let sum = 0;
  let count = 0;
  parts.forEach((c, i) => {
    sum += sums[i];
    count += task.tokenCount(split, c);
  });
  return count > 0 ? sum / count : null;
}

export interface RunOptions {
  /** Label of the progress line. */
  label?: string;
  /** Called after each step (e.g. for live plots). */
  onStep?: (log: StepLog) => void;
  /** Called after each epoch. */
  onEpoch?: (log: EpochLog) => void;
  /** Stop (after writing a checkpoint) once this returns true; the run can be resumed later. */
  shouldStop?: (step: number) => boolean;
  /** Progress output (default: Progress's). */
  write?: (line: string, final: boolean) => void;
}

/**
 * Train `task` under `runDir` (resuming from its checkpoint when there is one).
 * Returns when the schedule is done, `maxSteps` is reached or `shouldStop` says so.
 */
export async function runTraining(task: TrainTask, cfg: LoopConfig, runDir: string, opts: RunOptions = {}): Promise<TrainSummary> {
  if (task.numTrain <= 0) throw new Error('no training examples');
  fs.mkdirSync(runDir, { recursive: true });
  // One training per run directory: a second one is refused (a lock of a killed trainer is taken over).
  const lock = runFiles(runDir).lock;
  acquireLock(lock, {
    busy: (pid) => `the run ${runDir} is being trained by process ${pid}; wait for it or stop it (one training per run)`,
    self: `the run ${runDir} is already being trained in this process`,
  });
  try {
    return await trainLocked(task, cfg, runDir, opts);
  } finally {
    releaseLock(lock);
  }
}

async function trainLocked(task: TrainTask, cfg: LoopConfig, runDir: string, opts: RunOptions): Promise<TrainSummary> {
  // Temp files and folders of a killed writer (the lock says none is alive).
  cleanStaleTemps(runDir);
  const spe = stepsPerEpoch(task.numTrain, cfg.batchSize, cfg.dropLast);
  const totalSteps = spe * cfg.epochs;
  const lastStep = cfg.maxSteps > 0 ? Math.min(cfg.maxSteps, totalSteps) : totalSteps;
  const vars = task.trainable();
  const scales = lrScalesFor(vars, cfg.lrScales);
  const optimizer = new AdamW({ lr: cfg.lr, weightDecay: cfg.weightDecay, ...(cfg.eps !== undefined ? { eps: cfg.eps } : {}) });

  // Resume.
  let state: LoopState = { step: 0, epochTrainSum: 0, epochTrainTokens: 0, trainSeconds: 0, trainTokens: 0 };
  const files = runFiles(runDir);
  const ckptDir = files.checkpoint.dir;
  if (fs.existsSync(files.checkpoint.state)) {
    try {
      state = readJson<LoopState>(files.checkpoint.state);
      await task.loadWeights(files.checkpoint.weights);
      optimizer.loadState(files.checkpoint.optimizer, vars);
    } catch (e) {
      throw new Error(
        `the checkpoint of this run cannot be loaded (${(e as Error).message.split('\n')[0]}): delete ${ckptDir} to restart the run from scratch ` +
          '(the training done so far is lost), or restore that folder from a copy, then rerun',
      );
    }
  }
  const resumedFrom = state.step;
  // Logs beyond the checkpoint belong to steps that will be redone.
  const steps = readStepLog(runDir).filter((s) => s.step < state.step);
  // Divergence: the losses so far (a resumed run reads them back from its log, so it stops where an
  // uninterrupted one would).
  const divergence = cfg.divergenceFactor ?? 0;
  const losses = steps.map((s) => s.loss);
  const epochs = readEpochLog(runDir).filter((e) => (e.epoch + 1) * spe <= state.step);
  writeFileAtomic(files.steps, steps.map((s) => JSON.stringify(s) + '\n').join(''));
  writeFileAtomic(files.epochs, epochs.map((e) => JSON.stringify(e) + '\n').join(''));

  const summary = (completed: boolean): TrainSummary => {
    const ep = readEpochLog(runDir);
    const last = ep[ep.length - 1];
    return {
      steps: state.step,
      epochs: ep.length,
      finalTrainLoss: last ? last.trainLoss : null,
      finalValLoss: last ? last.valLoss : null,
      ...(task.imageConditioned ? { finalValLossShuffled: last?.valLossShuffled ?? null } : {}),
      trainSeconds: state.trainSeconds,
      tokensPerSecond: state.trainSeconds > 0 ? state.trainTokens / state.trainSeconds : 0,
      resumedFromStep: resumedFrom,
      completed,
    };
  };
  if (state.step >= lastStep) return summary(state.step >= totalSteps);

  const stepsFile = fs.openSync(files.steps, 'a');
  const epochsFile = fs.openSync(files.epochs, 'a');
  const progress = new Progress({ total: lastStep, start: state.step, label: opts.label ?? 'train', unit: 'step', write: opts.write });

  const checkpoint = async (): Promise<void> => {
    await buildDirAtomic(ckptDir, async (tmp) => {
      const c = checkpointFiles(tmp);
      await task.saveWeights(c.weights);
      optimizer.saveState(c.optimizer, vars);
      writeJsonAtomic(c.state, state);
    });
  };

  const lengthOf = task.lengthOf ? (i: number) => task.lengthOf!(i) : undefined;
  if (cfg.bucketByLength && !lengthOf) throw new Error('bucketByLength needs a task with lengthOf');
  let epochCache: { epoch: number; batches: number[][] } | null = null;
  const shards = cfg.shards ?? 1;
  let parallel: DataParallel | null = null;
  try {
    parallel = await DataParallel.create(task, vars, { shards, threads: settings().trainThreads });
    if (shards > 1) console.log(`[clipcap] each batch in ${shards} data-parallel shards, ${parallel.threads > 1 ? `on ${parallel.threads} threads` : 'in turn in this thread'} (CLIPCAP_TRAIN_THREADS; same numbers either way)`);
    while (state.step < lastStep) {
      const t0 = Date.now();
      const epoch = Math.floor(state.step / spe);
      if (!epochCache || epochCache.epoch !== epoch) epochCache = { epoch, batches: epochBatches(task.numTrain, cfg, epoch, lengthOf) };
      const indices = epochCache.batches[state.step % spe];
      const lr = linearWarmupDecay(state.step, { lr: cfg.lr, warmupSteps: cfg.warmupSteps, totalSteps });
      const tokens = task.tokenCount('train', indices);
      // Gradients of (sum of token losses) / tokens: micro-batches accumulated within each shard, the
      // shards summed in order (train/parallel.ts; in worker threads when there are cores for them).
      const plan = shardPlan(indices, shards, cfg.microBatchSize, (mi) => (cfg.seed * 1_000_003 + state.step * 131 + mi) >>> 0);
      const { lossSum, grads: summed } = await parallel.gradients(plan, tokens);
      let grads = summed;
      let gradNorm: number | undefined;
      const stepLoss = lossSum / tokens;
      if (!Number.isFinite(stepLoss)) {
        grads.forEach((g) => g.dispose());
        throw new DivergenceError(runDir, state.step, `the training loss is ${stepLoss}`);
      }
      const rising = divergence > 0 ? risingLoss(losses, stepLoss, divergence) : null;
      if (rising) {
        grads.forEach((g) => g.dispose());
        throw new DivergenceError(runDir, state.step, rising);
      }
      losses.push(stepLoss);
      let gradScale = 1; // global-norm clipping, applied inside the AdamW update
      if (cfg.gradClip > 0) {
        const clip = clipScale(grads, cfg.gradClip);
        gradNorm = clip.norm;
        if (!Number.isFinite(gradNorm)) {
          grads.forEach((g) => g.dispose());
          throw new DivergenceError(runDir, state.step, `the gradient norm is ${gradNorm}`);
        }
        gradScale = clip.scale;
      }
      optimizer.step(
        vars.map((v) => v.variable),
        grads,
        lr,
        scales,
        gradScale,
      );
      grads.forEach((g) => g.dispose());

      const loss = lossSum / tokens;
      const seconds = (Date.now() - t0) / 1000;
      state.step += 1;
      state.epochTrainSum += lossSum;
      state.epochTrainTokens += tokens;
      state.trainSeconds += seconds;
      state.trainTokens += tokens;
      const log: StepLog = { step: state.step - 1, epoch, loss, lr, tokens, seconds, ...(gradNorm !== undefined ? { gradNorm } : {}) };
      fs.writeSync(stepsFile, JSON.stringify(log) + '\n');
      opts.onStep?.(log);
      progress.tick(1, { epoch: epoch + 1, loss, 'tok/s': state.trainTokens / state.trainSeconds, lr });

      const epochEnd = state.step % spe === 0;
      if (epochEnd) {
        const evalBatch = Math.max(cfg.microBatchSize || cfg.batchSize, 1);
        const valLoss = await evaluateLoss(task, 'val', evalBatch, undefined, {}, parallel);
        if (valLoss !== null && !Number.isFinite(valLoss)) throw new DivergenceError(runDir, state.step, `the validation loss is ${valLoss}`);
        const shuffled = task.imageConditioned ? { valLossShuffled: await evaluateLoss(task, 'val', evalBatch, undefined, { shuffledImages: true }, parallel) } : {};
        const e: EpochLog = { epoch, trainLoss: state.epochTrainSum / state.epochTrainTokens, valLoss, ...shuffled, steps: state.step, seconds: state.trainSeconds };
        fs.writeSync(epochsFile, JSON.stringify(e) + '\n');
        fs.fsyncSync(epochsFile);
        opts.onEpoch?.(e);
        state.epochTrainSum = 0;
        state.epochTrainTokens = 0;
      }
      const stop = opts.shouldStop?.(state.step) ?? false;
      if (epochEnd || state.step % cfg.checkpointEverySteps === 0 || state.step === lastStep || stop) {
        fs.fsyncSync(stepsFile);
        await checkpoint();
      }
      if (stop) break;
    }
  } catch (e) {
    // a full disk while appending the logs: one line naming the run (a checkpoint names its own folder)
    if (isDiskFull(e) && !(e instanceof DiskFullError)) throw new DiskFullError(runDir);
    throw e;
  } finally {
    await parallel?.dispose();
    fs.closeSync(stepsFile);
    fs.closeSync(epochsFile);
  }
  progress.finish();
  return summary(state.step >= totalSteps);
}
