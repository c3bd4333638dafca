import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ensureBackend } from '../src/lib/tfjs/backend';
import { AdamW, clipByGlobalNorm, clipScale, globalNorm, linearWarmupDecay } from '../src/lib/train/optim';
import { storageView } from '../src/lib/tfjs/storage';
import { normalSampler } from './helpers/gpt2-fixture';

process.env.CLIPCAP_QUIET_BACKEND = '1';

/** torch.optim.AdamW's algorithm, float64, written from its documentation. */
function refAdamW(p: number[], grads: number[][], o: { lr: number; b1: number; b2: number; eps: number; wd: number }): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const x = p.slice();
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < x.length; i++) {
      x[i] *= 1 - o.lr * o.wd;
      m[i] = o.b1 * m[i] + (1 - o.b1) * g[i];
      v[i] = o.b2 * v[i] + (1 - o.b2) * g[i] * g[i];
      const mhat = m[i] / (1 - o.b1 ** t);
      const vhat = v[i] / (1 - o.b2 ** t);
      x[i] -= (o.lr * mhat) / (Math.sqrt(vhat) + o.eps);
    }
  });
  return x;
}

function randomList(n: number, seed: number, scale = 1): number[] {
  const g = normalSampler(seed);
  return Array.from({ length: n }, () => scale * g());
}

for (const backend of ['wasm', 'cpu']) {
  test(`[${backend}] AdamW equals PyTorch's algorithm; first step moves each weight by ~lr`, async () => {
    await ensureBackend({ quiet: true });
    await tf.setBackend(backend);
    const p0 = randomList(50, 1);
    const grads = [2, 3, 4, 5, 6].map((s) => randomList(50, s, 0.1));
    const o = { lr: 1e-2, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1 };
    const v = tf.variable(tf.tensor1d(p0));
    const opt = new AdamW({ lr: o.lr, weightDecay: o.wd });
    const before = tf.memory().numTensors;
    grads.forEach((g, k) => {
      const gt = tf.tensor1d(g);
      opt.step([v], [gt]);
      gt.dispose();
      if (k === 0) {
        const got = v.dataSync();
        for (let i = 0; i < 50; i++) assert.ok(Math.abs(got[i] - (p0[i] * (1 - o.lr * o.wd) - o.lr * Math.sign(g[i]))) < 1e-6);
      }
    });
    assert.equal(tf.memory().numTensors, before);
    const want = refAdamW(p0, grads, o);
    const got = v.dataSync();
    for (let i = 0; i < 50; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `${i}: ${got[i]} vs ${want[i]}`);
    assert.equal(opt.stepCount, 5);
    v.dispose();
  });
}

test('AdamW: Map and name-record call forms, schedules, and shared storage is never written in place', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const own = (x: number[]) => {
    const t = tf.tensor1d(x);
    const v = tf.variable(t);
    t.dispose(); // the variable is now the only owner of its storage
    return v;
  };
  const a = own([1, 2, 3]);
  const b = tf.variable(tf.tensor1d([1, 2, 3]));
  const c = tf.variable(tf.tensor1d([1, 2, 3]));
  const g = tf.tensor1d([0.5, -0.5, 1]);
  const sched = (s: number) => (s + 1) * 0.1;
  const o1 = new AdamW({ lr: sched });
  const o2 = new AdamW({ lr: sched });
  const o3 = new AdamW({ lr: 0.5 });
  const aliasOfC = c.clone(); // shares c's storage
  assert.equal(storageView(c, true), null);
  assert.ok(storageView(a, true));
  for (let i = 0; i < 3; i++) {
    o1.step([a], [g]);
    o2.step([b], [g]);
    o3.step([c], [g], sched(i)); // an explicit rate equals the schedule's
  }
  assert.deepEqual(a.dataSync(), b.dataSync());
  assert.deepEqual(a.dataSync(), c.dataSync());
  assert.deepEqual([...aliasOfC.dataSync()], [1, 2, 3]);
  tf.dispose([a, b, c, g, aliasOfC]);
});

