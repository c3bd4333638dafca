import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { selectBackend, type BackendCandidate, type BackendName } from '../src/lib/tfjs/backend';
import { settings } from '../src/lib/settings';
import { profileConfig, configRows, PROFILE_NAMES } from '../src/lib/config';
import { resolveProfile, resolveProfileName, checkPaperOnCpu } from '../src/lib/profile';
import { hubReachable, probeNativeGpu } from '../src/lib/machine';
import { startHubServer } from './helpers/hub-server';
import { Progress, formatDuration } from '../src/lib/util/progress';
import { writeFileAtomic, writeJsonAtomic, readJson, cleanStaleTemps, buildDirAtomic } from '../src/lib/util/files';
import { artifactPaths, mirrorDir, requireMirrorDir } from '../src/lib/paths';

function fakes(available: BackendName[], log: string[]): BackendCandidate[] {
  return (['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as BackendName[]).map((name) => ({
    name,
    activate: async () => {
      log.push(name);
      if (!available.includes(name)) throw Object.assign(new Error(`Cannot find module ${name}`), { code: 'MODULE_NOT_FOUND' });
    },
  }));
}

test('backend fallback order: gpu, node, wasm, cpu', async () => {
  for (const [avail, expect] of [
    [['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'], 'tfjs-node-gpu'],
    [['tfjs-node', 'wasm', 'cpu'], 'tfjs-node'],
    [['wasm', 'cpu'], 'wasm'],
    [['cpu'], 'cpu'],
  ] as [BackendName[], BackendName][]) {
    const log: string[] = [];
    const choice = await selectBackend(fakes(avail, log), undefined);
    assert.equal(choice.name, expect);
    assert.deepEqual(log, ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'].slice(0, log.length));
    assert.equal(choice.skipped.length, log.length - 1);
    if (choice.skipped.length) assert.equal(choice.skipped[0].reason, 'not installed');
  }
  await assert.rejects(selectBackend(fakes([], []), undefined), /no TensorFlow\.js backend/);
});

test('a forced backend is the only one tried, and its failure names the fix', async () => {
  const log: string[] = [];
  const c = await selectBackend(fakes(['tfjs-node-gpu', 'wasm', 'cpu'], log), 'wasm');
  assert.equal(c.name, 'wasm');
  assert.deepEqual(log, ['wasm']);
  await assert.rejects(selectBackend(fakes(['cpu'], []), 'tfjs-node-gpu'), /CLIPCAP_BACKEND=tfjs-node-gpu.*npm install @tensorflow\/tfjs-node-gpu/);
  const backend = (v: string | undefined) => settings({ CLIPCAP_BACKEND: v }).backend;
  assert.equal(backend(undefined), undefined);
  assert.equal(backend('auto'), undefined);
  assert.equal(backend('GPU'), 'tfjs-node-gpu');
  assert.throws(() => backend('tpu'), /not a backend/);
});

test('profiles: paper carries the original ClipCap hyperparameters; unknown names are rejected', async () => {
  const p = profileConfig('paper');
  assert.equal(p.mlp.prefixLength, 10);
  assert.equal(p.mlp.batchSize, 40);
  assert.equal(p.mlp.lr, 2e-5);
  assert.equal(p.mlp.warmupSteps, 5000);
  // transformers.AdamW(lr=2e-5) as the original: eps 1e-6, no weight decay; the warm-up keeps the
  // original's share of training (5,000 of 141,680 steps), warmupFraction 0 gives the literal 5,000
  assert.equal(p.mlp.adamEps, 1e-6);
  assert.equal(p.mlp.weightDecay, 0);
  assert.ok(Math.abs(p.mlp.warmupFraction - 0.0353) < 1e-4);
  assert.equal(p.mlp.epochs, 10);
  assert.equal(p.mlp.finetuneLM, true);
  assert.equal(p.transformer.finetuneLM, false);
  assert.equal(p.transformer.numLayers, 8);
  assert.equal(p.transformer.prefixLength, 40);
  assert.equal(p.data.trainCaptions, 33841);
  assert.equal(p.data.valCaptions, 12505);
  assert.equal(p.data.evalImages, 193);
  assert.equal(p.encoder.modelId, 'Xenova/clip-vit-base-patch32');
  assert.equal(p.lm.modelId, 'gpt2');
  assert.throws(() => profileConfig('fast'), /unknown profile "fast".*paper, coco-cpu, offline, smoke/);
  // a fresh copy each time: editing one does not leak into the next
  p.mlp.epochs = 1;
  assert.equal(profileConfig('paper').mlp.epochs, 10);
  for (const n of PROFILE_NAMES) assert.ok(configRows(profileConfig(n)).length > 20);
});

const noGpu = () => ({ gpu: false, detail: 'test: no GPU backend' });
const gpu = () => ({ gpu: true, detail: 'test: a GPU backend' });

test('profile resolution: env wins, else paper only with a GPU backend, coco-cpu with the hub but no GPU, offline without the hub', async () => {
  const yes = async () => true;
  const no = async () => false;
  assert.equal(await resolveProfileName({ CLIPCAP_PROFILE: 'smoke' }, { reachable: yes, gpu: noGpu }), 'smoke');
  assert.equal(await resolveProfileName({}, { reachable: yes, gpu }), 'paper');
  assert.equal(await resolveProfileName({}, { reachable: yes, gpu: noGpu }), 'coco-cpu');
  assert.equal(await resolveProfileName({}, { reachable: no, gpu }), 'offline');
  assert.equal(await resolveProfileName({ HF_HUB_OFFLINE: '1' }, { reachable: yes, gpu }), 'offline');
  await assert.rejects(resolveProfileName({ CLIPCAP_PROFILE: 'nope' }, { reachable: yes }), /CLIPCAP_PROFILE=nope is not a profile/);
});

test('auto profile with a loopback hub and no GPU backend is coco-cpu; with the hub gone it is offline', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-hub-'));
  const hub = await startHubServer(root);
  const choiceFile = path.join(root, 'profile.json');
  try {
    const env = { CLIPCAP_HUB_URL: hub.url, CLIPCAP_BACKEND: 'wasm' };
    assert.equal(await hubReachable(env), true);
    // the real GPU probe: CLIPCAP_BACKEND=wasm rules the GPU out without loading anything
    assert.deepEqual(probeNativeGpu(env), { gpu: false, detail: 'CLIPCAP_BACKEND=wasm' });
    const p = await resolveProfile(env, { choiceFile, quiet: true });
    assert.equal(p.name, 'coco-cpu');
    assert.equal(p.lm.modelId, 'gpt2');
    assert.equal(p.encoder.modelId, 'Xenova/clip-vit-base-patch32');
    assert.match(JSON.parse(fs.readFileSync(choiceFile, 'utf8')).reason, /hub was reachable but no native GPU backend loads \(CLIPCAP_BACKEND=wasm\)/);
    assert.ok(hub.requests.length >= 1, 'the reachability check asked the loopback hub');
  } finally {
    await hub.close();
  }
  fs.rmSync(choiceFile);
  assert.equal(await hubReachable({ CLIPCAP_HUB_URL: hub.url }), false);
  assert.equal((await resolveProfile({ CLIPCAP_HUB_URL: hub.url }, { choiceFile, quiet: true })).name, 'offline');
});

