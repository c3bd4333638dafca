// Evaluation sets and caption diversity (eval/evaluate.ts, eval/diversity.ts).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { captionDiversity } from '../src/lib/eval/diversity';
import { evalSets } from '../src/lib/eval/evaluate';
import type { ImageGroup } from '../src/lib/data/schema';

test('caption diversity: distinct captions (case and punctuation aside) per photo, and the words used', () => {
  const d = captionDiversity(['A dog runs.', 'a dog runs', 'A cat sits on a mat .', "The dog's ball"]);
  assert.deepEqual(d, { captions: 4, distinct: 3, share: 0.75, vocabulary: 10 }); // a dog runs cat sits on mat the dog's ball
  assert.deepEqual(captionDiversity([]), { captions: 0, distinct: 0, share: 0, vocabulary: 0 });
  // one caption for every photo: share 1/n
  assert.equal(captionDiversity(Array(10).fill('a man in a red shirt')).share, 0.1);
});

test('evaluation sets: photos grouped by source, the benchmark first, order of photos kept', () => {
  const g = (id: string, source: string): ImageGroup => ({ image_id: id, file: `/${id}.jpg`, split: 'eval', source, captions: ['x'] });
  const sets = evalSets([g('1', 'coco-mini'), g('a', 'flickr8k'), g('2', 'coco-mini'), g('b', 'flickr8k')]);
  assert.deepEqual(
    sets.map((s) => [s.key, s.label, s.groups.map((x) => x.image_id)]),
    [
      ['flickr8k-test', 'Flickr8k test', ['a', 'b']],
      ['coco-val2017', 'COCO val2017 (coco-mini)', ['1', '2']],
    ],
  );
  assert.equal(evalSets([g('s', 'synthetic')])[0].key, 'synthetic');
  assert.match(evalSets([g('m', 'flickr8k-mini')])[0].label, /flickr8k-mini/);
});

test('dev sample: the same seeded photos every time, in their order; 0 or too many = all', async () => {
  const { devSample } = await import('../src/lib/eval/dev');
  const xs = Array.from({ length: 50 }, (_, i) => `p${i}`);
  const a = devSample(xs, 10);
  assert.equal(a.length, 10);
  assert.deepEqual(devSample(xs, 10), a);
  assert.deepEqual(a, xs.filter((x) => a.includes(x)), 'original order kept');
  assert.notDeepEqual(a, xs.slice(0, 10), 'a sample, not the first photos');
  assert.deepEqual(devSample(xs, 0), xs);
  assert.deepEqual(devSample(xs, 500), xs);
});

test('describeDecode names every setting that differs from the original decoding', async () => {
  const { describeDecode } = await import('../src/lib/eval/caption');
  assert.equal(describeDecode({ beam: 5, maxNewTokens: 30 }), 'beam 5, at most 30 tokens');
  assert.equal(describeDecode({ beam: 5, maxNewTokens: 30, noRepeatNgram: 0, lengthPenalty: 1 }), 'beam 5, at most 30 tokens');
  assert.equal(describeDecode({ beam: 5, maxNewTokens: 30, noRepeatNgram: 3, lengthPenalty: 0.5 }), 'beam 5, no repeated 3-grams, length penalty 0.5, at most 30 tokens');
  assert.equal(describeDecode({ beam: 1, maxNewTokens: 20, noRepeatNgram: 3 }), 'greedy, at most 20 tokens');
});