test('AdamW state: save + load gives the same weights as an uninterrupted run (bit for bit)', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const init = [randomList(12, 7), randomList(5, 8)];
  const gradsAt = (k: number) => [tf.tensor1d(randomList(12, 100 + k)), tf.tensor1d(randomList(5, 200 + k))];
  const make = () => init.map((x, i) => ({ name: `w${i}`, variable: tf.variable(tf.tensor1d(x)) }));
  const lr = (s: number) => linearWarmupDecay(s, { lr: 0.05, warmupSteps: 2, totalSteps: 8 });
  const run = (vars: ReturnType<typeof make>, opt: AdamW, from: number, to: number) => {
    for (let k = from; k < to; k++) {
      const gs = gradsAt(k);
      opt.step(vars.map((v) => v.variable), gs);
      tf.dispose(gs);
    }
  };
  const full = make();
  run(full, new AdamW({ lr, weightDecay: 0.01 }), 0, 8);

  const part = make();
  const o1 = new AdamW({ lr, weightDecay: 0.01 });
  run(part, o1, 0, 3);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-opt-')), 'optimizer.safetensors');
  o1.saveState(file, part);
  const weights = part.map((v) => v.variable.dataSync().slice());
  // a new process: fresh variables with the saved weights, a fresh optimizer
  const resumed = init.map((_, i) => ({ name: `w${i}`, variable: tf.variable(tf.tensor1d(weights[i])) }));
  const o2 = new AdamW({ lr, weightDecay: 0.01 });
  o2.loadState(file, resumed);
  assert.equal(o2.stepCount, 3);
  run(resumed, o2, 3, 8);
  for (let i = 0; i < 2; i++) assert.deepEqual(resumed[i].variable.dataSync(), full[i].variable.dataSync());

  // getState / setState with plain arrays
  const s = o2.getState(resumed);
  assert.ok(s.m.w0 instanceof Float32Array && s.v.w1 instanceof Float32Array);
  const o3 = new AdamW({ lr });
  o3.setState(s, resumed);
  assert.deepEqual(o3.getState(resumed), s);
  assert.throws(() => o3.setState({ step: 1, m: { w0: new Float32Array(3) }, v: { w0: new Float32Array(3) } }, resumed), /do not match/);
  fs.writeFileSync(file, 'garbage!garbage!garbage!');
  assert.throws(() => new AdamW({ lr: 1 }).loadState(file, resumed), /optimizer\.safetensors/);
  tf.dispose([...full, ...part, ...resumed].map((v) => v.variable));
});

test('linearWarmupDecay matches get_linear_schedule_with_warmup', () => {
  const o = { lr: 2, warmupSteps: 10, totalSteps: 110 };
  assert.deepEqual([0, 5, 10, 60, 110, 200].map((s) => linearWarmupDecay(s, o)), [0, 1, 2, 1, 0, 0]);
  assert.equal(linearWarmupDecay(0, { lr: 1, warmupSteps: 0, totalSteps: 4 }), 1);
  assert.equal(linearWarmupDecay(3, { lr: 1, warmupSteps: 0, totalSteps: 4 }), 0.25);
});

test('clipByGlobalNorm: torch semantics, same container when under the limit', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const gs = [tf.tensor1d([3, 0]), tf.tensor2d([[0, 4]])];
  assert.ok(Math.abs(globalNorm(gs) - 5) < 1e-12);
  const same = clipByGlobalNorm(gs, 10);
  assert.equal(same.grads, gs);
  assert.equal(same.norm, 5);
  const c = clipByGlobalNorm(gs, 1);
  assert.notEqual(c.grads, gs);
  assert.ok(Math.abs(globalNorm(c.grads) - 5 / (5 + 1e-6)) < 1e-6);
  const rec = clipByGlobalNorm({ a: gs[0], b: gs[1] }, 2.5);
  assert.ok(Math.abs(rec.grads.a.dataSync()[0] - 1.5) < 1e-5);
  tf.dispose([...gs, ...c.grads, rec.grads.a, rec.grads.b]);
});

test('after a step, matMul sees the new weights (no stale packed-weight caches on wasm)', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const t = tf.tensor2d(randomList(24, 3), [6, 4]);
  const w = tf.variable(t);
  t.dispose();
  const x = tf.tensor2d(randomList(30, 4), [5, 6]);
  const opt = new AdamW({ lr: 0.1 });
  for (let k = 0; k < 3; k++) {
    tf.matMul(x, w).dispose(); // the wasm backend packs w for XNNPACK, cached by tensor id
    const g = tf.onesLike(w);
    opt.step([w], [g]);
    g.dispose();
    const fresh = tf.tensor2d(w.dataSync(), [6, 4]);
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(tf.matMul(x, w), tf.matMul(x, fresh)))).dataSync()[0]);
    fresh.dispose();
    assert.equal(diff, 0, `step ${k}`);
  }
  tf.dispose([x, w]);
});

