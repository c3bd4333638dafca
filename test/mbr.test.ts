import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { consensusScores, mbrChoice } from '../src/lib/eval/mbr';
import { ciderVector, ciderScoreOf, ngramCounts } from '../src/lib/eval/metrics/cider';
import { pySplit } from '../src/lib/eval/metrics/pysplit';
import { tokenizeCaption } from '../src/lib/eval/metrics/tokenize';

test('consensusScores: each candidate\'s CIDEr-D against the rest of the pool with every n-gram weighted alike (metrics/cider.ts reference)', () => {
  const pool = ['A dog runs on the grass.', 'A brown dog runs through the grass.', 'A dog is running on grass.', 'Two people sit on a bench.', 'A dog runs on the grass.'];
  const got = consensusScores(pool);
  const tok = pool.map((c) => tokenizeCaption(c));
  const uniform = new Map<string, number>(); // df 0 for every n-gram, log(#docs) = log 2: the same weight for all
  tok.forEach((c, i) => {
    const vec = (s: string) => ciderVector(ngramCounts(pySplit(s)), uniform, Math.log(2));
    const refs = tok.filter((_, j) => j !== i).map(vec);
    assert.ok(Math.abs(got[i] - ciderScoreOf(vec(c), refs)) < 1e-9, `candidate ${i}: ${got[i]} vs ${ciderScoreOf(vec(c), refs)}`);
  });
});

test('mbrChoice: the caption with the most support wins (copies vote), the outlier never; ties go to the first; an empty pool is an error', () => {
  const pool = ['a cat sleeps on a red sofa', 'a dog runs on the grass', 'a dog runs on the grass', 'a brown dog runs on the grass', 'a man rides a bike'];
  assert.equal(mbrChoice(pool), 1);
  const s = consensusScores(pool);
  assert.ok(s[1] === s[2] && s[1] > s[3] && s[3] > s[0] && s[3] > s[4], `scores ${[...s]}`);
  assert.equal(mbrChoice(['a dog', 'a dog']), 0);
  assert.equal(mbrChoice(['only one']), 0);
  assert.throws(() => mbrChoice([]), /empty pool/);
});
