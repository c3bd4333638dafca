// Data-parallel training (train/parallel.ts): the shard plan, and the same weights, bit for bit,
// whether a step's shards run in worker threads or one after another in this thread.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ClipCapModel } from '../src/lib/model/clipcap';
import { clipCapTask, captionTokens, type CaptionExample } from '../src/lib/train/examples';
import { GPT2, type GPT2Config } from '../src/lib/model/gpt2';
import { createMapper, defaultMapperConfig } from '../src/lib/model/mapper';
import { runTraining } from '../src/lib/train/loop';
import { shardPlan, DataParallel } from '../src/lib/train/parallel';
import type { LoopConfig } from '../src/lib/config';
import { readEpochLog, readStepLog } from '../src/lib/run/logs';
import { saveRunWeights, loadRunWeights } from '../src/lib/run/run';
import { lmTask } from '../src/lib/train/pretrain';
import { loadSafetensorsInto, saveSafetensorsFile } from '../src/lib/io/weights';
import { mulberry32 } from '../src/lib/util/rng';
import { ensureBackend } from '../src/lib/tfjs/backend';

const LM: GPT2Config = { vocabSize: 20, nPositions: 16, nEmbd: 8, nLayer: 2, nHead: 2, layerNormEpsilon: 1e-5, activation: 'gelu_new', embdPdrop: 0.1, residPdrop: 0.1, attnPdrop: 0.1 };
const EOS = 19;

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-parallel-'));
}

function loop(partial: Partial<LoopConfig> = {}): LoopConfig {
  return { epochs: 2, batchSize: 6, microBatchSize: 0, lr: 0.01, warmupSteps: 1, weightDecay: 0.01, gradClip: 1, seed: 5, checkpointEverySteps: 100, maxSteps: 0, dropLast: true, bucketByLength: true, shards: 2, ...partial };
}

/** Train with CLIPCAP_TRAIN_THREADS = threads; the final weights (name -> values) and the step losses. */
async function trainWith<T>(threads: number, make: () => { task: ReturnType<typeof lmTask>; weights: () => Map<string, tf.Variable>; dispose: () => void }, cfg: LoopConfig): Promise<{ weights: Map<string, Float32Array>; losses: number[]; val: (number | null | undefined)[] }> {
  const before = process.env.CLIPCAP_TRAIN_THREADS;
  process.env.CLIPCAP_TRAIN_THREADS = String(threads);
  const dir = tmp();
  const m = make();
  try {
    await runTraining(m.task, cfg, dir, { write: () => {} });
    const weights = new Map([...m.weights()].map(([n, v]) => [n, v.dataSync() as Float32Array]));
    return { weights, losses: readStepLog(dir).map((s) => s.loss), val: readEpochLog(dir).flatMap((e) => [e.valLoss, e.valLossShuffled]) };
  } finally {
    m.dispose();
    if (before === undefined) delete process.env.CLIPCAP_TRAIN_THREADS;
    else process.env.CLIPCAP_TRAIN_THREADS = before;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function assertSameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [n, w] of a) assert.ok(Buffer.from(w.buffer, w.byteOffset, w.byteLength).equals(Buffer.from(b.get(n)!.buffer, b.get(n)!.byteOffset, b.get(n)!.byteLength)), `weight ${n} differs`);
}

test('shardPlan: contiguous shards of near-equal size, micro-batches within each, seeds counted across shards', () => {
  const idx = [9, 8, 7, 6, 5, 4, 3];
  const seed = (m: number) => 100 + m;
  assert.deepEqual(shardPlan(idx, 1, 0, seed), [[{ indices: idx, seed: 100 }]]);
  assert.deepEqual(shardPlan(idx, 1, 3, seed), [[{ indices: [9, 8, 7], seed: 100 }, { indices: [6, 5, 4], seed: 101 }, { indices: [3], seed: 102 }]]);
  assert.deepEqual(shardPlan(idx, 2, 0, seed), [[{ indices: [9, 8, 7], seed: 100 }], [{ indices: [6, 5, 4, 3], seed: 101 }]]);
  assert.deepEqual(shardPlan(idx, 2, 2, seed), [
    [{ indices: [9, 8], seed: 100 }, { indices: [7], seed: 101 }],
    [{ indices: [6, 5], seed: 102 }, { indices: [4, 3], seed: 103 }],
  ]);
  // more shards than examples: no empty shard
  assert.deepEqual(shardPlan([1, 2], 3, 0, seed).map((s) => s.map((m) => m.indices)), [[[1]], [[2]]]);
  assert.throws(() => shardPlan(idx, 0, 0, seed), /shards must be/);
});

