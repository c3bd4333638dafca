// Baselines: nearest-neighbour consensus caption retrieval and the human leave-one-out score.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { nearestNeighbours, tfjsSimilarity, jsSimilarity } from '../src/lib/eval/knn';
import { nearestNeighbourCaptions, humanLeaveOneOut } from '../src/lib/eval/baselines';
import { ConsensusScorer } from '../src/lib/eval/metrics/consensus';
import { ciderScoreOf, ciderVector, documentFrequencies, ngramCounts } from '../src/lib/eval/metrics/cider';
import { scoreCaptions, METRIC_NAMES, tokenizeCaption } from '../src/lib/eval/metrics/index';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
const randVec = (r: () => number, d: number) => Float32Array.from({ length: d }, () => r() * 2 - 1);

test('nearestNeighbours equals a brute-force cosine ranking, leaves out equal ids, handles k > n', () => {
  const r = rng(1);
  const train = new Map<number, Float32Array>();
  for (let i = 0; i < 57; i++) train.set(i, randVec(r, 13));
  const queries = new Map<number, Float32Array>();
  for (let i = 0; i < 19; i++) queries.set(100 + i, randVec(r, 13));
  queries.set(5, Float32Array.from(train.get(5)!, (x) => x * 3)); // same direction as train 5, same id
  const cos = (a: Float32Array, b: Float32Array) => {
    let d = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    return d / Math.sqrt(na * nb);
  };
  const got = nearestNeighbours(train, queries, { k: 7 });
  for (const [q, v] of queries) {
    const want = [...train.entries()].filter(([id]) => id !== q).map(([id, t]) => ({ id, s: cos(v, t) })).sort((a, b) => b.s - a.s).slice(0, 7);
    assert.deepEqual(got.get(q)!.map((n) => n.id), want.map((w) => w.id), `query ${q}`);
    got.get(q)!.forEach((n, i) => assert.ok(Math.abs(n.similarity - want[i].s) < 1e-5));
  }
  assert.ok(!got.get(5)!.some((n) => n.id === 5), 'the query itself is left out');
  const keep = nearestNeighbours(train, new Map([[5, train.get(5)!]]), { k: 1, exclude: () => false });
  assert.equal(keep.get(5)![0].id, 5);
  assert.ok(Math.abs(keep.get(5)![0].similarity - 1) < 1e-6);
  assert.equal(nearestNeighbours(new Map([[1, randVec(r, 4)]]), new Map([[9, randVec(r, 4)]]), { k: 5 }).get(9)!.length, 1);
  assert.throws(() => nearestNeighbours(train, new Map([[1, new Float32Array(3)]]), { k: 2 }), /13 dimensions, queries 3/);
  assert.throws(() => nearestNeighbours(train, queries, { k: 0 }), /k must be at least 1/);
});

test('the TensorFlow.js similarity engine finds the same neighbours as the JavaScript one', async () => {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const tf = require('@tensorflow/tfjs') as typeof import('@tensorflow/tfjs');
  await tf.setBackend('cpu');
  const r = rng(9);
  const train = new Map<number, Float32Array>();
  for (let i = 0; i < 300; i++) train.set(i, randVec(r, 24));
  const queries = new Map<string, Float32Array>();
  for (let i = 0; i < 37; i++) queries.set(`q${i}`, randVec(r, 24));
  const before = tf.memory().numTensors;
  const a = nearestNeighbours(train, queries, { k: 5, engine: jsSimilarity, blockSize: 16 });
  const b = nearestNeighbours(train, queries, { k: 5, engine: tfjsSimilarity(tf), blockSize: 16 });
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  for (const [q, list] of a) {
    assert.deepEqual(b.get(q)!.map((n) => n.id), list.map((n) => n.id), q);
    list.forEach((n, i) => assert.ok(Math.abs(n.similarity - b.get(q)![i].similarity) < 1e-5));
  }
});

