import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ClipCapModel } from '../src/lib/model/clipcap';
import { clipCapTask, padBatch, captionTokens, shuffledEmbeddings, type CaptionExample } from '../src/lib/train/examples';
import { GPT2, type GPT2Config } from '../src/lib/model/gpt2';
import { createMapper, defaultMapperConfig } from '../src/lib/model/mapper';
import { linearWarmupDecay } from '../src/lib/train/optim';
import { batchIndices, epochBatches, epochPermutation, runTraining, stepsPerEpoch } from '../src/lib/train/loop';
import type { LoopConfig } from '../src/lib/config';
import { readEpochLog, readStepLog } from '../src/lib/run/logs';
import { saveRunWeights, loadRunWeights } from '../src/lib/run/run';
import { lmTask } from '../src/lib/train/pretrain';
import { loadSafetensorsInto, saveSafetensorsFile } from '../src/lib/io/weights';

const LM: GPT2Config = { vocabSize: 12, nPositions: 16, nEmbd: 8, nLayer: 1, nHead: 2, layerNormEpsilon: 1e-5, activation: 'gelu_new', embdPdrop: 0, residPdrop: 0, attnPdrop: 0 };
const EOS = 11;

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-train-'));
}

/**
 * Toy data: 4 "images"; each caption is a fixed token pattern that depends on the image. With
 * `short`, one token + EOS: a frozen random LM cannot learn token-to-token structure, so only what the
 * prefix controls is learnable.
 */
function toyExamples(n: number, seed: number, short = false): CaptionExample[] {
  const out: CaptionExample[] = [];
  for (let i = 0; i < n; i++) {
    const k = (i + seed) % 4;
    const emb = new Float32Array(6);
    emb[k] = 1;
    emb[4 + (k % 2)] = 0.5;
    const tokens = captionTokens(short ? [1 + k] : [1 + k, 5 + k, 9 - (k % 2)], EOS, 8);
    out.push({ imageId: `img${k}`, embedding: emb, tokens });
  }
  return out;
}

function makeModel(kind: 'mlp' | 'transformer', finetune: boolean, seed = 1, dropout = 0): ClipCapModel {
  const lm = new GPT2({ ...LM, embdPdrop: dropout, residPdrop: dropout, attnPdrop: dropout }, undefined, { seed });
  // GPT-2's init (std 0.02) gives near-uniform logits whatever the input; scale the tied embedding
  // so that a frozen toy LM, like a pretrained one, can be steered by its prefix.
  const wte = lm.namedWeights().get('wte.weight')!;
  tf.tidy(() => wte.assign(tf.mul(wte, 60)));
  const mapper = createMapper(defaultMapperConfig({ kind, inputDim: 6, embedDim: 8, prefixLength: 2, clipLength: 2, numLayers: 1, numHeads: 2 }), seed);
  return new ClipCapModel(lm, mapper, finetune);
}

function loop(partial: Partial<LoopConfig> = {}): LoopConfig {
  return { epochs: 6, batchSize: 4, microBatchSize: 0, lr: 0.03, warmupSteps: 2, weightDecay: 0.0, gradClip: 0, seed: 3, checkpointEverySteps: 3, maxSteps: 0, dropLast: true, ...partial };
}

function io(m: ClipCapModel) {
  return { saveWeights: (d: string) => saveRunWeights(m, d), loadWeights: (d: string) => loadRunWeights(m, d) };
}

