// The fused GELU and LayerNorm kernels of the wasm backend (src/lib/tfjs/fused.ts, through
// tfjs/ops.ts) against float64 references of the same formulas, forward and backward, and the
// assembler they are built with (tfjs/wasm-asm.ts).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { ensureBackend } from '../src/lib/tfjs/backend';
import { ATTENTION, ATTENTION_GRAD, fusedKernels, fusedWasmBytes, installFusedKernels, GELU, GELU_GRAD, LAYER_NORM, LAYER_NORM_GRAD } from '../src/lib/tfjs/fused';
import { GPT2 } from '../src/lib/model/gpt2';
import type { WasmBackend } from '../src/lib/tfjs/wasm-internals';
import { dropoutMask, fusedAttention, gptGelu, layerNorm } from '../src/lib/tfjs/ops';
import { leb, sleb, WA } from '../src/lib/tfjs/wasm-asm';
import { normalSampler } from './helpers/gpt2-fixture';
import { mulberry32 } from '../src/lib/util/rng';

process.env.CLIPCAP_QUIET_BACKEND = '1';

const C = Math.sqrt(2 / Math.PI);
const K = 0.044715;
const geluRef = (x: number) => 0.5 * x * (1 + Math.tanh(C * (x + K * x ** 3)));
function geluGradRef(x: number): number {
  const t = Math.tanh(C * (x + K * x ** 3));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * K * x * x);
}

