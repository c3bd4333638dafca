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
    [(p) => (p.mlp.name = '../x'), /mlp\.name = "\.\.\/x": use letters, digits/],
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