test('LM pretraining task: two threads give the same weights and losses, bit for bit, as one', async () => {
  const rand = mulberry32(3);
  const seqs = Array.from({ length: 30 }, () => Array.from({ length: 2 + Math.floor(rand() * 6) }, () => Math.floor(rand() * 18)));
  const make = () => {
    const model = new GPT2(LM, undefined, { seed: 4 });
    const io = { saveWeights: async (d: string) => saveSafetensorsFile(path.join(d, 'w.safetensors'), model.namedWeights()), loadWeights: async (d: string) => loadSafetensorsInto(path.join(d, 'w.safetensors'), model.namedWeights()) };
    return { task: lmTask(model, seqs, seqs.slice(0, 10), EOS, io), weights: () => model.namedWeights(), dispose: () => model.dispose() };
  };
  const one = await trainWith(1, make, loop());
  const two = await trainWith(2, make, loop());
  assert.equal(one.losses.length, 10);
  assert.deepEqual(two.losses, one.losses);
  assertSameWeights(two.weights, one.weights);
  // the validation passes, spread over the threads too
  assert.equal(one.val.length, 4);
  assert.ok(one.val.every((v, i) => i % 2 === 1 || (typeof v === 'number' && Number.isFinite(v))));
  assert.deepEqual(two.val, one.val);
  // and the shards matter: one shard is a different (if close) sum
  const whole = await trainWith(1, make, loop({ shards: 1 }));
  assert.notDeepEqual(whole.losses.slice(1), one.losses.slice(1));
});

function toyExamples(n: number): CaptionExample[] {
  return Array.from({ length: n }, (_, i) => {
    const k = i % 4;
    const emb = new Float32Array(6);
    emb[k] = 1;
    emb[4 + (k % 2)] = 0.5;
    return { imageId: `img${k}`, embedding: emb, tokens: captionTokens([1 + k, 5 + k, 9 - (k % 2)].slice(0, 1 + (i % 3)), EOS, 8) };
  });
}

for (const [kind, finetune] of [['mlp', true], ['transformer', false]] as const) {
  test(`ClipCap ${kind} + ${finetune ? 'fine-tuned' : 'frozen'} GPT-2: two threads give the same weights, bit for bit, as one (micro-batches and dropout included)`, async () => {
    const train = toyExamples(24);
    const make = () => {
      const lm = new GPT2(LM, undefined, { seed: 6 });
      const mapper = createMapper(defaultMapperConfig({ kind, inputDim: 6, embedDim: 8, prefixLength: 2, clipLength: 2, numLayers: 1, numHeads: 2 }), 7);
      const model = new ClipCapModel(lm, mapper, finetune);
      const task = clipCapTask(model, train, train.slice(0, 4), { saveWeights: (d) => saveRunWeights(model, d), loadWeights: (d) => loadRunWeights(model, d) });
      const weights = () => new Map(model.trainable().map((v) => [v.name, v.variable]));
      return { task, weights, dispose: () => (mapper.dispose(), lm.dispose()) };
    };
    const cfg = loop({ microBatchSize: 2, batchSize: 8, epochs: 1 });
    const one = await trainWith(1, make, cfg);
    const two = await trainWith(2, make, cfg);
    assert.equal(one.losses.length, 3);
    assert.deepEqual(two.losses, one.losses);
    assertSameWeights(two.weights, one.weights);
    // the validation passes (true and shuffled images), spread over the threads too
    assert.equal(one.val.length, 2);
    assert.ok(one.val.every((v) => typeof v === 'number' && Number.isFinite(v)));
    assert.deepEqual(two.val, one.val);
  });
}

