import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ensureBackend } from '../src/lib/tfjs/backend';
import { loadGPT2 } from '../src/lib/model/gpt2-hf';
import { type GPT2 } from '../src/lib/model/gpt2';
import { greedy, beamSearch, beamSearchBatch, bannedNextTokens, topP, sampleTopP, sampleBatch } from '../src/lib/model/generate';
import { TINY, writeTinyGPT2, normalSampler, type RawWeight } from './helpers/gpt2-fixture';
import { refLogits, toRef } from './helpers/gpt2-reference';

process.env.CLIPCAP_QUIET_BACKEND = '1';

const C = { ...TINY, vocabSize: 23 };
let model: GPT2;
let raw: Map<string, RawWeight>;

async function setup(): Promise<void> {
  if (model) return;
  await ensureBackend({ quiet: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-gen-'));
  raw = writeTinyGPT2(dir, C, { seed: 5, scale: 0.6 });
  model = await loadGPT2(dir);
}

function prefixOf(B: number, P: number, seed: number): number[][][] {
  const g = normalSampler(seed);
  return Array.from({ length: B }, () => Array.from({ length: P }, () => Array.from({ length: C.nEmbd }, () => g())));
}

/** log-probability of each continuation token under the reference (float64). */
function refSeqLogProbs(prefix: number[][], ids: number[]): number[] {
  const W = toRef(raw);
  const wte = raw.get('wte.weight')!.data;
  const emb = [...prefix, ...ids.map((id) => Array.from(wte.subarray(id * C.nEmbd, (id + 1) * C.nEmbd)))];
  const lg = refLogits(C, W, { embeds: [emb] })[0];
  return ids.map((id, i) => {
    const row = lg[prefix.length + i - 1];
    const mx = Math.max(...row);
    return row[id] - mx - Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
  });
}

test('greedy: each token is the argmax of the float64 reference; cache == recompute; batch == rows', async () => {
  await setup();
  const pre = prefixOf(3, 4, 1);
  model.clearCaches();
  const before = tf.memory().numTensors;
  const P = tf.tensor3d(pre);
  const opts = { maxNewTokens: 8, eosId: 999 };
  const a = greedy(model, P, opts);
  const b = greedy(model, P, { ...opts, useCache: false });
  assert.deepEqual(a, b);
  assert.ok(a.every((r) => r.length === 8));
  for (let r = 0; r < 3; r++) {
    const one = tf.tensor3d([pre[r]]);
    assert.deepEqual(greedy(model, one, opts)[0], a[r]);
    one.dispose();
  }
  // independent check of row 0
  const W = toRef(raw);
  const wte = raw.get('wte.weight')!.data;
  const emb = [...pre[0], ...a[0].map((id) => Array.from(wte.subarray(id * C.nEmbd, (id + 1) * C.nEmbd)))];
  const lg = refLogits(C, W, { embeds: [emb] })[0];
  a[0].forEach((id, i) => {
    const row = lg[pre[0].length + i - 1];
    assert.equal(id, row.indexOf(Math.max(...row)), `step ${i}`);
  });
  P.dispose();
  model.clearCaches();
  assert.equal(tf.memory().numTensors, before, 'generation leaks no tensors');
});

test('greedy: EOS ends a row and is not returned; stop ids are returned; other rows go on', async () => {
  await setup();
  const P = tf.tensor3d(prefixOf(2, 3, 2));
  const free = greedy(model, P, { maxNewTokens: 10, eosId: 999 });
  const eos = free[0][2];
  const withEos = greedy(model, P, { maxNewTokens: 10, eosId: eos });
  assert.deepEqual(withEos[0], free[0].slice(0, free[0].indexOf(eos)));
  const stop = free[1][1];
  const withStop = greedy(model, P, { maxNewTokens: 10, eosId: 999, stopIds: [stop] });
  assert.deepEqual(withStop[1], free[1].slice(0, free[1].indexOf(stop) + 1));
  P.dispose();
});

test('beam search: beam 1 equals greedy; scores are length-normalised reference log-probs; best first', async () => {
  await setup();
  for (const seed of [3, 4, 5]) {
    const pre = prefixOf(1, 3, seed);
    const P = tf.tensor3d(pre);
    const g = greedy(model, P, { maxNewTokens: 7, eosId: 999, stopIds: [5] });
    const b1 = beamSearch(model, P, { beamSize: 1, maxNewTokens: 7, eosId: 999, stopIds: [5] });
    assert.deepEqual(b1[0].ids, g[0]);

    model.clearCaches();
    const before = tf.memory().numTensors;
    const beams = beamSearch(model, P, { beamSize: 4, maxNewTokens: 6, eosId: 999, stopIds: [5, 7] });
    model.clearCaches();
    assert.equal(tf.memory().numTensors, before, 'beam search leaks no tensors');
    assert.equal(beams.length, 4);
    const nocache = beamSearch(model, P, { beamSize: 4, maxNewTokens: 6, eosId: 999, stopIds: [5, 7], useCache: false });
    assert.deepEqual(
      nocache.map((x) => x.ids),
      beams.map((x) => x.ids),
    );
    for (let i = 0; i < beams.length; i++) {
      if (i > 0) assert.ok(beams[i - 1].score >= beams[i].score);
      const { ids, score } = beams[i];
      assert.ok(ids.length >= 1 && ids.length <= 6);
      // a beam ends at a stop token or at the length limit
      assert.ok(ids.length === 6 || [5, 7].includes(ids[ids.length - 1]));
      assert.ok(ids.slice(0, -1).every((t) => t !== 5 && t !== 7));
      const lp = refSeqLogProbs(pre[0], ids);
      const want = lp.reduce((a, v) => a + v, 0) / ids.length;
      assert.ok(Math.abs(score - want) < 1e-4, `beam ${i}: score ${score} vs reference ${want}`);
    }
    // beams are distinct
    assert.equal(new Set(beams.map((x) => x.ids.join(','))).size, beams.length);
    P.dispose();
  }
});

test('beam search: EOS stops a beam and is not returned, but counts in the score', async () => {
  await setup();
  const pre = prefixOf(1, 3, 8);
  const P = tf.tensor3d(pre);
  const g = greedy(model, P, { maxNewTokens: 5, eosId: 999 })[0];
  const eos = g[1];
  const b = beamSearch(model, P, { beamSize: 1, maxNewTokens: 5, eosId: eos });
  assert.deepEqual(b[0].ids, g.slice(0, g.indexOf(eos)));
  const lp = refSeqLogProbs(pre[0], g.slice(0, g.indexOf(eos) + 1));
  assert.ok(Math.abs(b[0].score - lp.reduce((a, v) => a + v, 0) / lp.length) < 1e-4);
  P.dispose();
});

test('top-p: reproducible with a seed, tiny p equals greedy, p=1 samples', async () => {
  await setup();
  const P = tf.tensor3d(prefixOf(2, 3, 9));
  const o = { maxNewTokens: 8, eosId: 999, topP: 0.9, seed: 123 };
  assert.deepEqual(topP(model, P, o), topP(model, P, o));
  assert.deepEqual(topP(model, P, { ...o, topP: 1e-9 }), greedy(model, P, o));
  const runs = new Set([1, 2, 3, 4].map((seed) => JSON.stringify(topP(model, P, { ...o, topP: 1, seed }))));
  assert.ok(runs.size > 1, 'different seeds give different samples');
  P.dispose();
});

test('sampleBatch: each prefix draws from its own seeded stream (batch == alone), tiny temperature equals greedy, no leak', async () => {
  await setup();
  const rows = prefixOf(3, 3, 11);
  const P = tf.tensor3d(rows);
  const o = { maxNewTokens: 6, eosId: 999, samples: 4, temperature: 1, seeds: [5, 6, 7] };
  greedy(model, P, o); // first use: the model's lazily built constants
  const before = tf.memory().numTensors;
  const all = sampleBatch(model, P, o);
  assert.equal(all.length, 3);
  assert.ok(all.every((s) => s.length === 4 && s.every((ids) => ids.length === 6)));
  assert.deepEqual(sampleBatch(model, P, o), all, 'reproducible');
  rows.forEach((r, n) => {
    const one = tf.tensor3d([r]);
    assert.deepEqual(sampleBatch(model, one, { ...o, seeds: [o.seeds[n]] })[0], all[n], `prefix ${n} alone draws the same samples`);
    one.dispose();
  });
  assert.ok(new Set(all.flat().map((ids) => ids.join())).size > 3, 'the samples differ');
  const cold = sampleBatch(model, P, { ...o, temperature: 1e-4 });
  const g = greedy(model, P, o);
  cold.forEach((s, n) => s.forEach((ids) => assert.deepEqual(ids, g[n])));
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  assert.throws(() => sampleBatch(model, P, { ...o, seeds: [1] }), /3 prefixes/);
  assert.throws(() => sampleBatch(model, P, { ...o, temperature: 0 }), /temperature/);
  assert.throws(() => sampleBatch(model, P, { ...o, samples: 0 }), /samples/);
  P.dispose();
});

/**
 * The first tokens of `got` (N draws) match softmax(`scores`) (float64): each token's frequency within
 * 4.5 standard errors of its probability.
 */
function assertFirstTokenFrequencies(got: number[][], scores: number[], label: string): void {
  const N = got.length;
  const count = new Array<number>(scores.length).fill(0);
  for (const ids of got) count[ids[0]]++;
  const mx = Math.max(...scores);
  const z = scores.reduce((a, x) => a + Math.exp(x - mx), 0);
  scores.forEach((x, v) => {
    const p = Math.exp(x - mx) / z;
    const se = Math.sqrt((p * (1 - p)) / N);
    assert.ok(Math.abs(count[v] / N - p) <= 4.5 * se + 1e-9, `${label}, token ${v}: frequency ${count[v] / N} vs probability ${p}`);
  });
}

test('sampleBatch draws the first token from the model\'s distribution at the temperature (frequencies within 4.5 standard errors of the float64 reference)', async () => {
  await setup();
  const rows = prefixOf(1, 2, 13);
  const P = tf.tensor3d(rows);
  const N = 3000;
  for (const T of [1, 0.6]) {
    const got = sampleBatch(model, P, { maxNewTokens: 1, eosId: 999, samples: N, temperature: T, seeds: [42] })[0];
    const lp = Array.from({ length: C.vocabSize }, (_, v) => refSeqLogProbs(rows[0], [v])[0] / T);
    assertFirstTokenFrequencies(got, lp, `T ${T}`);
  }
  P.dispose();
});

test('contrastive sampling draws the first token from softmax((log p(photo) - w log p(contrast)) / T) (within 4.5 standard errors of the float64 reference)', async () => {
  await setup();
  const rows = prefixOf(1, 2, 13);
  const base = prefixOf(1, 2, 31);
  const P = tf.tensor3d(rows);
  const B = tf.tensor3d(base);
  const N = 3000;
  for (const [T, w] of [[1, 0.5], [0.6, 0.3]]) {
    const got = sampleBatch(model, P, { maxNewTokens: 1, eosId: 999, samples: N, temperature: T, seeds: [42], contrast: { prefix: B, weight: w } })[0];
    const own = Array.from({ length: C.vocabSize }, (_, v) => refSeqLogProbs(rows[0], [v])[0]);
    const other = Array.from({ length: C.vocabSize }, (_, v) => refSeqLogProbs(base[0], [v])[0]);
    // log p(photo) and log p(contrast) are normalised already: the scores need no renormalising before the softmax
    assertFirstTokenFrequencies(got, own.map((x, v) => (x - w * other[v]) / T), `T ${T}, w ${w}`);
  }
  P.dispose();
  B.dispose();
});

test('contrastive sampling: contrast rows follow each sample (cold samples equal contrastive beam search of width 1, rows stopping early included), batch == alone, no leak', async () => {
  await setup();
  const rows = prefixOf(3, 3, 17);
  const P = tf.tensor3d(rows);
  const B = tf.tensor3d(prefixOf(1, 3, 19));
  const contrast = { prefix: B, weight: 0.4 };
  const stopIds = [3, 7];
  const o = { maxNewTokens: 7, eosId: 999, stopIds, samples: 3, temperature: 1, seeds: [5, 6, 7], contrast };
  sampleBatch(model, P, o); // first use: lazily built constants
  const before = tf.memory().numTensors;
  const all = sampleBatch(model, P, o);
  rows.forEach((r, n) => {
    const one = tf.tensor3d([r]);
    assert.deepEqual(sampleBatch(model, one, { ...o, seeds: [o.seeds[n]] })[0], all[n], `prefix ${n} alone draws the same samples`);
    one.dispose();
  });
  assert.notDeepEqual(all, sampleBatch(model, P, { ...o, contrast: undefined }), 'the contrast changes the samples');
  const cold = sampleBatch(model, P, { ...o, temperature: 1e-4 });
  const beams = beamSearchBatch(model, P, { maxNewTokens: 7, eosId: 999, stopIds, beamSize: 1, contrast });
  const lengths = new Set<number>();
  cold.forEach((s, n) => s.forEach((ids) => {
    assert.deepEqual(ids, beams[n][0].ids, `prefix ${n}`);
    lengths.add(ids.length);
  }));
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  assert.throws(() => sampleBatch(model, P, { ...o, contrast: { prefix: B, weight: 1 } }), /contrast weight/);
  P.dispose();
  B.dispose();
  assert.ok(lengths.size > 1 || [...lengths][0] < 7, `some row stopped early (lengths ${[...lengths]})`);
});

test('sampleTopP keeps the smallest nucleus reaching p', () => {
  const logits = [Math.log(0.1), Math.log(0.6), Math.log(0.3)];
  for (const u of [0, 0.3, 0.59, 0.99]) assert.equal(sampleTopP(logits, 0, 3, 0.5, 1, u), 1);
  // p = 0.8: nucleus {1, 2} with mass 0.9, renormalised: u < 0.6/0.9 -> 1, else 2
  assert.equal(sampleTopP(logits, 0, 3, 0.8, 1, 0.5), 1);
  assert.equal(sampleTopP(logits, 0, 3, 0.8, 1, 0.7), 2);
  assert.equal(sampleTopP(logits, 0, 3, 0.8, 1, 0.999), 2);
  assert.equal(sampleTopP(logits, 0, 3, 1, 1, 0.95), 0);
});

test('bannedNextTokens: the tokens that would repeat an n-gram the sequence holds', () => {
  // "a b c a b" with n = 3: the last two tokens "a b" were followed by "c"
  assert.deepEqual([...bannedNextTokens([1, 2, 3, 1, 2], 3)], [3]);
  assert.deepEqual([...bannedNextTokens([1, 2, 3, 1, 2], 2)].sort(), [3]);
  assert.deepEqual([...bannedNextTokens([1, 2, 1, 3, 1], 2)].sort(), [2, 3]);
  assert.deepEqual([...bannedNextTokens([1, 2], 3)], []);
  assert.deepEqual([...bannedNextTokens([4, 4, 4], 1)].sort(), [4]);
  assert.deepEqual([...bannedNextTokens([1, 2, 3], 0)], []);
});

test('beam search: noRepeatNgram leaves no repeated n-gram; lengthPenalty 1 equals the default; bad values are refused', async () => {
  await setup();
  const repeats = (ids: number[]) => {
    const grams = ids.slice(1).map((t, i) => `${ids[i]},${t}`);
    return grams.length - new Set(grams).size;
  };
  let plainRepeats = 0;
  for (const seed of [3, 4, 5]) {
    const P = tf.tensor3d(prefixOf(1, 3, seed));
    const plain = beamSearch(model, P, { beamSize: 3, maxNewTokens: 12, eosId: 999 });
    plainRepeats += plain.reduce((a, b) => a + repeats(b.ids), 0);
    assert.deepEqual(beamSearch(model, P, { beamSize: 3, maxNewTokens: 12, eosId: 999, lengthPenalty: 1 }), plain);
    const blocked = beamSearch(model, P, { beamSize: 3, maxNewTokens: 12, eosId: 999, noRepeatNgram: 2 });
    for (const { ids } of blocked) assert.equal(repeats(ids), 0, `repeated bigram in ${ids}`);
    // a length penalty of 0 ranks by the summed log-prob
    const sum = beamSearch(model, P, { beamSize: 3, maxNewTokens: 12, eosId: 999, lengthPenalty: 0 });
    for (let i = 1; i < sum.length; i++) assert.ok(sum[i - 1].score >= sum[i].score);
    assert.throws(() => beamSearch(model, P, { beamSize: 3, maxNewTokens: 4, eosId: 999, noRepeatNgram: -1 }), /noRepeatNgram/);
    assert.throws(() => beamSearch(model, P, { beamSize: 3, maxNewTokens: 4, eosId: 999, lengthPenalty: Number.NaN }), /lengthPenalty/);
    P.dispose();
  }
  assert.ok(plainRepeats > 0, 'the tiny model repeats bigrams without the block (else this test shows nothing)');
});

test('beam search with a contrast prefix: weight 0 is plain beam search; scores subtract the weighted contrast log-probs; no leak', async () => {
  await setup();
  const pre = prefixOf(1, 3, 21);
  const base = prefixOf(1, 3, 22);
  const P = tf.tensor3d(pre);
  const Cp = tf.tensor3d(base);
  const o = { beamSize: 3, maxNewTokens: 6, eosId: 999 };
  assert.deepEqual(beamSearch(model, P, { ...o, contrast: { prefix: Cp, weight: 0 } }), beamSearch(model, P, o));
  model.clearCaches();
  const before = tf.memory().numTensors;
  const w = 0.4;
  const beams = beamSearch(model, P, { ...o, contrast: { prefix: Cp, weight: w } });
  model.clearCaches();
  assert.equal(tf.memory().numTensors, before, 'contrastive beam search leaks no tensors');
  assert.notDeepEqual(beams.map((b) => b.ids), beamSearch(model, P, o).map((b) => b.ids), 'the contrast changes the search');
  for (const { ids, score } of beams) {
    // a beam's score: the mean over its tokens (EOS included when it stopped) of the contrastive log-prob
    const seq = ids.length < o.maxNewTokens ? [...ids, o.eosId] : ids;
    const img = refSeqLogProbs(pre[0], seq);
    const ctr = refSeqLogProbs(base[0], seq);
    const want = img.reduce((a, v, i) => a + v - w * ctr[i], 0) / seq.length;
    assert.ok(Math.abs(score - want) < 1e-4, `score ${score} vs reference ${want}`);
  }
  assert.throws(() => beamSearch(model, P, { ...o, contrast: { prefix: Cp, weight: 1.5 } }), /contrast weight/);
  assert.throws(() => beamSearch(model, P, { ...o, useCache: false, contrast: { prefix: Cp, weight: 0.3 } }), /KV cache/);
  P.dispose();
  Cp.dispose();
});

test('batched beam search: every image gets exactly the beams of beamSearch on its prefix alone (plain, n-gram block and length penalty, contrast, without the cache); no leak', async () => {
  await setup();
  const N = 5;
  const pre = prefixOf(N, 3, 31);
  const P = tf.tensor3d(pre);
  const Cp = tf.tensor3d(prefixOf(1, 3, 32));
  // eosId 7 is a real token of the tiny vocabulary: beams stop at different steps, so images leave the batch early
  const settings = [
    { beamSize: 3, maxNewTokens: 8, eosId: 7 },
    { beamSize: 3, maxNewTokens: 8, eosId: 7, stopIds: [5], noRepeatNgram: 2, lengthPenalty: 0.6 },
    { beamSize: 2, maxNewTokens: 6, eosId: 7, contrast: { prefix: Cp, weight: 0.3 } },
    { beamSize: 3, maxNewTokens: 5, eosId: 7, useCache: false },
  ];
  let early = 0;
  for (const o of settings) {
    model.clearCaches();
    const before = tf.memory().numTensors;
    const batch = beamSearchBatch(model, P, o);
    model.clearCaches();
    assert.equal(tf.memory().numTensors, before, 'batched beam search leaks no tensors');
    assert.equal(batch.length, N);
    for (let i = 0; i < N; i++) {
      const one = tf.tensor3d([pre[i]]);
      assert.deepEqual(batch[i], beamSearch(model, one, o), `image ${i}, ${JSON.stringify({ ...o, contrast: undefined })}`);
      one.dispose();
      if (batch[i].every((b) => b.ids.length < o.maxNewTokens)) early += 1;
    }
  }
  assert.ok(early > 0, 'some image stopped before maxNewTokens (else leaving the batch early is not exercised)');
  assert.throws(() => beamSearch(model, P, settings[0]), /beamSearchBatch/);
  P.dispose();
  Cp.dispose();
});
