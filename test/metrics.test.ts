// The metrics against the official COCO caption toolkit.
//
// test/fixtures/metrics/*.json hold inputs and the numbers the official Python code produced for them
// (pycocoevalcap's bleu/rouge/cider scorers, and its ptbtokenizer.py with Stanford CoreNLP 3.4.1). They
// were made once by a scratch script outside the repository that ran that code with python3 and java; the
// toolkit's code itself is not part of this project. To regenerate: check out pycocoevalcap (salaniz,
// commit ad63453; bleu/, rouge/, cider/, tokenizer/ are pure Python plus numpy), put a
// stanford-corenlp-3.4.1.jar in tokenizer/ (built from CoreNLP's v3.4.1 tag with
// `javac --release 8 -sourcepath src src/edu/stanford/nlp/process/PTBTokenizer.java` when the jar is not
// at hand), then score generated captions with Bleu(4), Rouge(), Cider() and dump inputs, corpus scores and
// per-image scores as JSON. Every figure must match to 1e-6 (the bar); we check 1e-9.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { bleu, ciderD, rougeL, lcsLength, scoreCaptions, METRIC_NAMES, MetricScores } from '../src/lib/eval/metrics/index';
import { pySplit, pySplitSpace } from '../src/lib/eval/metrics/pysplit';

const FIX = path.join(__dirname, 'fixtures', 'metrics');
const load = (f: string) => JSON.parse(fs.readFileSync(path.join(FIX, f), 'utf8'));
const TOL = 1e-9;