/** Largest |a - b| over max(|b|, floor). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1): number {
  assert.equal(a.length, b.length);
  let e = 0;
  for (let i = 0; i < a.length; i++) {
    assert.ok(Number.isFinite(a[i]), `value ${i} is ${a[i]}`);
    e = Math.max(e, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor));
  }
  return e;
}

test('wasm-asm: LEB128 encodings', () => {
  assert.deepEqual(leb(0), [0]);
  assert.deepEqual(leb(127), [127]);
  assert.deepEqual(leb(128), [0x80, 1]);
  assert.deepEqual(leb(624485), [0xe5, 0x8e, 0x26]);
  assert.deepEqual(sleb(-1), [0x7f]);
  assert.deepEqual(sleb(63), [63]);
  assert.deepEqual(sleb(64), [0xc0, 0]);
  assert.deepEqual(sleb(-123456), [0xc0, 0xbb, 0x78]);
});

test('the fused module validates, with the heap imported plain or shared', () => {
  // compiling validates (a malformed or ill-typed module throws)
  assert.doesNotThrow(() => new WA.Module(fusedWasmBytes(false)));
  assert.doesNotThrow(() => new WA.Module(fusedWasmBytes(true)));
});

test('fused GELU: forward and gradient against float64 gelu_new, saturating at large |x|', async () => {
  await ensureBackend();
  assert.ok(fusedKernels(), 'the fused kernels are registered on the wasm backend');
  const g = normalSampler(5);
  const xs = Float32Array.from({ length: 4096 }, (_, i) => (i < 24 ? [-200, -90, -88, -30, -10, -5, -1e-3, 0, 1e-3, 5, 10, 30, 88, 90, 200, -0.5, 0.5, 1, -1, 2, -2, 3, -3, 4][i] : 3 * g()));
  const x = tf.tensor2d(xs, [64, 64]);
  const dy = tf.tensor2d(Float32Array.from({ length: 4096 }, () => g()), [64, 64]);
  const y = gptGelu(x);
  const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(gptGelu(v), dy)))(x);
  const yv = y.dataSync();
  const dxv = dx.dataSync();
  const dyv = dy.dataSync();
  assert.ok(relErr(yv, Array.from(xs, geluRef), 1e-3) < 2e-6, `forward relative error ${relErr(yv, Array.from(xs, geluRef), 1e-3)}`);
  const want = Array.from(xs, (v, i) => geluGradRef(v) * dyv[i]);
  assert.ok(relErr(dxv, want, 1e-2) < 1e-5, `gradient relative error ${relErr(dxv, want, 1e-2)}`);
  // saturation: gelu(x) = x for large x, 0 for very negative x; gradients 1 and 0
  assert.equal(yv[14], 200);
  assert.ok(Math.abs(yv[0]) < 1e-30 && Math.abs(dxv[0]) < 1e-30, `gelu(-200) = ${yv[0]}, gradient ${dxv[0]}`);
  tf.dispose([x, dy, y, dx]);
});

test('fused LayerNorm: output and gradients to x, gamma and beta against float64', async () => {
  await ensureBackend();
  const g = normalSampler(9);
  const [N, d] = [37, 24];
  const xs = Float64Array.from({ length: N * d }, (_, i) => 2 * g() + (i % d === 0 ? 5 : 0) + Math.floor(i / d));
  const gs = Float64Array.from({ length: d }, () => 1 + 0.3 * g());
  const bs = Float64Array.from({ length: d }, () => 0.3 * g());
  const dys = Float64Array.from({ length: N * d }, () => g());
  const eps = 1e-5;
  // float64 reference
  const y = new Float64Array(N * d);
  const dx = new Float64Array(N * d);
  const dg = new Float64Array(d);
  const db = new Float64Array(d);
  for (let r = 0; r < N; r++) {
    const row = xs.subarray(r * d, (r + 1) * d);
    const m = row.reduce((a, v) => a + v, 0) / d;
    const v = row.reduce((a, u) => a + (u - m) ** 2, 0) / d;
    const rs = 1 / Math.sqrt(v + eps);
    const xh = Array.from(row, (u) => (u - m) * rs);
    const dxh = xh.map((_, j) => dys[r * d + j] * gs[j]);
    const m1 = dxh.reduce((a, u) => a + u, 0) / d;
    const m2 = dxh.reduce((a, u, j) => a + u * xh[j], 0) / d;
    for (let j = 0; j < d; j++) {
      y[r * d + j] = xh[j] * gs[j] + bs[j];
      dx[r * d + j] = rs * (dxh[j] - m1 - xh[j] * m2);
      dg[j] += dys[r * d + j] * xh[j];
      db[j] += dys[r * d + j];
    }
  }
  const x = tf.tensor2d(Float32Array.from(xs), [N, d]);
  const gamma = tf.tensor1d(Float32Array.from(gs));
  const beta = tf.tensor1d(Float32Array.from(bs));
  const dy = tf.tensor2d(Float32Array.from(dys), [N, d]);
  const out = layerNorm(x, gamma, beta, eps);
  const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(layerNorm(a, b, c, eps), dy)))([x, gamma, beta]);
  assert.ok(relErr(out.dataSync(), y) < 1e-5, `output ${relErr(out.dataSync(), y)}`);
  assert.ok(relErr(grads[0].dataSync(), dx) < 1e-5, `dx ${relErr(grads[0].dataSync(), dx)}`);
  assert.ok(relErr(grads[1].dataSync(), dg) < 1e-5, `dgamma ${relErr(grads[1].dataSync(), dg)}`);
  assert.ok(relErr(grads[2].dataSync(), db) < 1e-5, `dbeta ${relErr(grads[2].dataSync(), db)}`);
  tf.dispose([x, gamma, beta, dy, out, ...grads]);
});

test('the fused kernels leak no tensors', async () => {
  await ensureBackend();
  const x = tf.randomNormal([16, 32]);
  const gamma = tf.ones([32]);
  const beta = tf.zeros([32]);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) {
    tf.tidy(() => {
      layerNorm(x, gamma, beta, 1e-5);
      gptGelu(x);
      tf.grads((a: tf.Tensor, g: tf.Tensor) => tf.sum(gptGelu(layerNorm(a, g, beta, 1e-5))))([x, gamma]);
    });
  }
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([x, gamma, beta]);
});

test('fused and composed GELU and LayerNorm agree to float32 rounding (values and gradients)', async () => {
  await ensureBackend();
  const g = normalSampler(21);
  const [N, d] = [40, 32];
  const xs = Float32Array.from({ length: N * d }, () => 2 * g());
  const gs = Float32Array.from({ length: d }, () => 1 + 0.2 * g());
  const bs = Float32Array.from({ length: d }, () => 0.2 * g());
  // a block: LayerNorm then GELU, a loss weighting every output differently
  const run = () =>
    tf.tidy(() => {
      const x = tf.tensor2d(xs, [N, d]);
      const w = tf.linspace(-1, 1, N * d).reshape([N, d]);
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(gptGelu(layerNorm(a, b, c, 1e-5)), w));
      const value = f(x, tf.tensor1d(gs), tf.tensor1d(bs)).dataSync()[0];
      const grads = tf.grads(f)([x, tf.tensor1d(gs), tf.tensor1d(bs)]).map((t) => t.dataSync() as Float32Array);
      return { value, grads };
    });
  const fused = run();
  for (const name of [GELU, GELU_GRAD, LAYER_NORM, LAYER_NORM_GRAD]) tf.unregisterKernel(name, 'wasm');
  let composed: { value: number; grads: Float32Array[] };
  try {
    assert.equal(fusedKernels(), false);
    composed = run();
  } finally {
    assert.equal(installFusedKernels(tf.backend() as unknown as WasmBackend), null);
  }
  // the LayerNorm gradient subtracts nearly equal terms: float32 rounding in another order shows at 1e-5
  assert.ok(Math.abs(fused.value - composed.value) <= 1e-5 * Math.abs(composed.value) + 1e-5, `${fused.value} vs ${composed.value}`);
  fused.grads.forEach((gr, i) => assert.ok(relErr(gr, composed.grads[i], 1e-2) < 1e-4, `gradient ${i}: ${relErr(gr, composed.grads[i], 1e-2)}`));
});

/** float64 attention over rows: q/k/v column blocks; returns o and the vector-Jacobian products for dO. */
function attentionRef(rowsQ: Float64Array, wq: number, qc: number, rowsKV: Float64Array, wkv: number, kc: number, vc: number, B: number, T: number, H: number, d: number, scale: number, causal: boolean, drop: Float64Array | null, dO: Float64Array) {
  const hd = d / H;
  const o = new Float64Array(B * T * d);
  const dq = new Float64Array(rowsQ.length);
  const dkv = rowsQ === rowsKV ? dq : new Float64Array(rowsKV.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < T; i++) {
        const J = causal ? i + 1 : T;
        const qi = (b * T + i) * wq + qc + h * hd;
        const s = Array.from({ length: J }, (_, j) => {
          let acc = 0;
          for (let c = 0; c < hd; c++) acc += rowsQ[qi + c] * rowsKV[(b * T + j) * wkv + kc + h * hd + c];
          return acc * scale;
        });
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const sum = e.reduce((a, x) => a + x, 0);
        const p = e.map((x) => x / sum);
        const dr = (j: number) => (drop ? drop[((b * H + h) * T + i) * T + j] : 1);
        const oi = (b * T + i) * d + h * hd;
        for (let j = 0; j < J; j++) for (let c = 0; c < hd; c++) o[oi + c] += p[j] * dr(j) * rowsKV[(b * T + j) * wkv + vc + h * hd + c];
        // backward
        const dp = Array.from({ length: J }, (_, j) => {
          let acc = 0;
          for (let c = 0; c < hd; c++) acc += dO[oi + c] * rowsKV[(b * T + j) * wkv + vc + h * hd + c];
          return acc * dr(j);
        });
        const rd = dp.reduce((a, x, j) => a + x * p[j], 0);
        for (let j = 0; j < J; j++) {
          const ds = p[j] * (dp[j] - rd) * scale;
          for (let c = 0; c < hd; c++) {
            dq[qi + c] += ds * rowsKV[(b * T + j) * wkv + kc + h * hd + c];
            dkv[(b * T + j) * wkv + kc + h * hd + c] += ds * rowsQ[qi + c];
            dkv[(b * T + j) * wkv + vc + h * hd + c] += p[j] * dr(j) * dO[oi + c];
          }
        }
      }
  return { o, dq, dkv };
}

