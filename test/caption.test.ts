import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { ClipCapModel } from '../src/lib/model/clipcap';
import { Captioner, captionEmbeddings } from '../src/lib/eval/caption';
import { stopIds } from '../src/lib/model/tokenizer';
import { createEncoder } from '../src/lib/embed/encoders/index';
import { ensureRandomClip, TINY_CLIP_SPEC } from '../src/lib/embed/encoders/tiny-clip';
import { GPT2 } from '../src/lib/model/gpt2';
import { saveLanguageModel } from '../src/lib/model/gpt2-hf';
import { createMapper, defaultMapperConfig } from '../src/lib/model/mapper';
import { saveRunWeights, loadRun, type RunConfig } from '../src/lib/run/run';
import { loadTokenizer, restrictTokenizer, RestrictedVocab } from '../src/lib/model/tokenizer';
import { profileConfig } from '../src/lib/config';

const root = path.resolve(__dirname, '..');

/** A complete (random-weight) run directory: tiny CLIP, tiny restricted-vocabulary GPT-2, MLP mapper. */
async function makeRun(): Promise<{ runDir: string; image: string; dim: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-caption-'));
  const clipDir = await ensureRandomClip(path.join(dir, 'clip'), TINY_CLIP_SPEC);
  const encCfg = { kind: 'clip' as const, modelId: clipDir, quantized: false, batchSize: 1, workers: 1 };
  const enc = await createEncoder(encCfg, { models: path.join(dir, 'models') });
  const dim = enc.dim;
  await enc.dispose();
  const base = await loadTokenizer();
  const tok = restrictTokenizer(base, RestrictedVocab.fromCorpus([base.encode('A red circle on a blue background.')], [base.eosId]));
  const lmCfg = { vocabSize: tok.vocabSize, nPositions: 32, nEmbd: 16, nLayer: 1, nHead: 2, layerNormEpsilon: 1e-5, activation: 'gelu_new' as const, embdPdrop: 0, residPdrop: 0, attnPdrop: 0 };
  const lmDir = path.join(dir, 'lm');
  const lm = new GPT2(lmCfg, undefined, { seed: 3 });
  await saveLanguageModel({ model: lm, tokenizer: tok }, lmDir);
  const mapperCfg = defaultMapperConfig({ kind: 'mlp', inputDim: dim, embedDim: 16, prefixLength: 2 });
  const model = new ClipCapModel(lm, createMapper(mapperCfg, 4), true);
  const runDir = path.join(dir, 'run');
  await saveRunWeights(model, path.join(runDir, 'final'));
  const p = profileConfig('smoke');
  const config: RunConfig = {
    format: 'clipcap-run/1',
    profile: 'smoke',
    name: 'caption_test',
    train: { ...p.mlp, prefixLength: 2 },
    loop: { epochs: 1, batchSize: 1, microBatchSize: 0, lr: 0, warmupSteps: 0, weightDecay: 0, gradClip: 0, seed: 1, checkpointEverySteps: 1, maxSteps: 0, dropLast: true },
    mapper: mapperCfg,
    encoder: { name: 'tiny', embeddingsDir: path.join(dir, 'emb'), dim, config: encCfg },
    lm: { source: lmDir, config: lmCfg, vocabSize: tok.vocabSize, restrictedVocab: true },
    data: { trainExamples: 0, valExamples: 0, trainImages: 0, valImages: 0, skippedNoEmbedding: 0, subsetsDir: '' },
    backend: 'cpu',
    createdAt: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(runDir, 'config.json'), JSON.stringify(config));
  model.mapper.dispose();
  lm.dispose();
  const image = path.join(dir, 'shape.png');
  await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toFile(image);
  return { runDir, image, dim };
}