test('AdamW: the WebAssembly SIMD kernel and the JavaScript fallback give identical parameters and moments', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const n = 40_003; // several chunks and a tail that is not a multiple of 4
  const p0 = randomList(n, 11);
  const runs = [true, false].map((simd) => {
    const v = tf.variable(tf.tensor1d(p0));
    const opt = new AdamW({ lr: 3e-3, weightDecay: 0.05, simd });
    assert.equal(opt.simd, simd);
    for (let k = 0; k < 4; k++) {
      const g = tf.tensor1d(randomList(n, 300 + k, 0.2));
      opt.step([v], [g]);
      g.dispose();
    }
    const out = { p: v.dataSync().slice(), state: opt.getState([{ name: 'w', variable: v }]) };
    v.dispose();
    return out;
  });
  assert.deepEqual(runs[0].p, runs[1].p);
  assert.deepEqual(runs[0].state.m.w, runs[1].state.m.w);
  assert.deepEqual(runs[0].state.v.w, runs[1].state.v.w);
});

for (const backend of ['wasm', 'cpu']) {
  test(`[${backend}] AdamW gradScale (clipping inside the update) equals clipping the gradients first, bit for bit, on the SIMD kernel and the fallback`, async () => {
    await ensureBackend({ quiet: true });
    await tf.setBackend(backend);
    const n = 10_007;
    const p0 = randomList(n, 21);
    const run = (simd: boolean, inKernel: boolean) => {
      const v = tf.variable(tf.tensor1d(p0));
      const opt = new AdamW({ lr: 2e-3, weightDecay: 0.01, simd });
      for (let k = 0; k < 3; k++) {
        const g = tf.tensor1d(randomList(n, 400 + k, 0.5));
        const { scale, norm } = clipScale([g], 1);
        assert.ok(scale < 1 && Math.abs(scale - 1 / (norm + 1e-6)) < 1e-15, 'the gradients are clipped');
        if (inKernel) opt.step([v], [g], undefined, undefined, scale);
        else {
          const c = clipByGlobalNorm([g], 1);
          opt.step([v], c.grads);
          tf.dispose(c.grads);
        }
        g.dispose();
      }
      const out = { p: v.dataSync().slice(), s: opt.getState([{ name: 'w', variable: v }]) };
      v.dispose();
      return out;
    };
    const first = run(true, false);
    for (const [simd, inKernel] of [[true, true], [false, true], [false, false]]) {
      const r = run(simd, inKernel);
      assert.deepEqual(r.p, first.p, `simd ${simd}, in the kernel ${inKernel}`);
      assert.deepEqual(r.s.m.w, first.s.m.w);
      assert.deepEqual(r.s.v.w, first.s.v.w);
    }
    const v = tf.variable(tf.tensor1d([1, 2]));
    assert.throws(() => new AdamW({ lr: 1 }).step([v], [tf.tensor1d([1, 1])], undefined, undefined, 2), /gradScale/);
    v.dispose();
  });
}

test('globalNorm: float64 sum of squares over every gradient, any length', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const a = randomList(1_001, 31);
  const b = randomList(7, 32);
  let sq = 0;
  for (const x of [...a, ...b]) sq += Math.fround(x) * Math.fround(x);
  const gs = [tf.tensor1d(a), tf.tensor1d(b)];
  assert.ok(Math.abs(globalNorm(gs) - Math.sqrt(sq)) <= 1e-12 * Math.sqrt(sq));
  tf.dispose(gs);
});

test('AdamW learning-rate scales per variable (parameter groups) equal separate rates; lrScalesFor matches name prefixes', async () => {
  await ensureBackend();
  const { lrScalesFor } = await import('../src/lib/train/loop');
  const g = tf.tensor1d([0.5, -0.5, 1]);
  const a = tf.variable(tf.tensor1d([1, 2, 3]));
  const b = tf.variable(tf.tensor1d([1, 2, 3]));
  const c = tf.variable(tf.tensor1d([1, 2, 3]));
  const grouped = new AdamW({ lr: 0.1, weightDecay: 0.01 });
  const alone = new AdamW({ lr: 0.05, weightDecay: 0.01 });
  for (let i = 0; i < 3; i++) {
    grouped.step([a, b], [g, g], undefined, [1, 0.5]);
    alone.step([c], [g]);
  }
  assert.deepEqual(b.dataSync(), c.dataSync());
  assert.notDeepEqual(a.dataSync(), b.dataSync());
  assert.throws(() => grouped.step([a], [g], undefined, [1, 2]), /scales differ in number/);
  const named = [{ name: 'mapper.w', variable: a }, { name: 'lm.wte.weight', variable: b }];
  assert.deepEqual(lrScalesFor(named, { 'lm.': 0.1 }), [1, 0.1]);
  assert.equal(lrScalesFor(named, undefined), undefined);
  tf.dispose([a, b, c, g]);
});
