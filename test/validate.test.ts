// Configuration validation (src/lib/validate.ts): every profile is valid as shipped; each bad value
// the probes found is refused before any work, naming the field, the value and the allowed range.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { PROFILE_NAMES, profileConfig } from '../src/lib/config';
import { buildSubsets } from '../src/lib/data/build';
import { trainVariant } from '../src/lib/train/run';
import { pretrainLM } from '../src/lib/train/pretrain';
import { ConfigError, profileProblems, validateProfile } from '../src/lib/validate';

test('every shipped profile is valid', () => {
  for (const n of PROFILE_NAMES) assert.deepEqual(profileProblems(profileConfig(n)), [], n);
});

test('bad values are refused with the field, the value and what is allowed', () => {
  const cases: [(p: ReturnType<typeof profileConfig>) => void, RegExp][] = [
    [(p) => (p.mlp.batchSize = 0), /mlp\.batchSize = 0: must be a whole number in \[1, 65536\]/],
    [(p) => (p.mlp.batchSize = -4), /mlp\.batchSize = -4/],
    [(p) => (p.transformer.epochs = 0), /transformer\.epochs = 0: must be a whole number in \[1, 10000\]/],
    [(p) => (p.mlp.lr = -1e-3), /mlp\.lr = -0\.001: must be a number in \(0, 10\]/],
    [(p) => (p.mlp.lr = NaN), /mlp\.lr = NaN/],
    [(p) => (p.data.evalImages = -1), /data\.evalImages = -1: must be a whole number in \[0, ∞\]/],
    [(p) => (p.mlp.prefixLength = 0), /mlp\.prefixLength = 0: must be a whole number in \[1, 4096\]/],
    [(p) => (p.eval.beam = 2.5), /eval\.beam = 2\.5: must be a whole number/],
    [(p) => (p.mlp.name = '../x'), /mlp\.name = "\.\.\/x": must be a single plain folder name/],
    [(p) => ((p.mlp as { mapper: string }).mapper = 'lstm'), /mlp\.mapper = "lstm": must be one of "mlp", "transformer"/],
  ];
  for (const [edit, re] of cases) {
    const p = profileConfig('smoke');
    edit(p);
    assert.throws(() => validateProfile(p), (e: Error) => e instanceof ConfigError && re.test(e.message), String(re));
  }
  // several problems: all of them, in one error
  const p = profileConfig('smoke');
  p.mlp.batchSize = 0;
  p.transformer.lr = -1;
  assert.throws(() => validateProfile(p), (e: ConfigError) => e.problems.length === 2);
});

test('the stages refuse a bad config before doing any work', async () => {
  const p = profileConfig('smoke');
  p.data.evalImages = -3;
  await assert.rejects(buildSubsets(p, { root: '/nonexistent-root' }), /data\.evalImages = -3/);
  const q = profileConfig('smoke');
  await assert.rejects(trainVariant({ profile: q, train: { ...q.mlp, batchSize: 0 } }), /mlp\.batchSize = 0/);
  await assert.rejects(trainVariant({ profile: q, train: q.mlp, microBatchSize: -1 }), /microBatchSize = -1/);
  await assert.rejects(
    pretrainLM({ arch: q.lm.arch, cfg: { ...q.lmPretrain, lr: 0 }, texts: ['a b', 'c d'], restrictVocab: true, modelDir: '/nonexistent/m', runDir: '/nonexistent/r' }),
    /lmPretrain\.lr = 0: must be a number in \(0, 10\]/,
  );
});

test('LM pretraining: a finished or interrupted model is reused only with the settings it was made with', async () => {
  const fs = await import('fs');
  const os = await import('os');
  const path = await import('path');
  const { ensureBackend } = await import('../src/lib/tfjs/backend');
  await ensureBackend({ quiet: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-lm-'));
  const q = profileConfig('smoke');
  const texts = ['a red circle on a blue background', 'a green square on a white background', 'a blue circle on a red background', 'a white square on a green background'];
  const base = { arch: q.lm.arch, cfg: { ...q.lmPretrain, epochs: 1, batchSize: 2 }, texts, restrictVocab: true, modelDir: path.join(dir, 'model'), runDir: path.join(dir, 'run'), run: { write: () => {} } };
  const first = await pretrainLM(base);
  assert.ok(first.summary.completed);
  // same settings: the finished model is reused as it is
  assert.deepEqual((await pretrainLM(base)).summary, first.summary);
  // other settings: refused, naming both and the fix
  await assert.rejects(pretrainLM({ ...base, cfg: { ...base.cfg, lr: 1e-3 } }), /was made with other settings .*"lr":0\.003.*"lr":0\.001.*delete .*model and .*run/s);
  // an interrupted run (no finished model) resumes only with its own settings too
  fs.rmSync(base.modelDir, { recursive: true });
  await assert.rejects(pretrainLM({ ...base, cfg: { ...base.cfg, epochs: 3 } }), /the interrupted LM pretraining in .*run was made with other settings/);
});