test('the schedule warms up linearly then decays linearly to zero', () => {
  const o = { lr: 1, warmupSteps: 4, totalSteps: 12 };
  assert.deepEqual([0, 1, 2, 4, 8, 12].map((s) => linearWarmupDecay(s, o)), [0, 0.25, 0.5, 1, 0.5, 0]);
  assert.equal(stepsPerEpoch(10, 4, true), 2);
  assert.equal(stepsPerEpoch(10, 4, false), 3);
  assert.equal(stepsPerEpoch(3, 4, true), 1);
  // each epoch is a permutation, different per epoch, same for the same seed
  const p0 = epochPermutation(20, 1, 0);
  assert.deepEqual([...p0].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
  assert.notDeepEqual(p0, epochPermutation(20, 1, 1));
  assert.deepEqual(p0, epochPermutation(20, 1, 0));
  assert.deepEqual(batchIndices(20, { batchSize: 4, seed: 1, dropLast: true }, 6).indices, epochPermutation(20, 1, 1).slice(4, 8));
});

test('prefix positions and padding never contribute to the loss', () => {
  const m = makeModel('mlp', true);
  const emb = tf.tensor2d([[1, 0, 0, 0, 0.5, 0], [0, 1, 0, 0, 0, 0.5]]);
  const short = [1, 5, EOS];
  const other = [2, 6, 8, EOS];
  const a = padBatch([short, other]);
  const lossA = m.lossSum(emb, a.ids, a.mask, { training: false }).dataSync()[0];
  // same captions with different padding content and more padding: identical loss
  const T = 7;
  const ids = tf.tensor2d([[...short, 3, 3, 3, 3], [...other, 7, 7, 7]], [2, T], 'int32');
  const mask = tf.tensor2d([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0]], [2, T]);
  const lossB = m.lossSum(emb, ids, mask, { training: false }).dataSync()[0];
  assert.ok(Math.abs(lossA - lossB) < 1e-5, `${lossA} vs ${lossB}`);
  // the loss is a sum over exactly the 7 caption tokens: one example alone gives its own share
  const one = padBatch([short]);
  const l1 = m.lossSum(emb.slice([0, 0], [1, 6]), one.ids, one.mask, { training: false }).dataSync()[0];
  const two = padBatch([other]);
  const l2 = m.lossSum(emb.slice([1, 0], [1, 6]), two.ids, two.mask, { training: false }).dataSync()[0];
  assert.ok(Math.abs(l1 + l2 - lossA) < 1e-4);
  // and it is not zero: the caption tokens do count
  assert.ok(l1 > 0.1);
});

test('a tiny run: loss falls well below its start (MLP + fine-tuned GPT-2)', async () => {
  const m = makeModel('mlp', true);
  const before = new Map([...m.lm.namedWeights()].map(([k, v]) => [k, v.dataSync().slice()]));
  const dir = tmp();
  const s = await runTraining(clipCapTask(m, toyExamples(16, 0), toyExamples(4, 1), io(m)), loop({ epochs: 10 }), dir, { write: () => {} });
  assert.ok(s.completed);
  const steps = readStepLog(dir);
  assert.equal(steps.length, 40);
  const first = steps.slice(0, 4).reduce((a, b) => a + b.loss, 0) / 4;
  const last = steps.slice(-4).reduce((a, b) => a + b.loss, 0) / 4;
  assert.ok(last < first * 0.5, `loss ${first} -> ${last}`);
  const epochs = readEpochLog(dir);
  assert.equal(epochs.length, 10);
  assert.ok(epochs[9].valLoss! < epochs[0].valLoss! * 0.5);
  // the model uses the image: with every caption conditioned on another photo, the val loss is far higher
  for (const e of epochs) assert.ok(Number.isFinite(e.valLossShuffled!), `epoch ${e.epoch}: ${e.valLossShuffled}`);
  assert.ok(epochs[9].valLossShuffled! > epochs[9].valLoss! * 1.3, `gap ${epochs[9].valLoss} -> ${epochs[9].valLossShuffled}`);
  assert.equal(s.finalValLossShuffled, epochs[9].valLossShuffled);
  const changed = [...m.lm.namedWeights()].filter(([k, v]) => before.get(k)!.some((x, i) => x !== v.dataSync()[i])).length;
  assert.ok(changed > 0, 'a fine-tuned GPT-2 must change');
  m.mapper.dispose();
  m.lm.dispose();
});

test('transformer mapper + frozen pretrained GPT-2: the loss falls and GPT-2 stays unchanged', async () => {
  // First teach a toy LM the 4 captions (as the offline profile pretrains its LM on caption text);
  // frozen, it knows how each caption goes on but not which one an image has: the prefix must tell.
  const lm = new GPT2({ ...LM, nEmbd: 16, nLayer: 2 }, undefined, { seed: 5 });
  const captions = [0, 1, 2, 3].map((k) => [1 + k, 5 + k, 9 - (k % 2)]);
  const seqs = Array.from({ length: 16 }, (_, i) => captions[i % 4]);
  const w = lm.namedWeights();
  const lmIo = { saveWeights: async (d: string) => saveSafetensorsFile(path.join(d, 'w.safetensors'), w), loadWeights: async (d: string) => loadSafetensorsInto(path.join(d, 'w.safetensors'), w) };
  const pre = await runTraining(lmTask(lm, seqs, seqs.slice(0, 4), EOS, lmIo), loop({ epochs: 15, lr: 0.03 }), tmp(), { write: () => {} });
  assert.ok(pre.finalTrainLoss! < 0.6, `LM pretraining loss ${pre.finalTrainLoss}`);
  const before = new Map([...lm.namedWeights()].map(([k, v]) => [k, v.dataSync().slice()]));
  // prefix length 1: the prefix takes the place of the beginning-of-text token the LM was trained with
  const mapper = createMapper(defaultMapperConfig({ kind: 'transformer', inputDim: 6, embedDim: 16, prefixLength: 1, clipLength: 2, numLayers: 1, numHeads: 2 }), 2);
  const m = new ClipCapModel(lm, mapper, false);
  assert.deepEqual(m.trainable().map((t) => t.name.split('.')[0]), mapper.variables().map(() => 'mapper'));
  const dir = tmp();
  await runTraining(clipCapTask(m, toyExamples(16, 0), toyExamples(4, 1), io(m)), loop({ epochs: 15, lr: 0.03 }), dir, { write: () => {} });
  const steps = readStepLog(dir);
  const first = steps.slice(0, 4).reduce((a, b) => a + b.loss, 0) / 4;
  const last = steps.slice(-4).reduce((a, b) => a + b.loss, 0) / 4;
  assert.ok(last < first * 0.5, `loss ${first} -> ${last}`);
  for (const [k, v] of lm.namedWeights()) assert.deepEqual(Array.from(v.dataSync()), Array.from(before.get(k)!), `frozen weight ${k} changed`);
  mapper.dispose();
  lm.dispose();
});