test('fused attention: output and gradients against float64, causal with dropout on one qkv tensor, bidirectional on two', async () => {
  await ensureBackend();
  const g = normalSampler(33);
  for (const { causal, two, T, dropRate } of [
    { causal: true, two: false, T: 7, dropRate: 0.3 },
    { causal: false, two: true, T: 8, dropRate: 0 },
  ]) {
    const [B, H, d] = [3, 2, 16];
    const wq = two ? d : 3 * d;
    const wkv = two ? 2 * d : 3 * d;
    const rowsQ = Float64Array.from({ length: B * T * wq }, () => g());
    const rowsKV = two ? Float64Array.from({ length: B * T * wkv }, () => g()) : rowsQ;
    const dO = Float64Array.from({ length: B * T * d }, () => g());
    const seed = 1234;
    const mask = dropRate > 0 ? (dropoutMask([B, H, T, T], dropRate, seed).dataSync() as Float32Array) : null;
    const kc = two ? 0 : d;
    const vc = two ? d : 2 * d;
    const scale = 1 / Math.sqrt(d / H);
    const ref = attentionRef(rowsQ, wq, 0, rowsKV, wkv, kc, vc, B, T, H, d, scale, causal, mask ? Float64Array.from(mask) : null, dO);
    const qT = tf.tensor2d(Float32Array.from(rowsQ), [B * T, wq]);
    const kvT = two ? tf.tensor2d(Float32Array.from(rowsKV), [B * T, wkv]) : qT;
    const dOT = tf.tensor2d(Float32Array.from(dO), [B * T, d]);
    const opts = { causal, scale, ...(dropRate > 0 ? { dropout: { rate: dropRate, seed } } : {}) };
    const o = fusedAttention([qT, 0], [kvT, kc], [kvT, vc], B, T, H, opts);
    const f = (...ts: tf.Tensor[]) => tf.sum(tf.mul(fusedAttention([ts[0] as tf.Tensor2D, 0], [(two ? ts[1] : ts[0]) as tf.Tensor2D, kc], [(two ? ts[1] : ts[0]) as tf.Tensor2D, vc], B, T, H, opts), dOT));
    const grads = tf.grads(f)(two ? [qT, kvT] : [qT]);
    const label = `causal ${causal}, two tensors ${two}`;
    // (float32 sums of products over keys and queries: the gradients agree to a few 1e-5)
    assert.ok(relErr(o.dataSync(), ref.o, 1e-2) < 1e-5, `${label}: output ${relErr(o.dataSync(), ref.o, 1e-2)}`);
    assert.ok(relErr(grads[0].dataSync(), ref.dq, 1e-2) < 5e-5, `${label}: gradient to q ${relErr(grads[0].dataSync(), ref.dq, 1e-2)}`);
    if (two) assert.ok(relErr(grads[1].dataSync(), ref.dkv, 1e-2) < 5e-5, `${label}: gradient to kv ${relErr(grads[1].dataSync(), ref.dkv, 1e-2)}`);
    tf.dispose([qT, kvT, dOT, o, ...grads]);
  }
});

