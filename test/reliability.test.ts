// Issue 19: nothing lost and nothing silently wrong. One test (or more) per item: run names, finite
// weights and logits, the identity of a run's data and notebook 06's caches, evalImages 0, a prompt
// of unknown words, locks that survive a reused pid, a full disk, and a diverging run.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { profileConfig } from '../src/lib/config';
import { profileProblems, trainProblems } from '../src/lib/validate';
import { runDirectory } from '../src/lib/paths';
import { hashedRunDir, linkLatest, loadRunWeights, saveRunWeights, sameExperiment, dataDrawProblem, type RunConfig } from '../src/lib/run/run';
import { writeSafetensors } from '../src/lib/io/safetensors';
import { loadSafetensorsTensors } from '../src/lib/io/weights';
import { loadGPT2, loadLanguageModel, saveLanguageModel } from '../src/lib/model/gpt2-hf';
import { GPT2, configFromHF, type GPT2Config } from '../src/lib/model/gpt2';
import { beamSearch, greedy, topP } from '../src/lib/model/generate';
import { loadTokenizer, RestrictedVocab, restrictTokenizer } from '../src/lib/model/tokenizer';
import { ClipCapModel } from '../src/lib/model/clipcap';
import { createMapper, defaultMapperConfig } from '../src/lib/model/mapper';
import { captionFrame, splitByImage, subsetIdentity, type CaptionRow } from '../src/lib/data/index';
import { cachedCaptions, captionMetaFor } from '../src/lib/eval/evaluate';
import { acquireLock, releaseLock, processStartTime } from '../src/lib/util/lock';
import { buildDirAtomic, writeFileAtomic } from '../src/lib/util/files';
import { runTraining } from '../src/lib/train/loop';
import type { TrainTask } from '../src/lib/train/task';
import { loopConfigFor } from '../src/lib/train/run';
import { decodeImage } from '../src/lib/embed/encoders/image';
import { ensureBackend } from '../src/lib/tfjs/backend';
import type { LoopConfig } from '../src/lib/config';
import { TINY, TINY_BYTES, writeTinyGPT2, hfConfigJson } from './helpers/gpt2-fixture';

process.env.CLIPCAP_QUIET_BACKEND = '1';
const ROOT = path.resolve(__dirname, '..');

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-reliability-'));
}

// ---------------------------------------------------------------------------------------------
// 1. Run names

test('run names: only a single plain folder name is accepted (validation and run folders)', () => {
  const base = profileConfig('smoke').mlp;
  for (const bad of ['.', '..', 'a/b', '../x', '.hidden', '', 'x/..']) {
    const problems = trainProblems('mlp', { ...base, name: bad });
    assert.ok(problems.some((p) => p.startsWith('mlp.name')), `name ${JSON.stringify(bad)} must be refused, got ${JSON.stringify(problems)}`);
    assert.throws(() => runDirectory('smoke', bad), /run name/, `runDirectory(${JSON.stringify(bad)})`);
  }
  for (const good of ['mlp_finetune', 'run-2', 'v1.5', 'A']) {
    assert.deepEqual(trainProblems('mlp', { ...base, name: good }), [], good);
    assert.equal(path.basename(runDirectory('smoke', good)), good);
  }
});

