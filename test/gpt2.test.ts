// GPT-2 against an independent float64 reference (test/helpers/gpt2-reference.ts), on tiny random
// models written in the exact Hugging Face layout (test/helpers/gpt2-fixture.ts).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ensureBackend } from '../src/lib/tfjs/backend';
import { GPT2, KVCache, configFromHF, configToHF, weightShapes, type GPT2Config } from '../src/lib/model/gpt2';
import { loadGPT2, saveGPT2 } from '../src/lib/model/gpt2-hf';
import { lmHeadLoss, lmLoss, MIN_PROB } from '../src/lib/model/loss';
import { TINY, writeTinyGPT2, normalSampler, hfConfigJson, type TinyConfig } from './helpers/gpt2-fixture';
import { refLogits, refLoss, toRef } from './helpers/gpt2-reference';

process.env.CLIPCAP_QUIET_BACKEND = '1';

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-gpt2-'));
}

/** max |a - b| / max |b| over the entries where `use` holds. */
function relErr(a: number[][][], b: number[][][], use: (bi: number, t: number) => boolean = () => true): number {
  let num = 0;
  let den = 0;
  a.forEach((row, bi) =>
    row.forEach((v, t) => {
      if (!use(bi, t)) return;
      v.forEach((x, i) => {
        num = Math.max(num, Math.abs(x - b[bi][t][i]));
        den = Math.max(den, Math.abs(b[bi][t][i]));
      });
    }),
  );
  return num / den;
}

const IDS = [
  [5, 17, 3, 42, 60, 0, 9],
  [11, 2, 33, 33, 7, 1, 28],
];
// row 0: right padding; row 1: left padding
const MASK = [
  [1, 1, 1, 1, 1, 0, 0],
  [0, 0, 1, 1, 1, 1, 1],
];

for (const backend of ['wasm', 'cpu']) {
  test(`[${backend}] logits equal the float64 reference (ids, embeddings, padding, both key layouts)`, async () => {
    await ensureBackend({ quiet: true });
    await tf.setBackend(backend);
    for (const [prefix, buffers] of [
      [false, true],
      [true, true],
      [true, false],
    ]) {
      const dir = tmp();
      const raw = writeTinyGPT2(dir, TINY, { prefix, buffers, lmHead: prefix, seed: 7 });
      const W = toRef(raw);
      const model = await loadGPT2(dir);
      try {
        // token ids with padding masks
        const ref = refLogits(TINY, W, { ids: IDS, mask: MASK });
        const got = tf.tidy(() => model.forward({ inputIds: tf.tensor2d(IDS, undefined, 'int32'), attentionMask: tf.tensor2d(MASK) }).logits.arraySync());
        const e1 = relErr(got, ref, (b, t) => MASK[b][t] === 1);
        assert.ok(e1 < 1e-4, `ids: relative error ${e1} (prefix=${prefix}, buffers=${buffers})`);
        // no mask, all positions
        const ref2 = refLogits(TINY, W, { ids: IDS });
        const got2 = tf.tidy(() => model.forward({ inputIds: tf.tensor2d(IDS, undefined, 'int32') }).logits.arraySync());
        assert.ok(relErr(got2, ref2) < 1e-4);
        // the reference sees different logits where padding matters: the check has teeth
        assert.ok(relErr(got, ref2, (b, t) => MASK[b][t] === 1) > 1e-3);
        // input embeddings at a position offset
        const g = normalSampler(3);
        const emb = IDS.map((r) => r.map(() => Array.from({ length: TINY.nEmbd }, () => g())));
        const ref3 = refLogits(TINY, W, { embeds: emb, positionOffset: 4 });
        const got3 = tf.tidy(() => model.forward({ inputsEmbeds: tf.tensor3d(emb), positionOffset: 4 }).logits.arraySync());
        assert.ok(relErr(got3, ref3) < 1e-4);
      } finally {
        model.dispose();
      }
    }
  });
}