test('resume after an interrupted run gives the same final weights as an uninterrupted one (dropout on)', async () => {
  const cfg = loop({ epochs: 3, checkpointEverySteps: 2, microBatchSize: 2, gradClip: 1, weightDecay: 0.01, bucketByLength: true });
  const train = toyExamples(12, 0);
  const val = toyExamples(4, 2);
  const finalWeights = (m: ClipCapModel) => [...m.trainable()].map((v) => Array.from(v.variable.dataSync()));

  const a = makeModel('mlp', true, 1, 0.1);
  const dirA = tmp();
  await runTraining(clipCapTask(a, train, val, io(a)), cfg, dirA, { write: () => {} });
  const wa = finalWeights(a);

  const dirB = tmp();
  const b1 = makeModel('mlp', true, 1, 0.1);
  const s1 = await runTraining(clipCapTask(b1, train, val, io(b1)), cfg, dirB, { write: () => {}, shouldStop: (step) => step === 5 });
  assert.equal(s1.steps, 5);
  assert.equal(s1.completed, false);
  // a fresh process would start from a new model object with other random weights
  const b2 = makeModel('mlp', true, 99, 0.1);
  const s2 = await runTraining(clipCapTask(b2, train, val, io(b2)), cfg, dirB, { write: () => {} });
  assert.equal(s2.resumedFromStep, 5);
  assert.ok(s2.completed);
  const wb = finalWeights(b2);
  for (let i = 0; i < wa.length; i++) for (let j = 0; j < wa[i].length; j++) assert.ok(Math.abs(wa[i][j] - wb[i][j]) < 1e-6);
  assert.deepEqual(readStepLog(dirB).map((s) => s.step), readStepLog(dirA).map((s) => s.step));
  assert.equal(readEpochLog(dirB).length, 3);
  // a finished run is not trained again
  const s3 = await runTraining(clipCapTask(b2, train, val, io(b2)), cfg, dirB, { write: () => {} });
  assert.equal(s3.steps, s2.steps);
});

test('the LM head can skip the prefix (logitsFrom) and seeded dropout repeats its masks', () => {
  const lm = new GPT2({ ...LM, residPdrop: 0.5 }, undefined, { seed: 2 });
  const x = tf.randomNormal([2, 6, 8], 0, 1, 'float32', 4) as tf.Tensor3D;
  const full = lm.forward({ inputsEmbeds: x }).logits;
  const part = lm.forward({ inputsEmbeds: x, logitsFrom: 3 }).logits;
  assert.deepEqual(part.shape, [2, 3, 12]);
  const want = full.slice([0, 3, 0], [2, 3, 12]).dataSync();
  part.dataSync().forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-6));
  const d1 = lm.forward({ inputsEmbeds: x, training: true, dropoutSeed: 7 }).logits.dataSync();
  const d2 = lm.forward({ inputsEmbeds: x, training: true, dropoutSeed: 7 }).logits.dataSync();
  const d3 = lm.forward({ inputsEmbeds: x, training: true, dropoutSeed: 8 }).logits.dataSync();
  assert.deepEqual(Array.from(d1), Array.from(d2));
  assert.notDeepEqual(Array.from(d1), Array.from(d3));
  lm.dispose();
});

