// Data-parallel gradients on the CPU (LoopConfig.shards): a step's batch is cut into shards, each
// shard's gradient is the sum of its micro-batches' gradients, and the step's gradient is the sum of
// the shards' gradients, added in shard order. Shard s is computed by thread s % threads: thread 0 is
// this one, the others are worker threads, each with a replica of the task (TrainTask.replica) whose
// trainable weights are copied from this thread before every step. Every thread runs the same
// kernels on the same inputs with the same dropout seeds, so the step is bit-for-bit the same
// whether its shards run in threads or one after another here (CLIPCAP_TRAIN_THREADS=1); the tests
// compare the two. The tfjs wasm backend runs one thread per process (docs/tfjs-wasm-in-node.md), so
// this is how one training uses both cores.
//
// Weights and gradients cross between threads through SharedArrayBuffers (one copy each way per
// step, no serialisation); messages carry only the shard plan and the loss sums.
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import * as tf from '@tensorflow/tfjs';
import { accumulateGrads, type NamedVariable } from './optim';
import { freshStorage, storageView } from '../tfjs/storage';
import type { TaskReplica, TrainTask } from './task';

/** One micro-batch: its examples and its dropout seed. */
export interface MicroBatch {
  indices: number[];
  seed: number;
}

/**
 * The shards of a step: the batch cut into `shards` contiguous parts whose sizes differ by at most
 * one (a batch smaller than `shards` gives fewer), each part cut into micro-batches of at most
 * `microBatchSize` examples (0: the whole part); micro-batch m, counted across the shards, gets the
 * dropout seed seedOf(m). With one shard these are the loop's micro-batches as they always were.
 */
export function shardPlan(indices: readonly number[], shards: number, microBatchSize: number, seedOf: (m: number) => number): MicroBatch[][] {
  if (!(Number.isInteger(shards) && shards >= 1)) throw new Error(`shards must be a whole number >= 1, got ${shards}`);
  const n = indices.length;
  const plan: MicroBatch[][] = [];
  let m = 0;
  for (let s = 0; s < shards; s++) {
    const part = indices.slice(Math.floor((s * n) / shards), Math.floor(((s + 1) * n) / shards));
    if (part.length === 0) continue;
    const size = microBatchSize > 0 ? microBatchSize : part.length;
    const micro: MicroBatch[] = [];
    for (let i = 0; i < part.length; i += size) micro.push({ indices: part.slice(i, i + size), seed: seedOf(m++) });
    plan.push(micro);
  }
  return plan;
}

/**
 * One shard's share of a step: the gradients of sum(token losses of each micro-batch) / `tokens` (the
 * step's token count), accumulated over the micro-batches in order, and the sum of those losses.
 */
export function shardGradients(task: TrainTask, vars: readonly tf.Variable[], shard: readonly MicroBatch[], tokens: number): { lossSum: number; grads: tf.Tensor[] } {
  let lossSum = 0;
  let acc: tf.Tensor[] | null = null;
  for (const mb of shard) {
    const { value, grads } = tf.variableGrads(() => tf.div(task.lossSum('train', mb.indices, { training: true, seed: mb.seed }), tokens) as tf.Scalar, [...vars]);
    lossSum += value.dataSync()[0] * tokens;
    value.dispose();
    acc = accumulateGrads(acc, vars.map((v) => grads[v.name]));
  }
  if (!acc) throw new Error('a shard without micro-batches');
  return { lossSum, grads: acc };
}

/** The loss sum of some examples without dropout (a chunk of a validation pass), as a number. */
export function chunkLossSum(task: TrainTask, split: 'train' | 'val', indices: number[], shuffledImages?: boolean): number {
  const s = tf.tidy(() => task.lossSum(split, indices, { training: false, seed: 0, shuffledImages }));
  const v = s.dataSync()[0];
  s.dispose();
  return v;
}