test('KV cache: incremental logits equal full recomputation (with padding); lastOnly', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const dir = tmp();
  writeTinyGPT2(dir, TINY, { seed: 11 });
  const model = await loadGPT2(dir);
  let before = 0;
  for (let rep = 0; rep < 2; rep++) {
  if (rep === 1) before = tf.memory().numTensors; // the model caches its causal masks on the first pass
  tf.tidy(() => {
    const ids = tf.tensor2d(IDS, undefined, 'int32');
    const mask = tf.tensor2d(MASK.map((r) => r.map((_, t) => (t < 2 ? r[t] : 1)))); // padding only in the first 2 positions
    const full = model.forward({ inputIds: ids, attentionMask: mask }).logits;
    // prefix of 3, then 1, then 2, then 1 token
    const steps = [3, 1, 2, 1];
    let past: KVCache | undefined;
    let t0 = 0;
    for (const n of steps) {
      const r = model.forward({ inputIds: ids.slice([0, t0], [2, n]) as tf.Tensor2D, attentionMask: mask.slice([0, 0], [2, t0 + n]) as tf.Tensor2D, past, useCache: true });
      const want = full.slice([0, t0, 0], [2, n, TINY.vocabSize]);
      // compare where the query is not padding (padding queries attend to nothing; any output is fine)
      const q = mask.slice([0, t0], [2, n]).reshape([2, n, 1]);
      const err = tf.max(tf.mul(tf.abs(tf.sub(r.logits, want)), q)).dataSync()[0] / tf.max(tf.abs(want)).dataSync()[0];
      assert.ok(err < 1e-5, `step at ${t0}: relative error ${err}`);
      past = r.present;
      t0 += n;
    }
    assert.equal(past!.length, 7);
    const last = model.forward({ inputIds: ids, attentionMask: mask, lastOnly: true }).logits;
    assert.deepEqual(last.shape, [2, 1, TINY.vocabSize]);
    assert.ok(tf.max(tf.abs(tf.sub(last, full.slice([0, 6, 0], [2, 1, TINY.vocabSize])))).dataSync()[0] < 1e-6);
  });
  }
  assert.equal(tf.memory().numTensors, before, 'forward leaks no tensors');
  model.dispose();
});

function lossInputs(c: TinyConfig) {
  const g = normalSampler(5);
  const prefix = [0, 1].map(() => [0, 1].map(() => Array.from({ length: c.nEmbd }, () => g())));
  const ids = [
    [3, 9, 3, 1],
    [7, 2, 8, 0],
  ];
  const attn = [
    [1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 0],
  ];
  // logits at t predict the token at t+1 (the caller shifts); prefix positions are not scored
  const targets = [
    [0, 3, 9, 3, 1, 0],
    [0, 7, 2, 8, 0, 0],
  ];
  const lossMask = [
    [0, 1, 1, 1, 1, 0],
    [0, 1, 1, 1, 0, 0],
  ];
  return { prefix, ids, attn, targets, lossMask };
}

