// Bootstrap intervals and paired comparisons over evaluation images.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { bleu, corpusBleu, bootstrapInterval, quantileSorted } from '../src/lib/eval/metrics/index';
import { differenceInterval, metricOnImages, scoreCaptions, scoreInterval, METRIC_NAMES } from '../src/lib/eval/metrics/index';
import { mulberry32 } from '../src/lib/util/rng';

const WORDS = 'a man dog cat sits on the red bench table with two people street near car'.split(' ');

/** n photos with 5 references each; `good` candidates copy a reference, `bad` ones are random words. */
function fixture(n: number, seed: number) {
  const rand = mulberry32(seed);
  const sentence = () => Array.from({ length: 6 + Math.floor(rand() * 5) }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ');
  const gts = new Map<string, string[]>();
  const good = new Map<string, string>();
  const bad = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const refs = Array.from({ length: 5 }, sentence);
    gts.set(`img${i}`, refs);
    good.set(`img${i}`, rand() < 0.7 ? refs[0] : sentence());
    bad.set(`img${i}`, sentence());
  }
  return { gts, good, bad };
}

test('quantileSorted interpolates like numpy.quantile', () => {
  const v = [1, 2, 3, 4, 10];
  assert.equal(quantileSorted(v, 0), 1);
  assert.equal(quantileSorted(v, 1), 10);
  assert.equal(quantileSorted(v, 0.5), 3);
  assert.ok(Math.abs(quantileSorted(v, 0.9) - 7.6) < 1e-12); // numpy.quantile([1,2,3,4,10], 0.9) = 7.6
  assert.ok(Math.abs(quantileSorted(v, 0.025) - 1.1) < 1e-12);
  assert.throws(() => quantileSorted([], 0.5), /no values/);
});

test('corpusBleu over all images equals bleu().corpus; over a subset equals bleu on that subset', () => {
  const { gts, good } = fixture(30, 3);
  const g = [...gts.values()];
  const r = [...good.values()];
  const full = bleu(g, r);
  assert.deepEqual(corpusBleu(full.stats), full.corpus);
  const idx = [2, 5, 5, 9, 17];
  const sub = bleu(idx.map((i) => g[i]), idx.map((i) => r[i]));
  const fromStats = corpusBleu(full.stats, idx);
  for (let k = 0; k < 4; k++) assert.ok(Math.abs(fromStats[k] - sub.corpus[k]) < 1e-12);
});

test('metricOnImages on every image once gives the corpus scores', () => {
  const { gts, good } = fixture(25, 5);
  const sc = scoreCaptions(gts, good);
  const identity = Array.from({ length: sc.count }, (_, i) => i);
  for (const m of METRIC_NAMES) assert.ok(Math.abs(metricOnImages(sc, m, identity) - sc.scores[m]) < 1e-12, m);
});

test('bootstrap: seeded and repeatable, brackets the estimate, degenerate for a constant statistic, checks its arguments', () => {
  const { gts, good } = fixture(60, 7);
  const sc = scoreCaptions(gts, good);
  const a = scoreInterval(sc, 'Bleu_4', { seed: 1, samples: 300 });
  const b = scoreInterval(sc, 'Bleu_4', { seed: 1, samples: 300 });
  assert.deepEqual(a, b);
  assert.equal(a.estimate, sc.scores.Bleu_4);
  assert.ok(a.lo < a.estimate && a.estimate < a.hi, `${a.lo} < ${a.estimate} < ${a.hi}`);
  assert.ok(a.hi - a.lo > 0.01 && a.hi - a.lo < 0.6, `width ${a.hi - a.lo}`);
  const wider = scoreInterval(sc, 'Bleu_4', { seed: 1, samples: 300, level: 0.99 });
  assert.ok(wider.lo <= a.lo && wider.hi >= a.hi);
  const c = bootstrapInterval(10, () => 0.25, { samples: 50 });
  assert.deepEqual([c.lo, c.hi, c.estimate], [0.25, 0.25, 0.25]);
  assert.throws(() => bootstrapInterval(0, () => 0), /at least one item/);
  assert.throws(() => bootstrapInterval(5, () => 0, { level: 1.5 }), /level/);
});

test('paired differences: a system against itself is exactly 0; a clearly better system is higher; mismatched images are an error', () => {
  const { gts, good, bad } = fixture(80, 11);
  const g = scoreCaptions(gts, good);
  const b = scoreCaptions(gts, bad);
  const self = differenceInterval(g, g, 'CIDEr', { samples: 100 });
  assert.deepEqual([self.lo, self.hi, self.estimate], [0, 0, 0]);
  for (const m of ['Bleu_4', 'CIDEr'] as const) {
    const d = differenceInterval(g, b, m, { samples: 300 });
    assert.ok(d.lo > 0, `${m}: good - bad interval [${d.lo}, ${d.hi}] should exclude 0`);
    assert.ok(Math.abs(d.estimate - (g.scores[m] - b.scores[m])) < 1e-12);
  }
  const fewer = scoreCaptions(gts, new Map([...bad].slice(0, 40)));
  assert.throws(() => differenceInterval(g, fewer, 'Bleu_4'), /same images/);
});