test('linkLatest moves aside only a run folder of the older layout; anything else at the path is refused, untouched', () => {
  const runs = path.join(tmp(), 'runs');
  fs.mkdirSync(path.join(runs, 'mine@0123abcd'), { recursive: true });
  // a plain folder that is not a run: refused, naming the path, left as it was
  const notRun = path.join(runs, 'mine');
  fs.mkdirSync(notRun);
  fs.writeFileSync(path.join(notRun, 'notes.txt'), 'keep me');
  assert.throws(() => linkLatest(notRun, path.join(runs, 'mine@0123abcd')), (e: Error) => e.message.includes(notRun) && /not a run/.test(e.message));
  assert.equal(fs.readFileSync(path.join(notRun, 'notes.txt'), 'utf8'), 'keep me');
  assert.deepEqual(fs.readdirSync(runs).sort(), ['mine', 'mine@0123abcd']);
  // a file: refused too
  const file = path.join(runs, 'other');
  fs.mkdirSync(path.join(runs, 'other@89abcdef'));
  fs.writeFileSync(file, 'x');
  assert.throws(() => linkLatest(file, path.join(runs, 'other@89abcdef')), /not a run/);
  assert.equal(fs.readFileSync(file, 'utf8'), 'x');
  // a run folder of the older layout (config.json): moved aside under a name of its own, then linked
  const old = path.join(runs, 'legacy');
  fs.mkdirSync(old);
  fs.writeFileSync(path.join(old, 'config.json'), '{}');
  fs.mkdirSync(path.join(runs, 'legacy@00000000'));
  linkLatest(old, path.join(runs, 'legacy@00000000'));
  assert.ok(fs.lstatSync(old).isSymbolicLink());
  assert.equal(fs.readlinkSync(old), 'legacy@00000000');
  assert.ok(fs.readdirSync(runs).some((n) => n.startsWith('legacy@earlier-')));
  // the link must live beside the run folder and be named by a plain run name
  assert.throws(() => linkLatest(path.join(runs, '..'), path.join(runs, 'mine@0123abcd')), /run name|outside/);
  assert.throws(() => linkLatest(path.join(runs, '.'), path.join(runs, 'mine@0123abcd')), /run name|outside/);
  assert.throws(() => linkLatest(path.join(runs, 'mine'), path.join(os.tmpdir(), 'mine@0123abcd')), /outside|beside/);
  assert.ok(fs.existsSync(runs) && fs.statSync(runs).isDirectory());
});

// ---------------------------------------------------------------------------------------------
// 2. Weights and logits

function nanSafetensors(file: string, tensors: Map<string, { shape: number[]; data: Float32Array }>): void {
  writeSafetensors(file, tensors, { format: 'pt' });
}

test('weights: a tensor with NaN or infinity is refused on load, naming the file and the tensor', async () => {
  await ensureBackend({ quiet: true });
  const dir = tmp();
  const f = path.join(dir, 'mapper.safetensors');
  nanSafetensors(f, new Map([['ok', { shape: [2], data: new Float32Array([1, 2]) }], ['model.0.weight', { shape: [3], data: new Float32Array([1, NaN, 3]) }]]));
  assert.throws(() => loadSafetensorsTensors(f), (e: Error) => e.message.includes(f) && e.message.includes('model.0.weight') && /NaN|infinit|finite/.test(e.message));
  nanSafetensors(f, new Map([['w', { shape: [2], data: new Float32Array([Infinity, 0]) }]]));
  assert.throws(() => loadSafetensorsTensors(f), /"w"/);
  // a GPT-2 model directory with a NaN weight: loadGPT2 refuses it, naming the tensor
  const lmDir = path.join(dir, 'lm');
  const raw = writeTinyGPT2(lmDir, TINY, { seed: 2 });
  const tensors = new Map([...raw].map(([k, v]) => [k, { shape: v.shape, data: Float32Array.from(v.data) }]));
  tensors.get('h.1.ln_2.weight')!.data[3] = NaN;
  writeSafetensors(path.join(lmDir, 'model.safetensors'), tensors, { format: 'pt' });
  await assert.rejects(loadGPT2(lmDir), (e: Error) => e.message.includes('model.safetensors') && e.message.includes('h.1.ln_2.weight') && /NaN|finite/.test(e.message));
});