for (const backend of ['wasm', 'cpu']) {
test(`[${backend}] gradients (all weights, tied embedding, input embeddings) agree with finite differences of the reference`, async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend(backend);
  const c: TinyConfig = { vocabSize: 13, nPositions: 8, nEmbd: 8, nLayer: 2, nHead: 2, layerNormEpsilon: 1e-5 };
  const dir = tmp();
  const raw = writeTinyGPT2(dir, c, { seed: 21, scale: 0.5 });
  const W = toRef(raw);
  const model = await loadGPT2(dir);
  const { prefix, ids, attn, targets, lossMask } = lossInputs(c);
  const prefixT = tf.tensor3d(prefix);
  const lossFn = (pre: tf.Tensor3D) => {
    const emb = tf.concat([pre, model.embedTokens(tf.tensor2d(ids, undefined, 'int32'))], 1) as tf.Tensor3D;
    const { logits } = model.forward({ inputsEmbeds: emb, attentionMask: tf.tensor2d(attn) });
    return lmLoss(logits, tf.tensor2d(targets, undefined, 'int32'), tf.tensor2d(lossMask));
  };
  const { value, grads } = tf.variableGrads(() => lossFn(prefixT));
  const gPrefix = tf.grad((p: tf.Tensor) => lossFn(p as tf.Tensor3D))(prefixT);
  const named = model.namedWeights();

  const refL = (w: typeof W, pre: number[][][]) => {
    const emb = pre.map((r, b) => [...r, ...ids[b].map((id) => Array.from(w.get('wte.weight')!.subarray(id * c.nEmbd, (id + 1) * c.nEmbd)))]);
    return refLoss(refLogits(c, w, { embeds: emb, mask: attn }), targets, lossMask);
  };
  const L0 = refL(W, prefix);
  assert.ok(Math.abs(value.dataSync()[0] - L0) < 1e-5 * Math.abs(L0), `loss ${value.dataSync()[0]} vs reference ${L0}`);

  const eps = 1e-5;
  const check = (what: string, tfGrad: number, fd: number, scale: number) => {
    assert.ok(Math.abs(tfGrad - fd) <= 2e-3 * Math.abs(fd) + 1e-4 * scale, `${what}: autodiff ${tfGrad} vs finite difference ${fd}`);
  };
  let checked = 0;
  for (const [name, v] of named) {
    const g = grads[v.name];
    assert.ok(g, `no gradient for ${name}`);
    const gd = g.dataSync();
    const scale = Math.max(...Array.from(gd, Math.abs));
    const w = W.get(name)!;
    // the largest-gradient coordinate and two others
    let imax = 0;
    for (let i = 0; i < gd.length; i++) if (Math.abs(gd[i]) > Math.abs(gd[imax])) imax = i;
    const picks = [imax, 1 % gd.length, Math.floor(gd.length / 2)];
    for (const i of picks) {
      const old = w[i];
      w[i] = old + eps;
      const Lp = refL(W, prefix);
      w[i] = old - eps;
      const Lm = refL(W, prefix);
      w[i] = old;
      check(`${name}[${i}]`, gd[i], (Lp - Lm) / (2 * eps), scale);
      checked++;
    }
  }
  assert.equal(checked, 3 * weightShapes(model.config).size);
  // the prefix (input embeddings)
  const gp = gPrefix.arraySync() as number[][][];
  for (const [b, t, i] of [
    [0, 0, 0],
    [1, 1, 5],
    [0, 1, 7],
  ]) {
    const old = prefix[b][t][i];
    prefix[b][t][i] = old + eps;
    const Lp = refL(W, prefix);
    prefix[b][t][i] = old - eps;
    const Lm = refL(W, prefix);
    prefix[b][t][i] = old;
    check(`prefix[${b},${t},${i}]`, gp[b][t][i], (Lp - Lm) / (2 * eps), 1);
  }
  tf.dispose([value, gPrefix, prefixT, ...Object.values(grads)]);
  model.dispose();
});
}

test('frozen model: no weight gradients; the same logits and input gradients as unfrozen', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const model = new GPT2({ ...(configFromHF(hfConfigJson(TINY)) as GPT2Config) }, undefined, { seed: 3 });
  const x = tf.randomNormal([2, 5, TINY.nEmbd]) as tf.Tensor3D;
  const gradX = () => tf.grad((e: tf.Tensor) => tf.sum(tf.square(model.forward({ inputsEmbeds: e as tf.Tensor3D }).logits)))(x);
  const g0 = gradX();
  const l0 = tf.tidy(() => model.forward({ inputsEmbeds: x }).logits);
  model.setTrainable(false); // on wasm, the frozen weights' transposes are cached from here on
  assert.equal(model.trainableVariables().length, 0);
  assert.ok([...model.namedWeights().values()].every((v) => !v.trainable));
  const f = () => tf.sum(model.forward({ inputsEmbeds: x }).logits) as tf.Scalar;
  assert.throws(() => tf.variableGrads(f), /not trainable|none of the .* is trainable|Cannot find a connection/);
  for (let rep = 0; rep < 2; rep++) {
    const g1 = gradX();
    const l1 = tf.tidy(() => model.forward({ inputsEmbeds: x }).logits);
    assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(g1, g0))).dataSync()[0] / tf.max(tf.abs(g0)).dataSync()[0]) < 1e-5);
    assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(l1, l0))).dataSync()[0] / tf.max(tf.abs(l0)).dataSync()[0]) < 1e-5);
    tf.dispose([g1, l1]);
  }
  model.setTrainable(true);
  assert.equal(model.trainableVariables().length, weightShapes(model.config).size);
  tf.dispose([x, g0, l0]);
  model.dispose();
});