test('the paper profile on a CPU backend is refused with an estimate unless confirmed', () => {
  assert.throws(() => checkPaperOnCpu('paper', {}, { gpu: noGpu }), /paper profile without a GPU backend \(test: no GPU backend\) takes .*CLIPCAP_PROFILE=coco-cpu.*set CLIPCAP_CONFIRM_PAPER_ON_CPU=1/s);
  assert.match(checkPaperOnCpu('paper', { CLIPCAP_CONFIRM_PAPER_ON_CPU: '1' }, { gpu: noGpu })!, /Starting anyway/);
  assert.equal(checkPaperOnCpu('paper', {}, { gpu }), null);
  assert.equal(checkPaperOnCpu('coco-cpu', {}, { gpu: noGpu }), null);
});

test('profile choice is recorded once and then stable across notebooks and kernel restarts; CLIPCAP_PROFILE still wins', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-profile-'));
  const choiceFile = path.join(dir, 'data', 'profile.json');
  const opts = (reachable: boolean) => ({ choiceFile, reachable: async () => reachable, gpu: noGpu, quiet: true });
  assert.equal((await resolveProfile({}, opts(false))).name, 'offline');
  const rec = JSON.parse(fs.readFileSync(choiceFile, 'utf8'));
  assert.equal(rec.profile, 'offline');
  assert.match(rec.reason, /not reachable/);
  // the hub comes back: the recorded choice still holds (a new kernel, the next notebook)
  assert.equal((await resolveProfile({}, opts(true))).name, 'offline');
  assert.equal((await resolveProfile({ CLIPCAP_PROFILE: 'smoke' }, opts(true))).name, 'smoke');
  fs.rmSync(choiceFile);
  assert.equal((await resolveProfile({}, opts(true))).name, 'coco-cpu');
  assert.equal((await resolveProfile({}, opts(false))).name, 'coco-cpu', 'recorded: the next notebook keeps it');
  fs.writeFileSync(choiceFile, JSON.stringify({ profile: 'fast', reason: 'x', at: 'y' }));
  await assert.rejects(resolveProfile({}, opts(true)), /records an unknown profile "fast": delete it to choose again/);
});