test('weights: a run whose saved mapper or fine-tuned GPT-2 holds NaN is refused by loadRunWeights', async () => {
  await ensureBackend({ quiet: true });
  const lmCfg: GPT2Config = { vocabSize: 12, nPositions: 16, nEmbd: 8, nLayer: 1, nHead: 2, layerNormEpsilon: 1e-5, activation: 'gelu_new', embdPdrop: 0, residPdrop: 0, attnPdrop: 0 };
  const lm = new GPT2(lmCfg, undefined, { seed: 1 });
  const mapper = createMapper(defaultMapperConfig({ kind: 'mlp', inputDim: 6, embedDim: 8, prefixLength: 2 }), 1);
  const m = new ClipCapModel(lm, mapper, true);
  const dir = path.join(tmp(), 'final');
  await saveRunWeights(m, dir);
  await loadRunWeights(m, dir); // good weights load
  const mf = path.join(dir, 'mapper.safetensors');
  const sd = mapper.stateDict();
  const saved = new Map([...sd].map(([k, t]) => [k, { shape: t.shape.slice(), data: Float32Array.from(t.dataSync()) }]));
  for (const t of sd.values()) t.dispose();
  const first = [...saved.keys()][0];
  saved.get(first)!.data[0] = NaN;
  const good = fs.readFileSync(mf);
  writeSafetensors(mf, saved, { format: 'pt' });
  await assert.rejects(loadRunWeights(m, dir), (e: Error) => e.message.includes(mf) && e.message.includes(first));
  fs.writeFileSync(mf, good);
  const lmFile = path.join(dir, 'lm', 'model.safetensors');
  const lmTensors = new Map([...lm.namedWeights()].map(([k, t]) => [k, { shape: t.shape.slice(), data: Float32Array.from(t.dataSync()) }]));
  lmTensors.get('wte.weight')!.data[5] = -Infinity;
  writeSafetensors(lmFile, lmTensors, { format: 'pt' });
  await assert.rejects(loadRunWeights(m, dir), (e: Error) => e.message.includes(lmFile) && e.message.includes('wte.weight'));
  mapper.dispose();
  lm.dispose();
});

test('decoding: NaN logits raise a clear error in greedy, beam search and top-p, never a caption', async () => {
  await ensureBackend({ quiet: true });
  const dir = tmp();
  writeTinyGPT2(dir, { ...TINY, vocabSize: 23 }, { seed: 5, scale: 0.6 });
  const model = await loadGPT2(dir);
  const w = model.namedWeights().get('ln_f.weight')!;
  tf.tidy(() => w.assign(tf.fill(w.shape, NaN)));
  const prefix = tf.randomNormal([1, 3, TINY.nEmbd], 0, 1, 'float32', 1) as tf.Tensor3D;
  const opts = { maxNewTokens: 4, eosId: 22 };
  const clear = (e: Error) => /non-finite|NaN/.test(e.message) && /logits/.test(e.message);
  assert.throws(() => greedy(model, prefix, opts), clear);
  assert.throws(() => beamSearch(model, prefix, { ...opts, beamSize: 3 }), clear);
  assert.throws(() => topP(model, prefix, { ...opts, topP: 0.9, seed: 1 }), clear);
  // a NaN prefix (a mapper with NaN weights) is caught the same way
  const good = await loadGPT2(dir);
  const nanPrefix = tf.fill([1, 3, TINY.nEmbd], NaN) as tf.Tensor3D;
  assert.throws(() => beamSearch(good, nanPrefix, { ...opts, beamSize: 2 }), clear);
  assert.throws(() => greedy(good, nanPrefix, opts), clear);
  prefix.dispose();
  nanPrefix.dispose();
  model.dispose();
  good.dispose();
});