test('dropout is active in training only', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const model = new GPT2(configFromHF(hfConfigJson(TINY)), undefined, { seed: 4 });
  tf.tidy(() => {
    const ids = tf.tensor2d([[1, 2, 3]], undefined, 'int32');
    const a = model.forward({ inputIds: ids }).logits;
    const b = model.forward({ inputIds: ids }).logits;
    const c = model.forward({ inputIds: ids, training: true }).logits;
    assert.equal(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0], 0);
    assert.ok(tf.max(tf.abs(tf.sub(a, c))).dataSync()[0] > 0);
  });
  model.dispose();
});

test('config.json: HF <-> ours, and clear errors', () => {
  const c = configFromHF(hfConfigJson(TINY));
  assert.deepEqual(
    { v: c.vocabSize, p: c.nPositions, d: c.nEmbd, l: c.nLayer, h: c.nHead, e: c.layerNormEpsilon, a: c.activation },
    { v: 61, p: 32, d: 16, l: 2, h: 4, e: 1e-5, a: 'gelu_new' },
  );
  assert.deepEqual(configFromHF(configToHF(c)), c);
  assert.throws(() => configFromHF({ n_embd: 8 }), /missing GPT-2 key\(s\) vocab_size, n_positions, n_layer, n_head/);
  assert.throws(() => configFromHF(hfConfigJson(TINY, { activation_function: 'relu' })), /activation_function "relu" is not supported/);
  assert.throws(() => configFromHF(hfConfigJson(TINY, { n_head: 5 })), /not divisible/);
  assert.equal(configFromHF({ ...hfConfigJson(TINY), n_positions: undefined, n_ctx: 64 }).nPositions, 64);
});

test('save -> load round trip in the HF layout; missing or mismatched tensors are errors naming them', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const model = new GPT2(configFromHF(hfConfigJson(TINY)), undefined, { seed: 9 });
  const dir = path.join(tmp(), 'ckpt');
  await saveGPT2(model, dir, { 'notes.txt': 'hello' });
  assert.deepEqual(fs.readdirSync(dir).sort(), ['config.json', 'model.safetensors', 'notes.txt']);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(cfg.model_type, 'gpt2');
  assert.equal(cfg.n_embd, TINY.nEmbd);
  const back = await loadGPT2(dir);
  for (const [name, v] of model.namedWeights()) {
    assert.deepEqual(back.namedWeights().get(name)!.dataSync(), v.dataSync(), name);
  }
  back.dispose();
  model.dispose();

  // errors
  const bad = tmp();
  writeTinyGPT2(bad, TINY);
  fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify(hfConfigJson({ ...TINY, nLayer: 3 })));
  await assert.rejects(loadGPT2(bad), /missing tensor\(s\) h\.2\.ln_1\.weight/);
  fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify(hfConfigJson({ ...TINY, nLayer: 1 })));
  await assert.rejects(loadGPT2(bad), /unexpected tensor\(s\) h\.1\./);
  fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify(hfConfigJson({ ...TINY, vocabSize: 60 })));
  await assert.rejects(loadGPT2(bad), /wte\.weight has shape \[61,16\], config\.json implies \[60,16\]/);
  fs.rmSync(path.join(bad, 'model.safetensors'));
  await assert.rejects(loadGPT2(bad), /has no model\.safetensors/);
});

test('lmLoss ignores masked positions and any target there', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  tf.tidy(() => {
    const logits = tf.tensor3d([[[1, 2, 3], [0, 0, 5]]]);
    const a = lmLoss(logits, tf.tensor2d([[2, 1]], undefined, 'int32'), tf.tensor2d([[1, 0]])).dataSync()[0];
    const b = lmLoss(logits, tf.tensor2d([[2, -1]], undefined, 'int32'), tf.tensor2d([[1, 0]])).dataSync()[0];
    const c = lmLoss(logits, tf.tensor2d([[2, 1e6]], undefined, 'int32'), tf.tensor2d([[1, 0]])).dataSync()[0];
    const want = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)) - 3;
    assert.ok(Math.abs(a - want) < 1e-6);
    assert.equal(a, b);
    assert.equal(a, c, 'a target far out of range under mask 0 changes nothing');
  });
});

