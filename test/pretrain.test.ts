import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { packCaptionGroups, pretrainLM } from '../src/lib/train/pretrain';
import { profileConfig } from '../src/lib/config';
import { ensureBackend } from '../src/lib/tfjs/backend';

const EOS = 99;

test('packCaptionGroups: the captions of a photo in order, EOS between, at most n captions and maxLength tokens a sequence', () => {
  const seqs = [[1, 2], [10], [3], [11, 12], [4, 5, 6], [20]];
  const groups = ['a', 'b', 'a', 'b', 'a', 'c'];
  // one caption a sequence: unchanged
  assert.deepEqual(packCaptionGroups(seqs, groups, { perSequence: 1, maxLength: 63, eosId: EOS }), seqs);
  // groups in the order of their first caption; a's three captions split 2 + 1
  assert.deepEqual(packCaptionGroups(seqs, groups, { perSequence: 2, maxLength: 63, eosId: EOS }), [[1, 2, EOS, 3], [4, 5, 6], [10, EOS, 11, 12], [20]]);
  assert.deepEqual(packCaptionGroups(seqs, groups, { perSequence: 5, maxLength: 63, eosId: EOS }), [[1, 2, EOS, 3, EOS, 4, 5, 6], [10, EOS, 11, 12], [20]]);
  // the length limit: [1, 2, EOS, 3] is 4 tokens; adding EOS 4 5 6 would make 8 > 7
  assert.deepEqual(packCaptionGroups(seqs, groups, { perSequence: 5, maxLength: 7, eosId: EOS }), [[1, 2, EOS, 3], [4, 5, 6], [10, EOS, 11, 12], [20]]);
  // every token of every caption is kept, once
  const packed = packCaptionGroups(seqs, groups, { perSequence: 3, maxLength: 5, eosId: EOS });
  assert.deepEqual(packed.flat().filter((t) => t !== EOS).sort((x, y) => x - y), seqs.flat().sort((x, y) => x - y));
  assert.ok(packed.every((s) => s.length <= 5));
  assert.throws(() => packCaptionGroups(seqs, ['a'], { perSequence: 2, maxLength: 63, eosId: EOS }), /6 captions but 1 groups/);
  assert.throws(() => packCaptionGroups([[1, 2, 3]], ['a'], { perSequence: 2, maxLength: 2, eosId: EOS }), /3 tokens exceeds the longest sequence, 2/);
});

test('LM pretraining with captionsPerSequence 2: sequences of a photo\'s captions; without the photos, a clear error', async () => {
  await ensureBackend({ quiet: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-lmdoc-'));
  const q = profileConfig('smoke');
  const texts = ['a red circle', 'a round red shape', 'a green square', 'a square in green', 'a blue circle', 'a round blue shape'];
  const groups = ['p:1', 'p:1', 'p:2', 'p:2', 'p:3', 'p:3'];
  const cfg = { ...q.lmPretrain, epochs: 1, batchSize: 2, valFraction: 0.34, captionsPerSequence: 2 };
  const base = { arch: q.lm.arch, cfg, texts, restrictVocab: true, modelDir: path.join(dir, 'model'), runDir: path.join(dir, 'run'), run: { write: () => {} } };
  await assert.rejects(pretrainLM(base), /captionsPerSequence 2 packs the captions of a photo together: pass the photo of each caption \(groups, 0 given for 6 captions\)/);
  const r = await pretrainLM({ ...base, groups });
  assert.ok(r.summary.completed);
  assert.equal(r.corpus.captions, 6);
  // three photos, two captions each: three sequences, one of them held out
  assert.deepEqual([r.corpus.trainSequences, r.corpus.valSequences], [2, 1]);
  // tokens: every caption token, one EOS between the two captions of a sequence and one at its end
  const alone = await pretrainLM({ ...base, cfg: { ...cfg, captionsPerSequence: 1 }, modelDir: path.join(dir, 'm1'), runDir: path.join(dir, 'r1') });
  assert.deepEqual([alone.corpus.trainSequences, alone.corpus.valSequences], [4, 2]);
  assert.equal(r.corpus.tokens, alone.corpus.tokens);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('REPORT names the packing of the LM pretraining from its pretrain.json, and nothing for a caption a sequence', async () => {
  const { lmPacking } = await import('../src/lib/notebook/report-sections');
  const base = { summary: { finalTrainLoss: 1, finalValLoss: 1, trainSeconds: 1, steps: 1 }, corpus: { captions: 100, tokens: 1000, vocabSize: 50, trainSequences: 30, valSequences: 2 }, config: { nLayer: 1, nEmbd: 8, nHead: 1, vocabSize: 50 } };
  assert.equal(lmPacking({ ...base, settings: { pretrain: { captionsPerSequence: 5 } } }), '; the captions of a photo packed into one sequence, up to 5, 32 sequences');
  assert.equal(lmPacking({ ...base, settings: { pretrain: { captionsPerSequence: 1 } } }), '');
  assert.equal(lmPacking(base), '');
});