function clipcap(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'clipcap.js'), ...args], { cwd: ROOT, env: { ...process.env, CLIPCAP_QUIET_BACKEND: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test('clipcap lm on a model with a NaN weight exits non-zero with one line naming the file and the tensor', async () => {
  const dir = tmp();
  const raw = writeTinyGPT2(dir, TINY_BYTES, { tokenizer: true, seed: 3, scale: 0.5 });
  const tensors = new Map([...raw].map(([k, v]) => [k, { shape: v.shape, data: Float32Array.from(v.data) }]));
  tensors.get('h.0.mlp.c_fc.weight')!.data.fill(NaN);
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  const r = await clipcap(['lm', '--model', dir, '--prompt', 'the cat', '--max-new-tokens', '4']);
  assert.notEqual(r.status, 0);
  assert.equal(r.stdout.trim(), '', 'no continuation is printed');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /model\.safetensors.*h\.0\.mlp\.c_fc\.weight/);
});

// ---------------------------------------------------------------------------------------------
// 3. The identity of a run's data; notebook 06's caches

function runConfig(identity: string | undefined): RunConfig {
  const p = profileConfig('smoke');
  return {
    format: 'clipcap-run/1',
    profile: 'smoke',
    name: 'mlp_finetune',
    train: p.mlp,
    loop: { epochs: 1, batchSize: 8, microBatchSize: 8, lr: 1e-3, warmupSteps: 0, weightDecay: 0, gradClip: 0, seed: 1, checkpointEverySteps: 4, maxSteps: 0, dropLast: true },
    mapper: defaultMapperConfig({ kind: 'mlp', inputDim: 6, embedDim: 8, prefixLength: 2 }),
    encoder: { name: 'tiny', embeddingsDir: 'x', dim: 6, config: p.encoder },
    lm: { source: 'lm', config: TINY as unknown as GPT2Config, vocabSize: 61, restrictedVocab: true },
    data: { trainExamples: 100, valExamples: 10, trainImages: 20, valImages: 2, skippedNoEmbedding: 0, subsetsDir: 'data/smoke/subsets', ...(identity ? { identity } : {}) },
    backend: 'cpu',
    createdAt: '2024-01-01T00:00:00.000Z',
  };
}

function syntheticRows(n: number): CaptionRow[] {
  const out: CaptionRow[] = [];
  for (let i = 0; i < n; i++) for (let k = 0; k < 5; k++) out.push({ image_id: `img${i}`, file: `/p/${i}.png`, split: 'all', caption: `caption ${i}.${k}`, source: 'synthetic' });
  return out;
}

test('a run key includes the identity of its data: another draw of the same size is another run', () => {
  // two runs alike in everything but which photos they were trained on
  assert.ok(!sameExperiment(runConfig('aaaa'), runConfig('bbbb')), 'another draw is another experiment');
  assert.notEqual(hashedRunDir('smoke', runConfig('aaaa')), hashedRunDir('smoke', runConfig('bbbb')));
  const df = captionFrame(syntheticRows(40));
  const spec = { evalImages: 8, evalMinCaptions: 5, val: { fraction: 0.1 }, trainCaptions: 0, valCaptions: 0 };
  const a = splitByImage(df, { ...spec, seed: 7 });
  const b = splitByImage(df, { ...spec, seed: 1 });
  assert.equal(a.train.height, b.train.height, 'the same number of training captions');
  const ia = subsetIdentity(a);
  const ib = subsetIdentity(b);
  assert.notEqual(ia, ib);
  assert.equal(subsetIdentity(splitByImage(df, { ...spec, seed: 7 })), ia, 'the same draw, the same identity');
  assert.ok(!sameExperiment(runConfig(ia), runConfig(ib)), 'another draw is another experiment');
  assert.notEqual(hashedRunDir('smoke', runConfig(ia)), hashedRunDir('smoke', runConfig(ib)));
  assert.ok(sameExperiment(runConfig(ia), runConfig(ia)));
  // evaluation refuses a run trained on another draw, saying what to rerun
  assert.equal(dataDrawProblem(runConfig(ia), ia), null);
  assert.match(dataDrawProblem(runConfig(ia), ib)!, /another draw.*notebooks? 03 and 04/);
});

test('notebook 06 caption cache: reused only for the same run folder, photos and decoding; otherwise rebuilt', () => {
  const dir = tmp();
  const decode = { beam: 3, maxNewTokens: 12, noRepeatNgram: 0, lengthPenalty: 1, contrastWeight: 0 };
  const ids = ['1', '2', '3'];
  const want = captionMetaFor({ name: 'mlp_finetune', runDir: '/r/runs/mlp_finetune@aaaa1111', finishedAt: 't1', decode, imageIds: ids });
  const caps = new Map(ids.map((id) => [id, `a caption of ${id}`]));
  fs.writeFileSync(path.join(dir, 'mlp_finetune.results.json'), JSON.stringify(ids.map((id) => ({ image_id: Number(id), caption: caps.get(id) }))));
  fs.writeFileSync(path.join(dir, 'mlp_finetune.meta.json'), JSON.stringify({ ...want, seconds: 5 }));
  const hit = cachedCaptions(dir, 'mlp_finetune', want);
  assert.deepEqual(hit?.captions, caps);
  // the same number of photos, other photos (a new data draw): rebuilt, not reused
  assert.equal(cachedCaptions(dir, 'mlp_finetune', captionMetaFor({ name: 'mlp_finetune', runDir: '/r/runs/mlp_finetune@aaaa1111', finishedAt: 't1', decode, imageIds: ['4', '5', '6'] })), null);
  // another run folder (the latest link now points at a new run) with the same finish time: rebuilt
  assert.equal(cachedCaptions(dir, 'mlp_finetune', captionMetaFor({ name: 'mlp_finetune', runDir: '/r/runs/mlp_finetune@bbbb2222', finishedAt: 't1', decode, imageIds: ids })), null);
  // other decoding settings: rebuilt
  assert.equal(cachedCaptions(dir, 'mlp_finetune', captionMetaFor({ name: 'mlp_finetune', runDir: '/r/runs/mlp_finetune@aaaa1111', finishedAt: 't1', decode: { ...decode, beam: 1 }, imageIds: ids })), null);
  // a meta file of the older format (images counted, not named): rebuilt
  fs.writeFileSync(path.join(dir, 'mlp_finetune.meta.json'), JSON.stringify({ run: 'mlp_finetune', finishedAt: 't1', decode, images: 3, seconds: 5 }));
  assert.equal(cachedCaptions(dir, 'mlp_finetune', want), null);
  // results that do not cover the photos (a damaged file): rebuilt
  fs.writeFileSync(path.join(dir, 'mlp_finetune.meta.json'), JSON.stringify({ ...want, seconds: 5 }));
  fs.writeFileSync(path.join(dir, 'mlp_finetune.results.json'), JSON.stringify([{ image_id: 9, caption: 'x' }]));
  assert.equal(cachedCaptions(dir, 'mlp_finetune', want), null);
});

// ---------------------------------------------------------------------------------------------
// 4. evalImages: 0, and empty train / val subsets

test('evalImages 0 (the whole evaluation pool) only where the profile has one; refused elsewhere with the allowed values', () => {
  assert.deepEqual(profileProblems(profileConfig('offline')), [], 'the offline profile: the Flickr8k test split');
  for (const name of ['smoke', 'coco-cpu', 'paper']) {
    const p = profileConfig(name);
    p.data.evalImages = 0;
    const problems = profileProblems(p);
    assert.ok(problems.some((x) => /^data\.evalImages = 0: .*whole number from 1/.test(x)), `${name}: ${JSON.stringify(problems)}`);
  }
});

test('a split that leaves train or val empty is refused when the subsets are made, naming the fields to change', () => {
  const df = captionFrame(syntheticRows(10));
  const spec = { seed: 7, evalMinCaptions: 5, val: { fraction: 0.1 }, trainCaptions: 0, valCaptions: 0 };
  assert.throws(() => splitByImage(df, { ...spec, evalImages: 0 }), (e: Error) => /no training photos/.test(e.message) && /data\.evalImages/.test(e.message));
  assert.throws(() => splitByImage(df, { ...spec, evalImages: 10 }), /no training photos.*data\.evalImages/);
  assert.throws(() => splitByImage(df, { ...spec, evalImages: 6, val: { fraction: 0.1 } }), (e: Error) => /no validation photos/.test(e.message) && /data\.valFraction/.test(e.message));
  // a fraction of 0 asks for no validation: allowed
  assert.equal(splitByImage(df, { ...spec, evalImages: 6, val: { fraction: 0 } }).val.height, 0);
  assert.ok(splitByImage(df, { ...spec, evalImages: 2 }).train.height > 0);
});

// ---------------------------------------------------------------------------------------------
// 5. A prompt of unknown words

test('clipcap lm: a prompt with no word in the restricted vocabulary is one clear error', async () => {
  await ensureBackend({ quiet: true });
  const gpt = await loadTokenizer();
  const vocab = RestrictedVocab.fromCorpus([gpt.encode('A dog runs on the beach.')], [gpt.eosId]);
  const xylo = gpt.encode('xylophone');
  assert.ok(xylo.every((id) => !vocab.has(id)), 'the prompt has no known token');
  const tokenizer = restrictTokenizer(gpt, vocab);
  const model = new GPT2(configFromHF(hfConfigJson({ ...TINY_BYTES, vocabSize: vocab.size })), undefined, { seed: 2 });
  const dir = path.join(tmp(), 'lm');
  await saveLanguageModel({ model, tokenizer }, dir);
  model.dispose();
  const { run } = await import('../src/cli/lm');
  const errors: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => errors.push(a.join(' '));
  try {
    await assert.rejects(run(['--model', dir, '--prompt', 'xylophone']), (e: Error) => {
      assert.doesNotMatch(e.message, /token_ids/);
      assert.match(e.message, /"xylophone".*restricted vocabulary/);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    });
  } finally {
    console.error = orig;
  }
  // a prompt with some known words still works (the unknown ones are dropped with a warning)
  const lm = await loadLanguageModel(dir);
  assert.ok(lm.tokenizer.encode('xylophone dog').length > 0);
  lm.model.dispose();
});

// ---------------------------------------------------------------------------------------------
// 6. Locks

const msgs = { busy: (pid: number) => `busy: held by ${pid}`, self: 'held by this process' };

test('a lock records its process start time: a reused pid is stale; every refusal names the lock file', async () => {
  const dir = tmp();
  const lock = path.join(dir, 'train.lock');
  acquireLock(lock, msgs);
  const [pidLine] = fs.readFileSync(lock, 'utf8').split('\n');
  assert.equal(pidLine.trim(), String(process.pid));
  assert.throws(() => acquireLock(lock, msgs), (e: Error) => e.message.includes('held by this process') && e.message.includes(lock));
  releaseLock(lock);
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
  try {
    await new Promise((r) => setTimeout(r, 100));
    const start = processStartTime(child.pid!);
    if (fs.existsSync('/proc/self/stat')) assert.ok(start, 'start time from /proc');
    // the live process that wrote it: refused, naming the process and the lock file and how to clear it
    fs.writeFileSync(lock, `${child.pid}\nstart ${start}\n`);
    assert.throws(() => acquireLock(lock, msgs), (e: Error) => e.message.includes(`busy: held by ${child.pid}`) && e.message.includes(lock) && /delete/.test(e.message));
    // the same pid, another start time: the pid was reused after the writer died (a restart), taken over
    fs.writeFileSync(lock, `${child.pid}\nstart 1\n`);
    acquireLock(lock, msgs);
    assert.equal(fs.readFileSync(lock, 'utf8').split('\n')[0], String(process.pid));
    releaseLock(lock);
    // an old lock with a pid only (written before start times were recorded): a live pid holds it
    fs.writeFileSync(lock, `${child.pid}\n`);
    assert.throws(() => acquireLock(lock, msgs), (e: Error) => e.message.includes(lock));
    fs.rmSync(lock);
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
  }
});

// ---------------------------------------------------------------------------------------------
// 7. A full disk

function enospc(): NodeJS.ErrnoException {
  const e = new Error('ENOSPC: no space left on device, write') as NodeJS.ErrnoException;
  e.code = 'ENOSPC';
  e.syscall = 'write';
  return e;
}

test('disk full during an atomic write or a checkpoint: one line naming the folder and that a rerun resumes; old files intact', async () => {
  const realFs = require('fs') as typeof fs;
  const dir = tmp();
  const target = path.join(dir, 'state.json');
  writeFileAtomic(target, 'old');
  const orig = realFs.writeSync;
  (realFs as { writeSync: unknown }).writeSync = () => {
    throw enospc();
  };
  try {
    assert.throws(
      () => writeFileAtomic(target, 'new contents'),
      (e: Error) => !e.message.includes('\n') && e.message.includes(dir) && /disk is full|no space/i.test(e.message) && /rerun/i.test(e.message) && /resume/i.test(e.message),
    );
    const ckpt = path.join(dir, 'checkpoint');
    await assert.rejects(
      buildDirAtomic(ckpt, (t) => writeFileAtomic(path.join(t, 'weights', 'mapper.safetensors'), 'x')),
      (e: Error) => !e.message.includes('\n') && e.message.includes(ckpt) && /rerun/i.test(e.message),
    );
  } finally {
    (realFs as { writeSync: unknown }).writeSync = orig;
  }
  assert.equal(fs.readFileSync(target, 'utf8'), 'old');
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no temporary file is left');
});

test('disk full while training writes a checkpoint: one line naming the checkpoint folder; the last checkpoint is intact and a rerun resumes', async () => {
  const realFs = require('fs') as typeof fs;
  const task = scriptedTask(() => 2);
  const dir = tmp();
  const paths = new Map<number, string>();
  const openSync = realFs.openSync;
  const writeSync = realFs.writeSync;
  let full = false;
  (realFs as { openSync: unknown }).openSync = (p: fs.PathLike, ...rest: unknown[]) => {
    const fd = (openSync as (...a: unknown[]) => number)(p, ...rest);
    paths.set(fd, String(p));
    return fd;
  };
  (realFs as { writeSync: unknown }).writeSync = (fd: number, ...rest: unknown[]) => {
    if (full && (paths.get(fd) ?? '').includes(`${path.sep}checkpoint.tmp-`)) throw enospc();
    return (writeSync as (...a: unknown[]) => number)(fd, ...rest);
  };
  try {
    await assert.rejects(
      runTraining(task, loopCfg({ epochs: 2 }), dir, { write: () => {}, onStep: (l) => (full = l.step === 3) }),
      (e: Error) => !e.message.includes('\n') && e.message.includes(path.join(dir, 'checkpoint')) && /rerun/.test(e.message) && /resume/.test(e.message),
    );
  } finally {
    (realFs as { openSync: unknown }).openSync = openSync;
    (realFs as { writeSync: unknown }).writeSync = writeSync;
  }
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint', 'state.json'), 'utf8')).step, 2, 'the last good checkpoint is intact');
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('.tmp-')), []);
  const s = await runTraining(task, loopCfg({ epochs: 2 }), dir, { write: () => {} });
  assert.ok(s.completed);
  assert.equal(s.resumedFromStep, 2);
  task.w.dispose();
});