const WORDS = 'a the dog cat man on in with red grass ball frisbee sitting running two'.split(' ');
function caption(r: () => number): string {
  const n = 3 + Math.floor(r() * 9);
  return Array.from({ length: n }, () => WORDS[Math.floor(r() * WORDS.length)]).join(' ');
}

test("consensus scores equal the toolkit's CIDEr-D of each pool caption against the rest, with corpus document frequencies", () => {
  const r = rng(2);
  const corpus: string[][] = Array.from({ length: 40 }, () => Array.from({ length: 5 }, () => caption(r)));
  const scorer = new ConsensusScorer(corpus);
  const df = documentFrequencies(corpus.map((set) => set.map((c) => ngramCounts(c.split(' ')))));
  const logDocs = Math.log(corpus.length);
  assert.equal(scorer.logDocumentCount, logDocs);
  for (const [g, v] of df) assert.equal(scorer.documentFrequency(g), v);
  for (let t = 0; t < 5; t++) {
    const pool = corpus.slice(t * 5, t * 5 + 4).flat(); // 20 captions of 4 photos
    pool.push('zebra zebra a dog', 'two zebra zebra'); // captions with n-grams unseen in the corpus, shared
    const got = scorer.poolScores(pool);
    pool.forEach((c, i) => {
      const hyp = ciderVector(ngramCounts(c.split(' ')), df, logDocs);
      const refs = pool.filter((_, j) => j !== i).map((x) => ciderVector(ngramCounts(x.split(' ')), df, logDocs));
      const want = ciderScoreOf(hyp, refs);
      assert.ok(Math.abs(got[i] - want) < 1e-9, `pool ${t} caption ${i}: ${got[i]} vs ${want}`);
    });
  }
  assert.deepEqual([...scorer.poolScores(['a dog'])], [0]);
  assert.equal(scorer.consensusIndex([]), -1);
});

test('nearestNeighbourCaptions returns the consensus caption of the nearest photos', () => {
  // Three groups of photos along three directions; captions about dogs, cats and trains.
  const dirs = [Float32Array.from([1, 0, 0, 0]), Float32Array.from([0, 1, 0, 0]), Float32Array.from([0, 0, 1, 0])];
  const topics = [
    ['A dog running on the grass.', 'A brown dog runs on green grass', 'a dog on the grass', 'A dog playing.', 'Grass.'],
    ['A cat sleeping on a sofa.', 'a cat on a sofa', 'A grey cat sleeping on the sofa!', 'Sofa with a cat.', 'A pet.'],
    ['A train at the station.', 'A red train in a station', 'the train is at the station', 'Trains.', 'A locomotive.'],
  ];
  const r = rng(3);
  const emb = new Map<string, Float32Array>();
  const caps = new Map<string, string[]>();
  for (let g = 0; g < 3; g++) {
    for (let i = 0; i < 4; i++) {
      const id = `g${g}p${i}`;
      emb.set(id, Float32Array.from(dirs[g], (x) => x + (r() - 0.5) * 0.2));
      // Each photo gets a rotation of its topic's captions, so the pool holds every caption several times.
      caps.set(id, topics[g].map((_, j) => topics[g][(j + i) % 5]));
    }
  }
  const queries = new Map([['q-dog', Float32Array.from([0.9, 0.1, 0, 0.05])], ['q-train', Float32Array.from([0, 0.1, 1, 0])]]);
  const got = nearestNeighbourCaptions(emb, caps, queries, { k: 4 });
  for (const [q, g] of [['q-dog', 0], ['q-train', 2]] as const) {
    const res = got.get(q)!;
    assert.equal(res.neighbours.length, 4);
    assert.ok(res.neighbours.every((n) => n.id.startsWith(`g${g}`)), `${q}: neighbours ${res.neighbours.map((n) => n.id)}`);
    assert.ok(topics[g].includes(res.caption), `${q}: caption from its topic`);
    assert.ok(caps.get(res.from)!.includes(res.caption));
    // The choice is the argmax of the pool's consensus scores (brute force with the same scorer).
    const tokCaps = new Map([...caps].map(([id, cs]) => [id, cs.map(tokenizeCaption)]));
    const scorer = new ConsensusScorer(tokCaps.values());
    const pool = res.neighbours.flatMap((n) => tokCaps.get(n.id)!);
    const scores = scorer.poolScores(pool);
    assert.ok(Math.abs(Math.max(...scores) - res.score) < 1e-12);
    assert.equal(tokenizeCaption(res.caption), pool[scores.indexOf(Math.max(...scores))]);
  }
  // A consensus caption is a long, shared one, not a one-word outlier.
  assert.notEqual(got.get('q-dog')!.caption, 'Grass.');
  assert.throws(() => nearestNeighbourCaptions(new Map([['x', dirs[0]]]), new Map(), queries), /x has an embedding but no captions/);
});