for (const backend of ['wasm', 'cpu']) {
  test(`[${backend}] lmHeadLoss (the tied head fused with its loss) equals lmLoss of the logits, value and gradients, trainable and frozen table`, async () => {
    await ensureBackend({ quiet: true });
    await tf.setBackend(backend);
    const N = 7, d = 5, V = 11;
    const rnd = normalSampler(31);
    const hData = Array.from({ length: N * d }, () => rnd());
    const wData = Array.from({ length: V * d }, () => rnd());
    // duplicate targets (rows 0, 2, 5), masked positions with out-of-range targets
    const targets = [3, 0, 3, 10, -4, 3, 99];
    const mask = [1, 1, 1, 1, 0, 1, 0];
    for (const trainable of [true, false]) {
      const h = tf.variable(tf.tensor2d(hData, [N, d]), true, `h${trainable}${backend}`);
      const w = tf.variable(tf.tensor2d(wData, [V, d]), trainable, `w${trainable}${backend}`);
      const tg = tf.tensor1d(targets, 'int32');
      const mk = tf.tensor1d(mask);
      const ref = () => lmLoss(tf.matMul(h, w, false, true).reshape([1, N, V]) as tf.Tensor3D, tg.reshape([1, N]) as tf.Tensor2D, mk.reshape([1, N]) as tf.Tensor2D);
      const fused = () => lmHeadLoss(h, w, tg, mk);
      const vars = trainable ? [h, w] : [h];
      const a = tf.variableGrads(ref, vars);
      const b = tf.variableGrads(fused, vars);
      assert.ok(Math.abs(a.value.dataSync()[0] - b.value.dataSync()[0]) < 1e-6 * Math.abs(a.value.dataSync()[0]), `loss ${b.value.dataSync()[0]} vs ${a.value.dataSync()[0]}`);
      assert.equal(Object.keys(b.grads).length, vars.length, trainable ? 'gradients for h and the table' : 'no gradient for a frozen table');
      for (const v of vars) {
        const ga = a.grads[v.name].dataSync();
        const gb = b.grads[v.name].dataSync();
        const scale = Math.max(...Array.from(ga, Math.abs));
        for (let i = 0; i < ga.length; i++) assert.ok(Math.abs(ga[i] - gb[i]) <= 1e-5 * scale, `${v.name}[${i}]: ${gb[i]} vs ${ga[i]}`);
      }
      // without a gradient tape: the same value
      assert.ok(Math.abs(tf.tidy(fused).dataSync()[0] - a.value.dataSync()[0]) < 1e-6 * a.value.dataSync()[0]);
      tf.dispose([a.value, b.value, ...Object.values(a.grads), ...Object.values(b.grads), h, w, tg, mk]);
    }
  });
}

test('lmHeadLoss: a target whose probability underflows float32 counts as the smallest normal probability (finite loss), with the exact gradient', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  tf.tidy(() => {
    // logits 0 and -200: p[1] = e^-200 underflows
    const h = tf.tensor2d([[1, 0]]);
    const w = tf.tensor2d([[0, 0], [-200, 0]]);
    const loss = lmHeadLoss(h, w, tf.tensor1d([1], 'int32'), tf.tensor1d([1])).dataSync()[0];
    assert.ok(Math.abs(loss - -Math.log(MIN_PROB)) < 1e-3, `${loss}`);
    const g = tf.grad((x: tf.Tensor) => lmHeadLoss(x as tf.Tensor2D, w, tf.tensor1d([1], 'int32'), tf.tensor1d([1])))(h).dataSync();
    // d/dh = p @ w - w[1] = [0, 0] - [-200, 0]
    assert.ok(Math.abs(g[0] - 200) < 1e-3 && Math.abs(g[1]) < 1e-6, `${Array.from(g)}`);
  });
});