// ---------------------------------------------------------------------------------------------
// 8. A diverging run; a damaged checkpoint; a truncated JPEG

/** A task whose loss follows `losses` step by step (a scalar weight keeps the gradients defined). */
function scriptedTask(losses: (step: number) => number): TrainTask & { w: tf.Variable } {
  const w = tf.variable(tf.scalar(0), true, `w${Math.random()}`);
  let calls = 0;
  return {
    w,
    numTrain: 8,
    numVal: 2,
    trainable: () => [{ name: 'w', variable: w }],
    tokenCount: (_split, idx) => idx.length,
    lossSum: (split, idx, opts) => {
      const step = opts.training ? calls++ : 0;
      const v = split === 'train' && opts.training ? losses(step) : 1;
      return tf.add(tf.mul(w, 0), tf.scalar(v * idx.length)) as tf.Scalar;
    },
    saveWeights: async (d) => {
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, 'w.json'), JSON.stringify(w.dataSync()[0]));
    },
    loadWeights: async (d) => {
      w.assign(tf.scalar(JSON.parse(fs.readFileSync(path.join(d, 'w.json'), 'utf8'))));
    },
  };
}

function loopCfg(partial: Partial<LoopConfig> = {}): LoopConfig {
  return { epochs: 10, batchSize: 4, microBatchSize: 0, lr: 0.01, warmupSteps: 0, weightDecay: 0, gradClip: 0, seed: 1, checkpointEverySteps: 2, maxSteps: 0, dropLast: true, ...partial };
}