function close(actual: number, expected: number, what: string, tol = TOL): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: got ${actual}, toolkit ${expected} (diff ${Math.abs(actual - expected)})`);
}

interface ScorerCase {
  name: string;
  gts: string[][];
  res: string[];
  expected: MetricScores;
  perImage: Record<string, number[]>;
}

test('scorers equal pycocoevalcap on generated tokenized corpora (corpus and per-image)', () => {
  const { cases } = load('scorers.json') as { cases: ScorerCase[] };
  assert.ok(cases.length >= 8);
  for (const c of cases) {
    const b = bleu(c.gts, c.res);
    const r = rougeL(c.gts, c.res);
    const ci = ciderD(c.gts, c.res);
    for (let k = 0; k < 4; k++) {
      close(b.corpus[k], c.expected[`Bleu_${k + 1}` as keyof MetricScores], `${c.name} Bleu_${k + 1}`);
      c.perImage[`Bleu_${k + 1}`].forEach((v, i) => close(b.perImage[i][k], v, `${c.name} image ${i} Bleu_${k + 1}`));
    }
    close(r.corpus, c.expected.ROUGE_L, `${c.name} ROUGE_L`);
    c.perImage.ROUGE_L.forEach((v, i) => close(r.perImage[i], v, `${c.name} image ${i} ROUGE_L`));
    close(ci.corpus, c.expected.CIDEr, `${c.name} CIDEr`);
    c.perImage.CIDEr.forEach((v, i) => close(ci.perImage[i], v, `${c.name} image ${i} CIDEr`));
    // Through the public entry point too (ids = indices, already tokenized).
    const s = scoreCaptions(new Map(c.gts.map((g, i) => [i, g])), new Map(c.res.map((x, i) => [i, x])), { tokenized: true });
    for (const m of METRIC_NAMES) close(s.scores[m], c.expected[m], `${c.name} scoreCaptions ${m}`);
    c.perImage.CIDEr.forEach((v, i) => close(s.perImage.get(i)!.CIDEr, v, `${c.name} scoreCaptions image ${i} CIDEr`));
  }
});

test('full pipeline from raw captions (tokenizer + scorers) equals the toolkit', () => {
  const f = load('pipeline.json');
  const gts = new Map<number, string[]>(f.ids.map((id: number, i: number) => [id, f.gts[i]]));
  const res = new Map<number, string>(f.ids.map((id: number, i: number) => [id, f.res[i]]));
  const s = scoreCaptions(gts, res);
  assert.equal(s.count, f.ids.length);
  for (const m of METRIC_NAMES) close(s.scores[m], f.expected[m], `pipeline ${m}`);
  f.ids.forEach((id: number, i: number) => {
    for (const m of METRIC_NAMES) close(s.perImage.get(id)![m], f.perImage[m][i], `pipeline image ${id} ${m}`);
  });
});

test("clipscore repository's example: published values (4 decimals) and the toolkit's full precision", () => {
  const f = load('clipscore-example.json');
  const gts = new Map<string, string[]>(Object.entries(f.refs as Record<string, string[]>));
  for (const set of ['good', 'bad']) {
    const res = new Map<string, string>(Object.entries(f.candidates[set] as Record<string, string>));
    const s = scoreCaptions(gts, res).scores;
    for (const m of METRIC_NAMES) {
      close(s[m], f.toolkit[set][m], `${set} ${m} (toolkit)`);
      assert.equal(s[m].toFixed(4), f.published[set][m].toFixed(4), `${set} ${m} as published`);
    }
  }
});

test('the published clipscore values themselves (guards the fixture)', () => {
  const f = load('clipscore-example.json');
  assert.deepEqual(f.published.good, { Bleu_1: 0.6667, Bleu_2: 0.4899, Bleu_3: 0.3469, Bleu_4: 0, ROUGE_L: 0.428, CIDEr: 0.5637 });
  assert.deepEqual(f.published.bad, { Bleu_1: 0.4815, Bleu_2: 0.2404, Bleu_3: 0.1359, Bleu_4: 0, ROUGE_L: 0.3121, CIDEr: 0.279 });
});

test('hand-checkable values', () => {
  // Identical candidate and single reference of 4+ words: every BLEU ~1, ROUGE-L 1.
  const b = bleu([['a dog on grass']], ['a dog on grass']);
  for (const v of b.corpus) close(v, 1, 'bleu identical', 1e-6);
  close(rougeL([['a dog on grass']], ['a dog on grass']).corpus, 1, 'rouge identical');
  // BLEU-1 with clipping: "the the the the" vs "the cat": 1 clipped match of 4 -> 1/4, BP = 1 (c=4 > r=2).
  close(bleu([['the cat']], ['the the the the']).corpus[0], 0.25, 'bleu clipping', 1e-9);
  // Brevity penalty with closest reference length: c=2, refs 3 and 6 -> r=3, BP = exp(1 - 3/2).
  close(bleu([['x y z', 'a b c d e f']], ['x y']).corpus[0], Math.exp(1 - 3 / 2), 'bleu brevity', 1e-9);
  // LCS and ROUGE-L: "a b c d" vs "a c d e": LCS 3, P = R = 3/4 -> F = 3/4.
  assert.equal(lcsLength('a b c d'.split(' '), 'a c d e'.split(' ')), 3);
  close(rougeL([['a c d e']], ['a b c d']).corpus, 0.75, 'rouge');
  // CIDEr-D of a single image is 0 (log(1 image) - log(df) = 0 for every n-gram).
  assert.equal(ciderD([['a dog']], ['a dog']).corpus, 0);
  // CIDEr-D: an exact copy of its single reference in a 2-image corpus, with no n-gram shared across images,
  // scores 10 (cosine 1 for each n with both vectors non-zero... here 3 words give n=1..3 only, so 10 * 3/4).
  close(ciderD([['a b c'], ['x y z']], ['a b c', 'q']).perImage[0], 7.5, 'cider copy');
});

test('Python split semantics', () => {
  assert.deepEqual(pySplit('  a  b\u00a0c '), ['a', 'b', 'c']);
  assert.deepEqual(pySplit(''), []);
  assert.deepEqual(pySplitSpace(''), ['']);
  assert.deepEqual(pySplitSpace('a b'), ['a', 'b']);
});

test('scoreCaptions rejects candidates without references and empty reference sets', () => {
  assert.throws(() => scoreCaptions(new Map([[1, ['a']]]), new Map([[2, 'b']])), /no references, e\.g\. 2/);
  assert.throws(() => scoreCaptions(new Map([[1, []]]), new Map([[1, 'b']])), /image 1 has no reference/);
  assert.throws(() => scoreCaptions(new Map([[1, ['a']]]), new Map()), /no candidate/);
  // Images with references but no candidate are ignored, as in the toolkit.
  const s = scoreCaptions(new Map([[1, ['a cat']], [2, ['a dog']]]), new Map([[2, 'a dog']]));
  assert.equal(s.count, 1);
  assert.deepEqual([...s.perImage.keys()], [2]);
});