test('GPT-2 training loss and gradients, with dropout: the fused kernels equal the composed ops to float32 rounding (same dropout masks)', async () => {
  await ensureBackend();
  const config = { vocabSize: 37, nPositions: 16, nEmbd: 16, nLayer: 2, nHead: 2, layerNormEpsilon: 1e-5, activation: 'gelu_new' as const, embdPdrop: 0.1, residPdrop: 0.1, attnPdrop: 0.2 };
  const model = new GPT2(config, undefined, { seed: 5 });
  const ids = tf.tensor2d([[1, 5, 9, 2, 30, 7, 7, 3], [4, 4, 11, 0, 36, 2, 8, 1]], undefined, 'int32');
  const targets = tf.tensor1d([5, 9, 2, 30, 7, 7, 3, 0, 4, 11, 0, 36, 2, 8, 1, 0], 'int32');
  const mask = tf.tensor1d([1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0]);
  const run = () =>
    tf.tidy(() => {
      const vars = model.trainableVariables();
      const { value, grads } = tf.variableGrads(() => {
        const h = model.hidden({ inputIds: ids, training: true, dropoutSeed: 77 });
        return model.headLoss(h.reshape([16, 16]) as tf.Tensor2D, targets, mask);
      }, vars);
      return { value: value.dataSync()[0], grads: vars.map((v) => grads[v.name].dataSync() as Float32Array) };
    });
  const fused = run();
  for (const name of [GELU, GELU_GRAD, LAYER_NORM, LAYER_NORM_GRAD, ATTENTION, ATTENTION_GRAD]) tf.unregisterKernel(name, 'wasm');
  let composed: { value: number; grads: Float32Array[] };
  try {
    composed = run();
  } finally {
    assert.equal(installFusedKernels(tf.backend() as unknown as WasmBackend), null);
  }
  assert.ok(Math.abs(fused.value - composed.value) < 1e-5 * Math.abs(composed.value), `loss ${fused.value} vs ${composed.value}`);
  fused.grads.forEach((g, i) => assert.ok(relErr(g, composed.grads[i], 1e-3) < 1e-4, `gradient of weight ${i}: ${relErr(g, composed.grads[i], 1e-3)}`));
  tf.dispose([ids, targets, mask]);
  model.dispose();
});