test('a run whose loss rises far above its start stops with DivergenceError (threshold in the config; 0 = off)', async () => {
  const rising = (s: number) => (s < 4 ? 5 : 5 * 2 ** (s - 3)); // 5, 5, 5, 5, 10, 20, 40, ...
  const task = scriptedTask(rising);
  const dir = tmp();
  await assert.rejects(runTraining(task, loopCfg({ divergenceFactor: 3 }), dir, { write: () => {} }), (e: Error) => {
    assert.equal(e.name, 'DivergenceError');
    assert.match(e.message, /training diverged at step \d+: the training loss .* more than 3 times its starting value/);
    assert.match(e.message, /divergenceFactor/);
    // checkpoints every 2 steps: one was written before the divergence, and the message says it is kept
    assert.match(e.message, /its last checkpoint, from before step \d+, is kept/);
    return true;
  });
  task.w.dispose();
  // diverging before the first checkpoint: the message does not promise one
  const early = scriptedTask((st: number) => (st < 1 ? 5 : 500));
  await assert.rejects(runTraining(early, loopCfg({ divergenceFactor: 3, checkpointEverySteps: 50 }), tmp(), { write: () => {} }), (e: Error) => {
    assert.equal(e.name, 'DivergenceError');
    assert.match(e.message, /has no checkpoint yet/);
    assert.doesNotMatch(e.message, /last checkpoint/);
    return true;
  });
  early.w.dispose();
  // off: the same run completes
  const off = scriptedTask(rising);
  const s = await runTraining(off, loopCfg({ divergenceFactor: 0, epochs: 3 }), tmp(), { write: () => {} });
  assert.ok(s.completed);
  off.w.dispose();
  // a loss that falls never trips it
  const falling = scriptedTask((st) => 5 / (1 + st));
  assert.ok((await runTraining(falling, loopCfg({ divergenceFactor: 3 }), tmp(), { write: () => {} })).completed);
  falling.w.dispose();
  // the config: a number > 1, or 0 = off; every profile has a value
  const base = profileConfig('smoke').mlp;
  for (const p of ['paper', 'coco-cpu', 'offline', 'smoke']) assert.ok(profileConfig(p).mlp.divergenceFactor > 1 && profileConfig(p).transformer.divergenceFactor > 1, p);
  assert.deepEqual(trainProblems('mlp', { ...base, divergenceFactor: 0 }), []);
  for (const bad of [-1, 0.5, 1, NaN]) assert.ok(trainProblems('mlp', { ...base, divergenceFactor: bad }).some((x) => x.startsWith('mlp.divergenceFactor')), String(bad));
});