// ---------------------------------------------------------------------------------------------------
// Tensors <-> one flat Float32Array (over a SharedArrayBuffer).

/** Where each tensor of a list sits in a flat array. */
export interface FlatLayout {
  shapes: number[][];
  offsets: number[];
  total: number;
}

export function flatLayout(shapes: readonly number[][]): FlatLayout {
  const offsets: number[] = [];
  let total = 0;
  for (const s of shapes) {
    offsets.push(total);
    total += s.reduce((a, b) => a * b, 1);
  }
  return { shapes: shapes.map((s) => [...s]), offsets, total };
}

/** Copy the tensors' values into `flat` (straight from backend memory where the backend allows). */
export function copyToFlat(tensors: readonly tf.Tensor[], flat: Float32Array, layout: FlatLayout): void {
  tensors.forEach((t, i) => {
    const view = storageView(t) ?? (t.dataSync() as Float32Array);
    flat.set(view, layout.offsets[i]);
  });
}

function tensorFromFlat(flat: Float32Array, layout: FlatLayout, i: number): tf.Tensor {
  const shape = layout.shapes[i];
  const size = shape.reduce((a, b) => a * b, 1);
  const src = flat.subarray(layout.offsets[i], layout.offsets[i] + size);
  const fresh = freshStorage({ shape, size });
  if (fresh) {
    fresh.view().set(src);
    return fresh.tensor;
  }
  return tf.tensor(src.slice(), shape, 'float32');
}

/** New tensors holding the values in `flat`. */
export function tensorsFromFlat(flat: Float32Array, layout: FlatLayout): tf.Tensor[] {
  return layout.shapes.map((_, i) => tensorFromFlat(flat, layout, i));
}

/**
 * acc + the values in `flat`, tensor by tensor, through tf.add: the values are copied into fresh
 * backend storage (one native copy out of the shared memory) and added by the backend's kernel. An
 * element-wise JavaScript loop over the shared memory, in place, gave the same bits (float32
 * addition is correctly rounded either way) but took 58 ms for the MLP variant's 6.8 million
 * gradients here (bench/steps.ts --phases), most of a step's serial part. Returns the sums; the
 * inputs are disposed.
 */
export function addFlatInto(acc: tf.Tensor[], flat: Float32Array, layout: FlatLayout): tf.Tensor[] {
  return acc.map((a, i) => {
    const other = tensorFromFlat(flat, layout, i);
    const sum = tf.add(a, other);
    tf.dispose([a, other]);
    return sum;
  });
}

/** Set the variables to the values in `flat`. */
export function assignFromFlat(vars: readonly tf.Variable[], flat: Float32Array, layout: FlatLayout): void {
  vars.forEach((v, i) => {
    const t = tensorFromFlat(flat, layout, i);
    v.assign(t);
    t.dispose();
  });
}

// ---------------------------------------------------------------------------------------------------
// Worker threads.

/** What a shard worker is started with (train/shard-worker.ts). */
export interface ShardWorkerInit {
  replica: TaskReplica;
  backend: string;
  names: string[];
  shapes: number[][];
  weights: SharedArrayBuffer;
  /** One gradient buffer per shard of the step (this worker fills those of its shards). */
  grads: SharedArrayBuffer[];
}

export type ToShardWorker =
  | { type: 'step'; shards: { s: number; micro: MicroBatch[] }[]; tokens: number }
  | { type: 'losses'; split: 'train' | 'val'; chunks: number[][]; shuffledImages: boolean };
export type FromShardWorker = { type: 'ready' } | { type: 'done'; losses: number[] } | { type: 'error'; message: string };

/** The backends whose tensors can be copied through shared memory and that run one thread each (worth sharding over threads). */
export const THREADED_BACKENDS: readonly string[] = ['wasm', 'cpu'];