test('progress reports rate and ETA', () => {
  let t = 0;
  const lines: string[] = [];
  const p = new Progress({ total: 100, label: 'x', unit: 'img', intervalMs: 0, now: () => t, write: (l) => lines.push(l) });
  t = 10_000;
  p.tick(50, { loss: 1.2345 });
  assert.equal(p.rate(), 5);
  assert.equal(p.eta(), 10);
  assert.match(lines.at(-1)!, /x  50% 50\/100 img \| 5\.00 img\/s \| elapsed 10s \| ETA 10s \| loss=1\.23[45]/);
  t = 20_000;
  p.tick(50);
  assert.match(lines.at(-1)!, /100% 100\/100/);
  assert.equal(formatDuration(3725), '1h02m');
});

test('atomic writes leave either the old or the new file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-fs-'));
  const f = path.join(dir, 'a', 'b.json');
  writeJsonAtomic(f, { v: 1 });
  assert.deepEqual(readJson(f), { v: 1 });
  writeFileAtomic(f, '{"v":2}');
  assert.deepEqual(readJson(f), { v: 2 });
  fs.writeFileSync(f + '.tmp-123-abc-1', 'partial');
  assert.equal(cleanStaleTemps(path.dirname(f)), 1);
  assert.deepEqual(fs.readdirSync(path.dirname(f)), ['b.json']);
  fs.writeFileSync(path.join(dir, 'bad.json'), '{oops');
  assert.throws(() => readJson(path.join(dir, 'bad.json')), /bad\.json is not valid JSON/);
  const target = path.join(dir, 'out');
  await buildDirAtomic(target, (t) => fs.writeFileSync(path.join(t, 'x'), '1'));
  await assert.rejects(buildDirAtomic(target, () => { throw new Error('boom'); }), /boom/);
  assert.equal(fs.readFileSync(path.join(target, 'x'), 'utf8'), '1');
});

test('paths: smoke keeps its report and figures under data/smoke; the mirror honours CLIPCAP_DATA_DIR', () => {
  const a = artifactPaths('smoke', '/r');
  assert.equal(a.report, '/r/data/smoke/REPORT.md');
  assert.equal(a.figures, '/r/data/smoke/figures');
  const o = artifactPaths('offline', '/r');
  assert.equal(o.report, '/r/REPORT.md');
  assert.equal(o.figures, '/r/figures');
  assert.equal(mirrorDir({ CLIPCAP_DATA_DIR: '/x/y' }), '/x/y');
  assert.throws(() => requireMirrorDir({ CLIPCAP_DATA_DIR: '/no/such/dir' }), /CLIPCAP_DATA_DIR=\/no\/such\/dir does not exist/);
});