test('a ClipCap variant passes its divergence threshold to the training loop', () => {
  const t = { ...profileConfig('smoke').mlp, divergenceFactor: 4.5 };
  assert.equal(loopConfigFor(t, 100, 0).divergenceFactor, 4.5);
  assert.equal(loopConfigFor({ ...t, divergenceFactor: 0 }, 100, 0).divergenceFactor, 0);
});

test('a damaged checkpoint is refused naming the file and the fix (delete checkpoint/ to restart, or restore it)', async () => {
  const task = scriptedTask(() => 2);
  const dir = tmp();
  await runTraining(task, loopCfg({ maxSteps: 3 }), dir, { write: () => {} });
  const state = path.join(dir, 'checkpoint', 'state.json');
  fs.writeFileSync(state, '{"step": 3, "epochTr');
  await assert.rejects(runTraining(task, loopCfg(), dir, { write: () => {} }), (e: Error) => {
    assert.ok(e.message.includes(state), e.message);
    assert.match(e.message, /delete .*checkpoint.* (restart|start over)/);
    assert.match(e.message, /restore/);
    return true;
  });
  task.w.dispose();
});

test('a truncated JPEG is rejected as "truncated or damaged JPEG", whatever the decoder says', async () => {
  const dir = tmp();
  const w = 64;
  const raw = Buffer.alloc(w * w * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7919 + (i >> 5) * 31) & 255;
  const full = await sharp(raw, { raw: { width: w, height: w, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
  const cut = path.join(dir, 'cut.jpg');
  fs.writeFileSync(cut, full.subarray(0, Math.floor(full.length * 0.6)));
  await assert.rejects(decodeImage(cut), (e: Error) => e.message.includes(cut) && /truncated or damaged JPEG/.test(e.message));
  const { decodeFailureReason } = await import('../src/lib/embed/encoders/image');
  assert.match(decodeFailureReason(new Uint8Array(full.subarray(0, 100)), 'Unknown error'), /truncated or damaged JPEG/);
  assert.equal(decodeFailureReason(new Uint8Array(full), 'some other problem'), 'some other problem');
  assert.match(decodeFailureReason(new Uint8Array(Buffer.from('not an image')), 'Unknown error'), /not a readable image/);
});