test('GPT2.hidden + headLoss give forward + lmLoss (the training losses use them)', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const model = new GPT2(configFromHF(hfConfigJson(TINY)), undefined, { seed: 9 });
  tf.tidy(() => {
    const ids = tf.tensor2d(IDS, undefined, 'int32');
    const mask = tf.tensor2d(MASK);
    const [B, T] = ids.shape;
    const a = lmLoss(model.forward({ inputIds: ids, attentionMask: mask, logitsFrom: 1 }).logits, ids.slice([0, 1], [B, T - 1]) as tf.Tensor2D, mask.slice([0, 1], [B, T - 1]) as tf.Tensor2D).dataSync()[0];
    const hid = model.hidden({ inputIds: ids, attentionMask: mask, logitsFrom: 1 });
    assert.deepEqual(hid.shape, [B, T - 1, model.config.nEmbd]);
    const b = model.headLoss(hid.reshape([-1, model.config.nEmbd]) as tf.Tensor2D, ids.slice([0, 1], [B, T - 1]).reshape([-1]) as tf.Tensor1D, mask.slice([0, 1], [B, T - 1]).reshape([-1]) as tf.Tensor1D).dataSync()[0];
    assert.ok(Math.abs(a - b) < 1e-5 * a, `${b} vs ${a}`);
  });
  model.dispose();
});

test('training steps (forward, loss, backward, AdamW) keep tensor count and memory flat', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const { AdamW } = await import('../src/lib/train/optim');
  const model = new GPT2(configFromHF(hfConfigJson(TINY)), undefined, { seed: 5 });
  const opt = new AdamW({ lr: 1e-3 });
  const ids = tf.tensor2d(IDS, undefined, 'int32');
  const mask = tf.tensor2d(MASK);
  const counts: number[] = [];
  const bytes: number[] = [];
  for (let s = 0; s < 6; s++) {
    const vars = model.trainableVariables();
    const { value, grads } = tf.variableGrads(() => lmLoss(model.forward({ inputIds: ids, attentionMask: mask, training: true }).logits, ids, mask), vars);
    opt.step(vars, vars.map((v) => grads[v.name]));
    tf.dispose([value, ...Object.values(grads)]);
    counts.push(tf.memory().numTensors);
    bytes.push(tf.memory().numBytes);
  }
  assert.deepEqual(counts.slice(2), new Array(4).fill(counts[1]), `tensor counts ${counts}`);
  assert.deepEqual(bytes.slice(2), new Array(4).fill(bytes[1]), `bytes ${bytes}`);
  tf.dispose([ids, mask]);
  model.dispose();
});

test('dropout: seeded masks (rate, scale, reproducible) and a gradient equal to the mask', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const { dropout } = await import('../src/lib/tfjs/ops');
  const x = tf.ones([200, 100]);
  const y = dropout(x, 0.25, 7);
  const v = y.dataSync();
  const kept = v.filter((e) => e !== 0);
  assert.ok(kept.every((e) => Math.abs(e - 1 / 0.75) < 1e-6));
  assert.ok(Math.abs(kept.length / v.length - 0.75) < 0.02, `kept ${kept.length / v.length}`);
  assert.deepEqual(dropout(x, 0.25, 7).dataSync(), v);
  assert.notDeepEqual(dropout(x, 0.25, 8).dataSync(), v);
  const r = tf.randomNormal([200, 100]);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(dropout(t, 0.25, 7), r)))(x);
  assert.deepEqual(g.dataSync(), tf.mul(y, r).dataSync());
  // the model: the same dropoutSeed gives the same logits
  const model = new GPT2(configFromHF(hfConfigJson(TINY)), undefined, { seed: 4 });
  const ids = tf.tensor2d([[1, 2, 3]], undefined, 'int32');
  const run = (seed: number) => tf.tidy(() => model.forward({ inputIds: ids, training: true, dropoutSeed: seed }).logits.dataSync());
  assert.deepEqual(run(3), run(3));
  assert.notDeepEqual(run(3), run(4));
  tf.dispose([x, y, r, g, ids]);
  model.dispose();
});