test('the sum-of-squares kernel gives globalNorm the bits of its JavaScript loop, tails and all', async () => {
  await ensureBackend({ quiet: true });
  assert.ok(fusedKernels(), 'the fused kernels are registered on the wasm backend');
  const { globalNorm } = await import('../src/lib/train/optim');
  const { fusedSumSquares } = await import('../src/lib/tfjs/ops');
  const normal = normalSampler(17);
  // the loop globalNorm ran before the kernel: four float64 partial sums, the tail into the first
  const loopNorm = (xs: Float32Array[]) => {
    let sq = 0;
    for (const v of xs) {
      let [s0, s1, s2, s3] = [0, 0, 0, 0];
      const n4 = v.length - (v.length % 4);
      for (let i = 0; i < n4; i += 4) {
        s0 += v[i] * v[i];
        s1 += v[i + 1] * v[i + 1];
        s2 += v[i + 2] * v[i + 2];
        s3 += v[i + 3] * v[i + 3];
      }
      for (let i = n4; i < v.length; i++) s0 += v[i] * v[i];
      sq += s0 + s1 + s2 + s3;
    }
    return Math.sqrt(sq);
  };
  // sizes with every tail length, values over many magnitudes (float32 squares round in float64 only when summed)
  const xs = [1, 3, 4, 7, 1024, 4099, 100_003].map((n, k) => Float32Array.from({ length: n }, () => normal() * 10 ** ((k % 5) - 2)));
  const ts = xs.map((x) => tf.tensor1d(x));
  assert.equal(globalNorm(ts), loopNorm(xs));
  // each lane sums its own positions
  const parts = fusedSumSquares(tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8, 9]))!;
  assert.deepEqual(parts, [1 + 25, 4 + 36, 9 + 49, 16 + 64]);
  tf.dispose(ts);
});

test('fused dropout mask: bit for bit the JavaScript mulberry32 draws, any size, seed and rate', async () => {
  await ensureBackend();
  assert.ok(fusedKernels());
  const ref = (n: number, rate: number, seed: number): Float32Array => {
    const draw = mulberry32(Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) >>> 0);
    const keep = 1 - rate;
    return Float32Array.from({ length: n }, () => (draw() < keep ? 1 / keep : 0));
  };
  // sizes with every tail length; rates whose threshold keep * 2^32 is whole (0.5, 0.25) or not; a rate
  // so small its threshold passes 2^32 - 1 (drawn in JavaScript); seeds past 2^31 and negative
  for (const [shape, rate, seed] of [
    [[1000], 0.1, 1], [[3, 333], 0.1, 2], [[1001], 0.5, 3], [[1002], 0.25, 4], [[1003], 0.9, 5],
    [[7], 1e-12, 6], [[2, 4, 5, 5], 0.1, 0xfffffff0], [[64], 0.3, -17], [[1], 0.1, 9],
  ] as [number[], number, number][]) {
    const got = dropoutMask(shape, rate, seed);
    assert.deepEqual(got.shape, shape);
    const a = got.dataSync() as Float32Array;
    got.dispose();
    const want = ref(a.length, rate, seed);
    assert.ok(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(want.buffer)), `mask ${shape} rate ${rate} seed ${seed} differs`);
    if (a.length >= 1000) {
      const kept = a.filter((v) => v > 0).length / a.length;
      assert.ok(Math.abs(kept - (1 - rate)) < 0.06, `kept share ${kept} at rate ${rate}`);
    }
  }
});

test('fused GELU: the gradient from the sigmoid the forward kept equals, bit for bit, the one that computes it again', async () => {
  await ensureBackend();
  assert.ok(fusedKernels());
  const g = normalSampler(11);
  const x = tf.tensor2d(Float32Array.from({ length: 4096 }, (_, i) => (i < 6 ? [-90, -10, 0, 1e-3, 10, 90][i] : 3 * g())), [32, 128]);
  const dy = tf.tensor2d(Float32Array.from({ length: 4096 }, () => g()), [32, 128]);
  const run = (name: string, inputs: tf.NamedTensorMap, attrs = {}) => tf.engine().runKernel(name, inputs, attrs) as tf.Tensor | tf.Tensor[];
  const [y, s] = run(GELU, { x }, { keepS: 1 }) as tf.Tensor[];
  const yPlain = run(GELU, { x }) as tf.Tensor[];
  const bits = (t: tf.Tensor) => Buffer.from((t.dataSync() as Float32Array).buffer.slice(0));
  assert.ok(bits(y).equals(bits(yPlain[0])), 'the forward with s kept gives the same y');
  const withS = run(GELU_GRAD, { x, s, dy }) as tf.Tensor;
  const without = run(GELU_GRAD, { x, dy }) as tf.Tensor;
  assert.ok(bits(withS).equals(bits(without)), 'the gradients differ');
  tf.dispose([x, dy, y, s, ...yPlain, withS, without]);
});