test('humanLeaveOneOut: mean over the 5 rotations of the corpus metrics, photos with < 5 references skipped', () => {
  const r = rng(4);
  const gts = new Map<number, string[]>();
  for (let i = 0; i < 12; i++) gts.set(i, Array.from({ length: 5 }, () => caption(r)));
  gts.set(50, Array.from({ length: 7 }, () => caption(r))); // more than 5: first 5 used
  gts.set(60, [caption(r), caption(r), caption(r)]); // fewer: skipped
  const h = humanLeaveOneOut(gts, { tokenized: true });
  assert.equal(h.count, 13);
  assert.equal(h.skipped, 1);
  assert.equal(h.rotations.length, 5);
  const used = [...gts].filter(([, v]) => v.length >= 5).map(([k, v]) => [k, v.slice(0, 5)] as const);
  for (let rot = 0; rot < 5; rot++) {
    const want = scoreCaptions(new Map(used.map(([k, v]) => [k, v.filter((_, j) => j !== rot)])), new Map(used.map(([k, v]) => [k, v[rot]])), { tokenized: true }).scores;
    for (const m of METRIC_NAMES) assert.ok(Math.abs(h.rotations[rot][m] - want[m]) < 1e-12, `rotation ${rot} ${m}`);
  }
  for (const m of METRIC_NAMES) {
    const mean = h.rotations.reduce((s, x) => s + x[m], 0) / 5;
    assert.ok(Math.abs(h.scores[m] - mean) < 1e-12);
    assert.ok(h.scores[m] >= 0);
  }
  // Raw captions are tokenized like the toolkit: punctuation and case do not matter.
  const raw = new Map([[1, ['A dog.', 'a dog', 'A DOG!', 'a dog ,', 'A dog']], [2, ['Two cats.', 'two cats', 'Two cats', 'two cats!', 'TWO CATS']]]);
  const hr = humanLeaveOneOut(raw);
  assert.ok(Math.abs(hr.scores.ROUGE_L - 1) < 1e-12);
  assert.throws(() => humanLeaveOneOut(new Map([[1, ['a', 'b']]])), /no photo has 5 reference captions \(1 photos have fewer\)/);
});

test('nearest neighbours by cosine similarity, the query itself left out (the view of notebook 02)', () => {
  const v = (...x: number[]) => Float32Array.from(x);
  const cands = new Map([
    ['q', v(1, 0)],
    ['near', v(1, 0.1)],
    ['far', v(-1, 0)],
    ['mid', v(1, 1)],
  ]);
  const got = nearestNeighbours(cands, new Map([['q', v(1, 0)]]), { k: 2 }).get('q')!;
  assert.deepEqual(got.map((n) => n.id), ['near', 'mid']);
  assert.ok(Math.abs(got[1].similarity - Math.SQRT1_2) < 1e-6);
  // a zero vector has similarity 0 with everything
  assert.equal(nearestNeighbours(new Map([['a', v(1, 0)]]), new Map([['z', v(0, 0)]]), { k: 1 }).get('z')![0].similarity, 0);
});