test('a run captions image files in process and through `clipcap caption`, with the same result', async () => {
  const { runDir, image } = await makeRun();
  const cap = await Captioner.open(runDir);
  let inProcess: string;
  try {
    // the decoding `clipcap caption` uses for this run (the smoke profile's MLP decoding: consensus of beams and samples)
    const { decodingFor } = await import('../src/cli/caption');
    const [r] = await cap.caption([image], decodingFor('smoke', { beam: 2, 'max-new-tokens': 5 }, 'mlp'));
    assert.equal(r.file, image);
    assert.equal(typeof r.caption, 'string');
    inProcess = r.caption!;
    // the decoding stops at the period: '.' is a stop token of the run's tokenizer
    assert.equal(stopIds(cap.run.tokenizer).length, 1);
  } finally {
    await cap.dispose();
  }
  const out = spawnSync(process.execPath, [path.join(root, 'bin', 'clipcap.js'), 'caption', '--run', runDir, '--beam', '2', '--max-new-tokens', '5', '--json', image], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const parsed = JSON.parse(out.stdout.trim().split('\n').pop()!) as { file: string; caption: string }[];
  assert.deepEqual(parsed, [{ file: image, caption: inProcess }]);
  // one bad file among good ones: every readable file is captioned, each bad one reported, exit 1
  const notImage = path.join(runDir, 'notes.jpg');
  fs.writeFileSync(notImage, 'not a photo');
  const dirJpg = path.join(runDir, 'folder.jpg');
  fs.mkdirSync(dirJpg, { recursive: true });
  const args = ['caption', '--run', runDir, '--beam', '2', '--max-new-tokens', '5'];
  const bad = spawnSync(process.execPath, [path.join(root, 'bin', 'clipcap.js'), ...args, image, path.join(runDir, 'nope.jpg'), dirJpg, notImage, image], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.deepEqual(bad.stdout.trim().split('\n').filter((l) => l.includes('\t')), [`${image}\t${inProcess}`, `${image}\t${inProcess}`]);
  assert.match(bad.stderr, /nope\.jpg: no such file/);
  assert.match(bad.stderr, /folder\.jpg: is a directory, not an image file/);
  assert.match(bad.stderr, /notes\.jpg: cannot be read as an image/);
  const badJson = spawnSync(process.execPath, [path.join(root, 'bin', 'clipcap.js'), ...args, '--json', path.join(runDir, 'nope.jpg'), image], { encoding: 'utf8' });
  assert.equal(badJson.status, 1);
  const rows = JSON.parse(badJson.stdout.trim().split('\n').pop()!) as { file: string; caption?: string; error?: string }[];
  assert.match(rows[0].error!, /no such file/);
  assert.equal(rows[1].caption, inProcess);
  const noRun = spawnSync(process.execPath, [path.join(root, 'bin', 'clipcap.js'), 'caption', '--run', 'no_such_run', image], { encoding: 'utf8' });
  assert.match(noRun.stderr, /no ClipCap run at "no_such_run"/);
});

test('batched greedy captions equal one-at-a-time captions; a wrong embedding size is a clear error', async () => {
  const { runDir, dim } = await makeRun();
  const run = await loadRun(runDir);
  try {
    const embs = [0, 1, 2].map((k) => Float32Array.from({ length: dim }, (_, i) => Math.sin(i + k)));
    const g = captionEmbeddings(run, embs, { beam: 1, maxNewTokens: 6 });
    assert.equal(g.length, 3);
    const one = embs.map((e) => captionEmbeddings(run, [e], { beam: 1, maxNewTokens: 6 })[0]);
    assert.deepEqual(g, one);
    assert.throws(() => captionEmbeddings(run, [new Float32Array(dim + 1)], { beam: 1, maxNewTokens: 3 }), /has \d+ values; the run's encoder gives/);
  } finally {
    run.dispose();
  }
});

test('consensus decoding: each photo\'s caption is one of its beams and samples, the same alone as in a batch, reproducible', async () => {
  const { runDir, dim } = await makeRun();
  const run = await loadRun(runDir);
  try {
    const embs = [0, 1, 2].map((k) => Float32Array.from({ length: dim }, (_, i) => Math.sin(i * (k + 1))));
    const d = { beam: 3, maxNewTokens: 6, mbrSamples: 5, mbrTemperature: 1.5 };
    const g = captionEmbeddings(run, embs, d);
    assert.equal(g.length, 3);
    assert.deepEqual(captionEmbeddings(run, embs, d), g, 'reproducible');
    assert.deepEqual(embs.map((e) => captionEmbeddings(run, [e], d)[0]), g, 'alone == in a batch');
    // the chosen caption is the consensus of the photo's own pool: the best beam and the samples' support
    const { beamSearchBatch, sampleBatch } = await import('../src/lib/model/generate');
    const { mbrChoice } = await import('../src/lib/eval/mbr');
    const { embeddingSeed } = await import('../src/lib/eval/caption');
    const { cleanGenerated } = await import('../src/lib/model/text');
    const tf = await import('@tensorflow/tfjs');
    const e = embs[1];
    const prefix = tf.tidy(() => run.model.prefix(tf.tensor2d(e, [1, dim])));
    const base = { maxNewTokens: 6, eosId: run.tokenizer.eosId, stopIds: stopIds(run.tokenizer) };
    const beams = beamSearchBatch(run.model.lm, prefix, { ...base, beamSize: 3 })[0].map((b) => b.ids);
    const drawn = sampleBatch(run.model.lm, prefix, { ...base, samples: 5, temperature: 1.5, seeds: [embeddingSeed(e)] })[0];
    prefix.dispose();
    const pool = [...beams, ...drawn].map((ids) => (ids.length ? cleanGenerated(run.tokenizer.decode(ids)) : ''));
    assert.equal(g[1], pool[mbrChoice(pool)]);
    assert.equal(captionEmbeddings(run, [e], { ...d, mbrSamples: 0 })[0], pool[0], 'without consensus: the best beam');
    // contrastive samples: drawn against the prefix of the zero embedding (the average photo)
    const c = { ...d, mbrContrast: 0.5 };
    const gc = captionEmbeddings(run, embs, c);
    assert.deepEqual(embs.map((x) => captionEmbeddings(run, [x], c)[0]), gc, 'contrastive: alone == in a batch');
    const [p2, avg] = tf.tidy(() => [run.model.prefix(tf.tensor2d(e, [1, dim])), run.model.prefix(tf.zeros([1, dim]) as never)]);
    const drawnC = sampleBatch(run.model.lm, p2, { ...base, samples: 5, temperature: 1.5, seeds: [embeddingSeed(e)], contrast: { prefix: avg, weight: 0.5 } })[0];
    p2.dispose();
    avg.dispose();
    assert.notDeepEqual(drawnC, drawn, 'the contrast changes the samples');
    const poolC = [...beams, ...drawnC].map((ids) => (ids.length ? cleanGenerated(run.tokenizer.decode(ids)) : ''));
    assert.equal(gc[1], poolC[mbrChoice(poolC)]);
  } finally {
    run.dispose();
  }
});

test('captionWithRun in worker processes gives the captions of one process (beams, consensus with contrastive samples), in order; how many workers', async () => {
  const { captionWithRun, WORKER_CHUNK } = await import('../src/lib/eval/caption');
  const { captionWorkers, MIN_PHOTOS_FOR_WORKERS } = await import('../src/lib/machine');
  const { runDir, dim } = await makeRun();
  const n = WORKER_CHUNK + 5; // two chunks, the second one short
  const embs = new Map(Array.from({ length: n }, (_, k) => [`photo${k}`, Float32Array.from({ length: dim }, (_, i) => Math.sin(i * 0.37 * (k + 1)))]));
  const ids = [...embs.keys()];
  for (const d of [{ beam: 2, maxNewTokens: 5, mbrSamples: 4, mbrTemperature: 1.2, mbrContrast: 0.3, contrastWeight: 0.2 }]) {
    const ticks: number[] = [];
    const one = await captionWithRun(runDir, ids, d, { embeddings: (id) => embs.get(id)!, workers: 1 });
    const two = await captionWithRun(runDir, ids, d, { embeddings: (id) => embs.get(id)!, workers: 2, onChunk: (k) => ticks.push(k) });
    assert.deepEqual([...two.entries()], [...one.entries()], `workers == one process (${JSON.stringify(d)})`);
    assert.equal(ticks.reduce((a, b) => a + b, 0), n, 'progress counts every photo');
    assert.ok(new Set(one.values()).size > 1, 'the photos get different captions');
  }
  await assert.rejects(captionWithRun(path.join(runDir, 'missing'), ids, { beam: 1, maxNewTokens: 3 }, { embeddings: (id) => embs.get(id)!, workers: 2 }));
  assert.equal(captionWorkers(MIN_PHOTOS_FOR_WORKERS - 1, 'wasm', { cores: 2, env: {} }), 1, 'few photos: this process');
  assert.equal(captionWorkers(1000, 'wasm', { cores: 2, env: {} }), 2);
  assert.equal(captionWorkers(1000, 'tensorflow', { cores: 8, env: {} }), 1, 'a native backend: one process');
  assert.equal(captionWorkers(1000, 'wasm', { cores: 2, env: { CLIPCAP_CAPTION_WORKERS: '3' } }), 3);
  assert.throws(() => captionWorkers(1000, 'wasm', { cores: 2, env: { CLIPCAP_CAPTION_WORKERS: '0' } }), /CLIPCAP_CAPTION_WORKERS/);
});

test('a run records the weights of its language model; loading it after that model changed is refused, naming both hashes and the fix', async () => {
  const { runDir } = await makeRun();
  const cfgFile = path.join(runDir, 'config.json');
  const config = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as RunConfig;
  const { loadLanguageModel } = await import('../src/lib/model/gpt2-hf');
  const { weightsFingerprint } = await import('../src/lib/io/weights');
  const lm = await loadLanguageModel(config.lm.source);
  config.lm.fingerprint = weightsFingerprint(lm.model.namedWeights());
  fs.writeFileSync(cfgFile, JSON.stringify(config));
  (await loadRun(runDir)).dispose(); // the same model: loads
  // the language model is pretrained again (other weights, same place)
  const other = new GPT2(lm.model.config, undefined, { seed: 99 });
  await saveLanguageModel({ model: other, tokenizer: lm.tokenizer }, config.lm.source);
  other.dispose();
  lm.model.dispose();
  await assert.rejects(loadRun(runDir), new RegExp(`trained on the language model .* with weights ${config.lm.fingerprint}, but its weights are now [0-9a-f]{16} .*Retrain the run`));
});

test('clipcap caption on a run whose mapper holds NaN exits 1 with one line naming the file and the tensor (issue 19)', async () => {
  const { runDir, image } = await makeRun();
  const { writeSafetensors } = await import('../src/lib/io/safetensors');
  const { parseSafetensors, toFloat32 } = await import('../src/lib/io/safetensors');
  const mf = path.join(runDir, 'final', 'mapper.safetensors');
  const parsed = parseSafetensors(new Uint8Array(fs.readFileSync(mf)), mf);
  const tensors = new Map([...parsed.tensors].map(([k, e]) => [k, { shape: e.shape, data: toFloat32(e) }]));
  const name = [...tensors.keys()][0];
  tensors.get(name)!.data.fill(NaN);
  writeSafetensors(mf, tensors, parsed.metadata);
  for (const beam of ['1', '3']) {
    const out = spawnSync(process.execPath, [path.join(root, 'bin', 'clipcap.js'), 'caption', '--run', runDir, '--beam', beam, '--max-new-tokens', '5', image], { encoding: 'utf8' });
    assert.equal(out.status, 1, `beam ${beam}: ${out.stdout}`);
    assert.equal(out.stdout.trim(), '', 'no caption is printed');
    const lines = out.stderr.trim().split('\n');
    assert.equal(lines.length, 1, out.stderr);
    assert.ok(lines[0].includes(mf) && lines[0].includes(name), lines[0]);
  }
});

test('clipcap caption decodes as notebook 06 does for the run\'s profile, each option overriding one setting, bad values refused', async () => {
  const { decodingFor } = await import('../src/cli/caption');
  const { profileConfig } = await import('../src/lib/config');
  const off = profileConfig('offline').eval;
  const d = decodingFor('offline', {});
  assert.deepEqual(d, { beam: off.beam, maxNewTokens: off.maxNewTokens, noRepeatNgram: off.noRepeatNgram, lengthPenalty: off.lengthPenalty, contrastWeight: off.contrastWeight, mbrSamples: off.mbrSamples, mbrTemperature: off.mbrTemperature, mbrContrast: off.mbrContrast });
  assert.equal(d.noRepeatNgram, 3, 'the offline profile evaluates without repeated 3-grams');
  const o = decodingFor('offline', { beam: 1, 'no-repeat-ngram': 0, 'length-penalty': 0.5, contrast: 0.2, 'max-new-tokens': 7, 'mbr-samples': 9, 'mbr-temperature': 0.5, 'mbr-contrast': 0.4 });
  assert.deepEqual(o, { beam: 1, maxNewTokens: 7, noRepeatNgram: 0, lengthPenalty: 0.5, contrastWeight: 0.2, mbrSamples: 9, mbrTemperature: 0.5, mbrContrast: 0.4 });
  assert.throws(() => decodingFor('offline', { 'mbr-contrast': 1 }), /mbrContrast/);
  assert.throws(() => decodingFor('offline', { 'mbr-temperature': 0 }), /mbrTemperature/);
  assert.throws(() => decodingFor('offline', { 'mbr-samples': 1.5 }), /mbrSamples/);
  assert.equal(decodingFor('smoke', {}).beam, profileConfig('smoke').eval.beam);
  assert.throws(() => decodingFor('offline', { contrast: 1 }), /contrastWeight/);
  assert.throws(() => decodingFor('offline', { beam: 0 }), /beam/);
  // the run's variant: eval.byVariant applies (offline: the transformer run samples at its own temperature), options still win
  assert.equal(decodingFor('offline', {}, 'transformer').mbrTemperature, off.byVariant?.transformer?.mbrTemperature);
  assert.notEqual(off.byVariant?.transformer?.mbrTemperature, off.mbrTemperature);
  assert.equal(decodingFor('offline', {}, 'mlp').mbrTemperature, off.byVariant?.mlp?.mbrTemperature ?? off.mbrTemperature);
  assert.equal(decodingFor('smoke', {}, 'transformer').mbrTemperature, profileConfig('smoke').eval.mbrTemperature, 'no byVariant entry: the shared decoding');
  assert.equal(decodingFor('offline', { 'mbr-temperature': 0.5 }, 'transformer').mbrTemperature, 0.5);
});

test('decodeForVariant applies one variant\'s settings over the shared decoding; eval.byVariant is checked', async () => {
  const { decodeForVariant } = await import('../src/lib/eval/caption');
  const { evalProblems } = await import('../src/lib/validate');
  const { profileConfig } = await import('../src/lib/config');
  const base = { beam: 5, maxNewTokens: 30, noRepeatNgram: 3, lengthPenalty: 1, contrastWeight: 0, mbrSamples: 0, mbrTemperature: 1, mbrContrast: 0 };
  const e = { ...base, byVariant: { mlp: { contrastWeight: 0.3 }, transformer: { beam: 3 } } };
  assert.deepEqual(decodeForVariant(e, 'mlp'), { ...base, contrastWeight: 0.3 });
  assert.deepEqual(decodeForVariant(e, 'transformer'), { ...base, beam: 3 });
  assert.deepEqual(decodeForVariant(base, 'mlp'), base);
  const ok = { ...profileConfig('offline').eval };
  assert.deepEqual(evalProblems(ok), []);
  assert.deepEqual(evalProblems({ ...ok, byVariant: { mlp: { contrastWeight: 1 } } }), ['eval.byVariant.mlp.contrastWeight = 1: must be a number in [0, 1)']);
  assert.match(evalProblems({ ...ok, byVariant: { lstm: {} } } as never).join(), /eval\.byVariant\.lstm: not a variant/);
  assert.match(evalProblems({ ...ok, byVariant: { mlp: { temperature: 2 } } } as never).join(), /eval\.byVariant\.mlp\.temperature: not a decoding setting/);
});