test('length bucketing: every example once per epoch, similar lengths per batch, deterministic', () => {
  const n = 1000;
  const len = (i: number) => 3 + ((i * 7919) % 29);
  const cfg = { batchSize: 8, seed: 5, dropLast: false, bucketByLength: true };
  const b0 = epochBatches(n, cfg, 0, len);
  assert.equal(b0.length, 125);
  assert.deepEqual(b0.flat().sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
  assert.deepEqual(epochBatches(n, cfg, 0, len), b0);
  assert.notDeepEqual(epochBatches(n, cfg, 1, len), b0);
  const spread = (bs: number[][]) => bs.reduce((a, b) => a + Math.max(...b.map(len)) - Math.min(...b.map(len)), 0) / bs.length;
  const plain = epochBatches(n, { ...cfg, bucketByLength: false }, 0, len);
  assert.ok(spread(b0) < spread(plain) / 4, `${spread(b0)} vs ${spread(plain)}`);
  // dropLast drops exactly the one short batch
  const d = epochBatches(1003, { ...cfg, dropLast: true }, 0, len);
  assert.equal(d.length, 125);
  assert.ok(d.every((b) => b.length === 8));
  assert.deepEqual(batchIndices(n, cfg, 130, len).indices, epochBatches(n, cfg, 1, len)[5]);
});

test('shuffled images: every example gets another photo\'s embedding, a permutation, the same for the same seed', () => {
  const ex = toyExamples(10, 0); // 4 photos, 2-3 captions each
  const sh = shuffledEmbeddings(ex, 1);
  assert.equal(sh.length, ex.length);
  const idOf = new Map(ex.map((e) => [e.embedding, e.imageId]));
  sh.forEach((v, i) => assert.notEqual(idOf.get(v), ex[i].imageId, `example ${i} kept its own photo`));
  // a permutation of the examples' embeddings (each used once)
  const count = (list: Float32Array[]) => [...new Set(ex.map((e) => e.embedding))].map((v) => list.filter((x) => x === v).length);
  assert.deepEqual(count(sh), count(ex.map((e) => e.embedding)));
  assert.deepEqual(shuffledEmbeddings(ex, 1), sh);
  // one photo only: nothing to swap with, every example keeps its own
  const one = toyExamples(3, 0).map((e) => ({ ...e, imageId: 'same' }));
  assert.equal(shuffledEmbeddings(one, 1).length, 3);
});

test('a diverging run stops with a clear error at the first non-finite loss, logs only finite steps, and keeps its last checkpoint', async () => {
  const m = makeModel('mlp', true);
  const dir = tmp();
  await assert.rejects(
    runTraining(clipCapTask(m, toyExamples(16, 0), toyExamples(4, 1), io(m)), loop({ epochs: 30, lr: 1e6, warmupSteps: 0, checkpointEverySteps: 1 }), dir, { write: () => {} }),
    (e: Error) => {
      assert.equal(e.name, 'DivergenceError');
      assert.match(e.message, /training diverged at step \d+: the (training loss|gradient norm|validation loss) is (NaN|-?Infinity)\. .*not complete; its last checkpoint, from before step \d+, is kept\. Lower the learning rate/);
      return true;
    },
  );
  const steps = readStepLog(dir);
  assert.ok(steps.every((s) => Number.isFinite(s.loss)), 'no non-finite loss is logged');
  assert.ok(fs.existsSync(path.join(dir, 'checkpoint')), 'the last good checkpoint stays');
  m.mapper.dispose();
  m.lm.dispose();
});

test('one training per run directory: a second training of the same run is refused while the first runs, and no temp folder is left', async () => {
  const m = makeModel('mlp', true);
  const dir = tmp();
  const first = runTraining(clipCapTask(m, toyExamples(16, 0), toyExamples(4, 1), io(m)), loop({ epochs: 2 }), dir, { write: () => {} });
  await assert.rejects(
    runTraining(clipCapTask(m, toyExamples(16, 0), toyExamples(4, 1), io(m)), loop({ epochs: 2 }), dir, { write: () => {} }),
    /the run .* is already being trained in this process/,
  );
  const s = await first;
  assert.ok(s.completed);
  assert.ok(!fs.existsSync(path.join(dir, 'train.lock')), 'the lock is released');
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
  // a temp folder of a killed writer is cleaned on the next training
  fs.mkdirSync(path.join(dir, 'checkpoint.tmp-999999-abc'));
  await runTraining(clipCapTask(m, toyExamples(16, 0), toyExamples(4, 1), io(m)), loop({ epochs: 2 }), dir, { write: () => {} });
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
  m.mapper.dispose();
  m.lm.dispose();
});