test('a task without a replica computes its shards in this thread', async () => {
  const model = new GPT2(LM, undefined, { seed: 4 });
  try {
    const task = { ...lmTask(model, [[1, 2]], [], EOS, { saveWeights: async () => {}, loadWeights: async () => {} }), replica: undefined };
    const vars = [...model.namedWeights()].map(([name, variable]) => ({ name, variable }));
    const g = await DataParallel.create(task, vars, { shards: 2, threads: 2 });
    assert.equal(g.threads, 1);
    await g.dispose();
  } finally {
    model.dispose();
  }
});

test('on the wasm backend (OpenBLAS products) a worker thread computes its shard bit for bit as this thread does', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const rand = mulberry32(9);
  const seqs = Array.from({ length: 16 }, () => Array.from({ length: 3 + Math.floor(rand() * 5) }, () => Math.floor(rand() * 18)));
  const model = new GPT2({ ...LM, nEmbd: 32, nHead: 4 }, undefined, { seed: 8 });
  try {
    const task = lmTask(model, seqs, [], EOS, { saveWeights: async () => {}, loadWeights: async () => {} });
    const vars = task.trainable();
    const plan = shardPlan(seqs.map((_, i) => i), 2, 3, (m) => 40 + m);
    const tokens = task.tokenCount('train', seqs.map((_, i) => i));
    const results: Float32Array[][] = [];
    const losses: number[] = [];
    for (const threads of [1, 2]) {
      const g = await DataParallel.create(task, vars, { shards: 2, threads });
      assert.equal(g.threads, threads);
      try {
        const r = await g.gradients(plan, tokens);
        losses.push(r.lossSum);
        results.push(r.grads.map((t) => t.dataSync() as Float32Array));
        tf.dispose(r.grads);
      } finally {
        await g.dispose();
      }
    }
    assert.equal(losses[1], losses[0]);
    results[0].forEach((a, i) => assert.ok(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(results[1][i].buffer, results[1][i].byteOffset, results[1][i].byteLength)), `gradient ${vars[i].name} differs`));
  } finally {
    model.dispose();
    await tf.setBackend('cpu');
  }
});

test('a run stopped and resumed on two threads ends bit for bit where an uninterrupted one-thread run does', async () => {
  const train = toyExamples(24);
  const make = () => {
    const lm = new GPT2(LM, undefined, { seed: 6 });
    const mapper = createMapper(defaultMapperConfig({ kind: 'mlp', inputDim: 6, embedDim: 8, prefixLength: 2, clipLength: 2, numLayers: 1, numHeads: 2 }), 7);
    const model = new ClipCapModel(lm, mapper, true);
    const task = clipCapTask(model, train, train.slice(0, 4), { saveWeights: (d) => saveRunWeights(model, d), loadWeights: (d) => loadRunWeights(model, d) });
    return { model, task, dispose: () => (mapper.dispose(), lm.dispose()) };
  };
  const cfg = loop({ microBatchSize: 2, batchSize: 8, epochs: 2 });
  const whole = await trainWith(1, () => {
    const m = make();
    return { task: m.task, weights: () => new Map(m.model.trainable().map((v) => [v.name, v.variable])), dispose: m.dispose };
  }, cfg);
  const before = process.env.CLIPCAP_TRAIN_THREADS;
  process.env.CLIPCAP_TRAIN_THREADS = '2';
  const dir = tmp();
  try {
    const a = make();
    const s1 = await runTraining(a.task, cfg, dir, { write: () => {}, shouldStop: (step) => step === 2 });
    assert.equal(s1.completed, false);
    a.dispose();
    const b = make();
    const s2 = await runTraining(b.task, cfg, dir, { write: () => {} });
    assert.equal(s2.resumedFromStep, 2);
    assert.equal(s2.completed, true);
    assertSameWeights(new Map(b.model.trainable().map((v) => [v.name, v.variable.dataSync() as Float32Array])), whole.weights);
    assert.deepEqual(readStepLog(dir).map((s) => s.loss), whole.losses);
    b.dispose();
  } finally {
    if (before === undefined) delete process.env.CLIPCAP_TRAIN_THREADS;
    else process.env.CLIPCAP_TRAIN_THREADS = before;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