/** Threads for a step of `shards` shards: at most one per shard and `threads`; 1 without a replica or on other backends. */
export function shardThreads(shards: number, threads: number, task: Pick<TrainTask, 'replica'>, backend: string): number {
  if (!task.replica || !THREADED_BACKENDS.includes(backend)) return 1;
  return Math.max(1, Math.min(shards, threads));
}

function workerEntry(): string {
  // The worker runs TypeScript sources through tsx's CommonJS hook (as the extraction workers do).
  const tsx = require.resolve('tsx/cjs');
  const entry = path.join(__dirname, 'shard-worker.ts');
  return `require(${JSON.stringify(tsx)}); require(${JSON.stringify(entry)});`;
}

class ShardWorker {
  private pending: { resolve: (m: FromShardWorker) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  constructor(readonly worker: Worker) {
    worker.on('message', (m: FromShardWorker) => {
      const p = this.pending;
      this.pending = null;
      if (m.type === 'error') this.fail(new Error(`a training worker thread failed: ${m.message}`), p);
      else p?.resolve(m);
    });
    worker.on('error', (e) => this.fail(new Error(`a training worker thread failed: ${e.message}`), this.pending));
    worker.on('exit', (code) => this.fail(new Error(`a training worker thread exited (code ${code})`), this.pending));
  }
  private fail(e: Error, p: typeof this.pending): void {
    this.failure ??= e;
    this.pending = null;
    p?.reject(this.failure);
  }
  request(msg: ToShardWorker | null): Promise<FromShardWorker> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      if (msg) this.worker.postMessage(msg);
    });
  }
}

/**
 * A training's data-parallel threads (see the header): the gradients of its steps and the loss sums
 * of its validation passes, computed on `threads` threads. `create` starts the worker threads (each
 * builds its replica of the task); `dispose` stops them.
 */
export class DataParallel {
  /**
   * Milliseconds spent so far, by phase, on this thread (for bench/steps.ts --phases): copying the
   * weights out to the workers, computing this thread's own shards, waiting for the workers after
   * that, and adding the workers' gradients in.
   */
  readonly phaseMs = { copyOut: 0, local: 0, wait: 0, reduce: 0 };
  private constructor(
    private readonly task: TrainTask,
    private readonly vars: tf.Variable[],
    readonly threads: number,
    private readonly layout: FlatLayout,
    private readonly weights: Float32Array | null,
    private readonly grads: Float32Array[],
    private readonly workers: ShardWorker[],
  ) {}

  /**
   * @param shards the shards of every step (LoopConfig.shards)
   * @param threads the threads wanted (CLIPCAP_TRAIN_THREADS); fewer are used where shardThreads says so
   */
  static async create(task: TrainTask, vars: readonly NamedVariable[], opts: { shards: number; threads?: number; backend?: string }): Promise<DataParallel> {
    const backend = opts.backend ?? tf.getBackend();
    const threads = shardThreads(opts.shards, opts.threads ?? os.cpus().length, task, backend);
    const layout = flatLayout(vars.map((v) => v.variable.shape));
    const variables = vars.map((v) => v.variable);
    if (threads <= 1) return new DataParallel(task, variables, 1, layout, null, [], []);
    const bytes = layout.total * 4;
    const weightsBuf = new SharedArrayBuffer(bytes);
    const gradBufs = Array.from({ length: opts.shards }, (_, s) => new SharedArrayBuffer(s % threads === 0 ? 0 : bytes));
    const init: ShardWorkerInit = { replica: task.replica!(), backend, names: vars.map((v) => v.name), shapes: layout.shapes, weights: weightsBuf, grads: gradBufs };
    const workers: ShardWorker[] = [];
    try {
      for (let w = 1; w < threads; w++) {
        const sw = new ShardWorker(new Worker(workerEntry(), { eval: true, workerData: init }));
        workers.push(sw);
      }
      // each worker says 'ready' once its replica is built
      await Promise.all(workers.map((w) => w.request(null)));
    } catch (e) {
      await Promise.all(workers.map((w) => w.worker.terminate()));
      throw e;
    }
    return new DataParallel(task, variables, threads, layout, new Float32Array(weightsBuf), gradBufs.map((b) => new Float32Array(b)), workers);
  }

