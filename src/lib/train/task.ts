// What the training loop trains (train/loop.ts): a TrainTask addresses examples by index and turns
// them into a loss; its replica is how a worker thread builds the same task for data-parallel
// training (train/parallel.ts).
import type * as tf from '@tensorflow/tfjs';
import type { NamedVariable } from './optim';

/**
 * How to build a copy of a task in a worker thread: `module` (an absolute path) exports the function
 * `exportName`, which takes `data` (anything structured clone carries: arrays, typed arrays, plain
 * objects) and returns the task, or a promise of it. The copy must have the same trainable variables
 * (names, shapes, order) and compute the same losses; its trainable weights are copied from the
 * training thread before every step, so only the frozen ones need to be in `data`.
 */
export interface TaskReplica {
  module: string;
  exportName: string;
  data: unknown;
}

/** What the loop trains. Examples are addressed by index; the task turns indices into tensors. */
export interface TrainTask {
  readonly numTrain: number;
  readonly numVal: number;
  /** Trainable variables with stable names (optimizer state is keyed by them). */
  trainable(): NamedVariable[];
  /** Sequence length of training example i (for bucketByLength). */
  lengthOf?(i: number): number;
  /** Number of target tokens of these examples (the loss is averaged over them). */
  tokenCount(split: 'train' | 'val', indices: number[]): number;
  /**
   * Sum of the token cross-entropies of these examples. `shuffledImages` (tasks with
   * `imageConditioned`): each example is conditioned on another photo's embedding, same caption.
   */
  lossSum(split: 'train' | 'val', indices: number[], opts: { training: boolean; seed: number; shuffledImages?: boolean }): tf.Scalar;
  /** The model is conditioned on an image (ClipCap): the loop also measures the shuffled-image val loss. */
  readonly imageConditioned?: boolean;
  /** Save / load the weights needed to reproduce the model into / from a directory. */
  saveWeights(dir: string): Promise<void>;
  loadWeights(dir: string): Promise<void>;
  /** How to build this task in a worker thread (data-parallel shards); absent: shards run in this thread. */
  replica?(): TaskReplica;
}

/** The weight I/O of a task replica: a replica only computes; the training thread saves and loads. */
export const REPLICA_WEIGHT_IO: Pick<TrainTask, 'saveWeights' | 'loadWeights'> = {
  saveWeights: async () => {
    throw new Error('a task replica (a data-parallel worker thread) does not save weights');
  },
  loadWeights: async () => {
    throw new Error('a task replica (a data-parallel worker thread) does not load weights');
  },
};