  /**
   * The step's gradients (sum over shards, in shard order) and loss sum, for a plan from shardPlan and
   * the step's token count. The caller disposes the gradients.
   */
  async gradients(plan: MicroBatch[][], tokens: number): Promise<{ lossSum: number; grads: tf.Tensor[] }> {
    const mine = new Map<number, { lossSum: number; grads: tf.Tensor[] }>();
    let remote: Map<number, number>;
    try {
      remote = await this.spread(
        plan.length,
        (items) => ({ type: 'step', shards: items.map((s) => ({ s, micro: plan[s] })), tokens }),
        (s) => mine.set(s, shardGradients(this.task, this.vars, plan[s], tokens)),
      );
    } catch (e) {
      for (const r of mine.values()) tf.dispose(r.grads);
      throw e;
    }
    const t0 = performance.now();
    let lossSum = 0;
    let acc: tf.Tensor[] | null = null;
    for (let s = 0; s < plan.length; s++) {
      const own = mine.get(s);
      lossSum += own ? own.lossSum : remote.get(s)!;
      if (own) acc = accumulateGrads(acc, own.grads);
      else if (!acc) acc = tensorsFromFlat(this.grads[s], this.layout);
      else acc = addFlatInto(acc, this.grads[s], this.layout);
    }
    this.phaseMs.reduce += performance.now() - t0;
    return { lossSum, grads: acc! };
  }

  /**
   * The loss sum of each chunk of examples (chunkLossSum; validation passes), chunk c on thread
   * c % threads with the current weights; the values in chunk order.
   */
  async lossSums(split: 'train' | 'val', chunks: number[][], shuffledImages = false): Promise<number[]> {
    const out = new Array<number>(chunks.length);
    const remote = await this.spread(
      chunks.length,
      (items) => ({ type: 'losses', split, chunks: items.map((k) => chunks[k]), shuffledImages }),
      (k) => {
        out[k] = chunkLossSum(this.task, split, chunks[k], shuffledImages);
      },
    );
    for (const [k, v] of remote) out[k] = v;
    return out;
  }

  /**
   * Items 0..count-1 spread over the threads, item k on thread k % threads: each worker is sent its
   * items (`request`, after the current weights are copied to shared memory), this thread computes
   * its own (`local`) meanwhile. Returns the numbers the workers sent back, by item.
   */
  private async spread(count: number, request: (items: number[]) => ToShardWorker, local: (k: number) => void): Promise<Map<number, number>> {
    const T = this.threads;
    const asked: { items: number[]; answer: Promise<FromShardWorker> }[] = [];
    const t0 = performance.now();
    if (T > 1) {
      copyToFlat(this.vars, this.weights!, this.layout);
      for (let w = 1; w < T; w++) {
        const items = Array.from({ length: count }, (_, k) => k).filter((k) => k % T === w);
        if (items.length) asked.push({ items, answer: this.workers[w - 1].request(request(items)) });
      }
    }
    const t1 = performance.now();
    try {
      for (let k = 0; k < count; k += T) local(k);
    } catch (e) {
      await Promise.allSettled(asked.map((a) => a.answer));
      throw e;
    }
    const t2 = performance.now();
    const answers = await Promise.all(asked.map((a) => a.answer));
    const t3 = performance.now();
    this.phaseMs.copyOut += t1 - t0;
    this.phaseMs.local += t2 - t1;
    this.phaseMs.wait += t3 - t2;
    const values = new Map<number, number>();
    answers.forEach((a, i) => {
      if (a.type !== 'done') throw new Error(`a training worker thread answered ${a.type}`);
      asked[i].items.forEach((k, j) => values.set(k, a.losses[j]));
    });
    return values;
  }

  async dispose(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
