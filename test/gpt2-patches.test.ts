// The wasm backend patches (src/lib/tfjs/wasm-patches.ts and the files it installs) against the stock kernels of the cpu backend.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'child_process';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ensureBackend } from '../src/lib/tfjs/backend';
import { setMatMulProvider } from '../src/lib/tfjs/matmul';
import { loadBlas } from '../src/lib/tfjs/blas-matmul';
import { wasmPatchStatus } from '../src/lib/tfjs/patch-status';
import { normalSampler } from './helpers/gpt2-fixture';

process.env.CLIPCAP_QUIET_BACKEND = '1';

function rand(shape: number[], seed: number): { shape: number[]; data: Float32Array } {
  const g = normalSampler(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, () => g()) };
}

/** Run `f` on the given backend with fresh tensors from `inputs`; returns plain arrays. */
async function on(backend: string, inputs: { shape: number[]; data: Float32Array }[], f: (...t: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const ts = inputs.map((x) => tf.tensor(x.data, x.shape));
    const r = f(...ts);
    return (Array.isArray(r) ? r : [r]).map((t) => t.dataSync() as Float32Array);
  });
}

function close(a: Float32Array, b: Float32Array, tol = 1e-5): number {
  assert.equal(a.length, b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  const e = num / Math.max(den, 1e-30);
  assert.ok(e < tol, `relative error ${e}`);
  return e;
}

// [a shape, b shape, transposeA, transposeB]; large ones go to onnxruntime, small plain ones to XNNPACK
const CASES: [number[], number[], boolean, boolean][] = [
  [[3, 5], [5, 4], false, false],
  [[5, 3], [5, 4], true, false],
  [[3, 5], [4, 5], false, true],
  [[5, 3], [4, 5], true, true],
  [[64, 96], [96, 80], false, false],
  [[96, 64], [96, 80], true, false],
  [[64, 96], [80, 96], false, true],
  [[96, 64], [80, 96], true, true],
  [[4, 256], [256, 160], false, false], // few rows: XNNPACK
  [[4, 256], [160, 256], false, true], // few rows, large transpose: onnxruntime
  [[6, 7, 9], [6, 9, 5], false, false],
  [[6, 9, 7], [6, 5, 9], true, true],
  [[6, 7, 9], [1, 5, 9], false, true],
  [[1, 9, 7], [6, 9, 5], true, false],
  [[2, 3, 40, 64], [2, 3, 40, 64], false, true],
  [[2, 3, 40, 40], [2, 3, 40, 64], false, false],
];

test('matMul on wasm (OpenBLAS, onnxruntime, XNNPACK with explicit transposes, stock) equals the cpu backend, forward and gradients', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  // OpenBLAS is tested where the library is installed (Debian: libopenblas0; .ci/run installs it)
  const blasHere = loadBlas(1).blas !== null;
  for (const provider of [...(blasHere ? (['blas'] as const) : []), 'ort', 'wasm', 'stock'] as const) {
    await tf.setBackend('wasm');
    setMatMulProvider(provider);
    if (provider === 'ort') assert.equal(wasmPatchStatus().matmul, 'onnxruntime', wasmPatchStatus().ortReason);
    if (provider === 'blas') assert.equal(wasmPatchStatus().matmul, 'openblas', wasmPatchStatus().blasReason);
    for (const [i, [as, bs, tA, tB]] of CASES.entries()) {
      const a = rand(as, 10 + i);
      const b = rand(bs, 50 + i);
      const fwd = (x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, tA, tB);
      const [want] = await on('cpu', [a, b], fwd);
      const [got] = await on('wasm', [a, b], fwd);
      close(got, want);
      // tfjs-core's matMul gradient does not reduce broadcast batch dimensions (on any backend)
      if (as.slice(0, -2).join() !== bs.slice(0, -2).join()) continue;
      // gradients of sum(matMul * r) with respect to both inputs (the stock gradient, transposed products)
      const outShape = (await on('cpu', [a, b], fwd).then(() => tf.tidy(() => fwd(tf.tensor(a.data, a.shape), tf.tensor(b.data, b.shape)).shape))) as number[];
      const r = rand(outShape, 90 + i);
      const grads = (x: tf.Tensor, y: tf.Tensor, rr: tf.Tensor) => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(fwd(p, q), rr)))([x, y]);
      const gw = await on('cpu', [a, b, r], grads);
      const gg = await on('wasm', [a, b, r], grads);
      close(gg[0], gw[0]);
      close(gg[1], gw[1]);
    }
  }
  await tf.setBackend('wasm');
  setMatMulProvider('auto');
});

test('OpenBLAS: a missing library is a clear reason and onnxruntime takes over; a batch of 1 is broadcast', async () => {
  const missing = loadBlas(1, 'libno-such-blas.so');
  assert.equal(missing.blas, null);
  assert.match(missing.reason ?? '', /^no BLAS library \(libno-such-blas\.so: /);
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const st = setMatMulProvider('blas', { blasLibrary: 'libno-such-blas.so' });
  assert.equal(st.matmul, 'onnxruntime');
  assert.match(st.blasReason ?? '', /libno-such-blas/);
  setMatMulProvider('auto');
  const { blas } = loadBlas(1);
  if (!blas) return; // no OpenBLAS on this machine: the fallback above is what runs
  // [2, 2, 3] @ [1, 3, 2] (b broadcast), and [1, 2, 3]^T-free @ [2, 3, 2] (a broadcast), against plain loops
  const a = Float32Array.from({ length: 12 }, (_, i) => i - 5);
  const b = Float32Array.from({ length: 12 }, (_, i) => (i * 7) % 5 - 2);
  const ref = (ab: number, bb: number) => {
    const batch = Math.max(ab, bb);
    const out = new Float32Array(batch * 4);
    for (let i = 0; i < batch; i++)
      for (let r = 0; r < 2; r++)
        for (let c = 0; c < 2; c++) {
          let s = 0;
          for (let k = 0; k < 3; k++) s += a[(ab === 1 ? 0 : i * 6) + r * 3 + k] * b[(bb === 1 ? 0 : i * 6) + k * 2 + c];
          out[i * 4 + r * 2 + c] = s;
        }
    return out;
  };
  const o1 = new Float32Array(8);
  blas.run(a, [2, 2, 3], b, [1, 3, 2], false, false, o1, [2, 2, 2]);
  assert.deepEqual([...o1], [...ref(2, 1)]);
  const o2 = new Float32Array(8);
  blas.run(a, [1, 2, 3], b, [2, 3, 2], false, false, o2, [2, 2, 2]);
  assert.deepEqual([...o2], [...ref(1, 2)]);
});

test('UnsortedSegmentSum on wasm: the kernel and the stock tf.gather gradient equal the cpu backend', async () => {
  await ensureBackend({ quiet: true });
  const x = rand([7, 3, 2], 1);
  const segIdx = { shape: [7], data: Float32Array.from([0, 2, 2, 4, 0, -1, 1]) };
  const seg = (v: tf.Tensor, s: tf.Tensor) => tf.unsortedSegmentSum(v, tf.cast(s, 'int32') as tf.Tensor1D, 5);
  close((await on('wasm', [x, segIdx], seg))[0], (await on('cpu', [x, segIdx], seg))[0]);
  // gather gradient with repeated indices
  const table = rand([6, 4], 2);
  const idx = { shape: [5], data: Float32Array.from([1, 3, 1, 5, 1]) };
  const w = rand([5, 4], 3);
  const gatherGrad = (t: tf.Tensor, i: tf.Tensor, ww: tf.Tensor) => tf.grad((tt: tf.Tensor) => tf.sum(tf.mul(tf.gather(tt, tf.cast(i, 'int32') as tf.Tensor as tf.Tensor1D), ww)))(t);
  close((await on('wasm', [table, idx, w], gatherGrad))[0], (await on('cpu', [table, idx, w], gatherGrad))[0]);
});

test('GatherV2 on wasm (block copies) equals the cpu backend on every axis, for float32 and int32, with its gradient; a bad index is an error', async () => {
  await ensureBackend({ quiet: true });
  assert.ok(wasmPatchStatus().patched.some((p) => p.startsWith('GatherV2')), 'the GatherV2 patch is installed');
  const x = rand([4, 3, 5, 2], 7);
  const cases: [number[], number[], number][] = [
    [[2, 0, 2, 3], [4], 0],
    [[1, 0], [2], 1],
    [[4, 0, 4, 1, 2, 3], [2, 3], 2],
    [[1, 1, 0], [3], 3],
    [[3], [1], -4],
  ];
  for (const [ids, shape, axis] of cases) {
    const idx = { shape, data: Float32Array.from(ids) };
    const g = (t: tf.Tensor, i: tf.Tensor) => tf.gather(t, tf.cast(i, 'int32'), axis);
    const want = await on('cpu', [x, idx], g);
    const got = await on('wasm', [x, idx], g);
    assert.deepEqual([...got[0]], [...want[0]], `axis ${axis}, indices ${ids}`);
    const gi = (t: tf.Tensor, i: tf.Tensor) => tf.cast(tf.gather(tf.cast(tf.mul(t, 100), 'int32'), tf.cast(i, 'int32'), axis), 'float32');
    assert.deepEqual([...(await on('wasm', [x, idx], gi))[0]], [...(await on('cpu', [x, idx], gi))[0]], `int32, axis ${axis}`);
  }
  // the gradient of a gather along axis 0 (an embedding lookup), repeated indices
  const idx = { shape: [5], data: Float32Array.from([1, 3, 1, 0, 1]) };
  const w = rand([5, 3, 5, 2], 8);
  const gg = (t: tf.Tensor, i: tf.Tensor, ww: tf.Tensor) => tf.grad((tt: tf.Tensor) => tf.sum(tf.mul(tf.gather(tt, tf.cast(i, 'int32') as tf.Tensor1D), ww)))(t);
  close((await on('wasm', [x, idx, w], gg))[0], (await on('cpu', [x, idx, w], gg))[0]);
  await tf.setBackend('wasm');
  const before = tf.memory().numTensors;
  assert.throws(() => tf.tidy(() => tf.gather(tf.tensor(x.data, x.shape), tf.tensor1d([0, 4], 'int32'))), /index value 4 is not in \[0, 3\]/);
  assert.equal(tf.memory().numTensors, before, 'nothing leaks from a refused gather');
});

test('Slice, SplitV and PadV2 on wasm (run copies) equal the cpu backend, float32 and int32, with their gradients', async () => {
  await ensureBackend({ quiet: true });
  assert.ok(wasmPatchStatus().patched.some((p) => p.includes('Slice') && p.includes('SplitV') && p.includes('PadV2')), 'the patches are installed');
  const x = rand([3, 4, 5, 6], 9);
  const both = async (label: string, f: (t: tf.Tensor) => tf.Tensor | tf.Tensor[]) => {
    const want = await on('cpu', [x], f);
    const got = await on('wasm', [x], f);
    assert.equal(got.length, want.length, label);
    got.forEach((g, i) => assert.deepEqual([...g], [...want[i]], `${label}, output ${i}`));
    const asInt = (t: tf.Tensor) => f(tf.cast(tf.mul(t, 100), 'int32'));
    const wi = await on('cpu', [x], (t) => [asInt(t)].flat().map((o) => tf.cast(o, 'float32')));
    const gi = await on('wasm', [x], (t) => [asInt(t)].flat().map((o) => tf.cast(o, 'float32')));
    gi.forEach((g, i) => assert.deepEqual([...g], [...wi[i]], `${label}, int32, output ${i}`));
  };
  await both('slice inner', (t) => tf.slice(t, [1, 1, 2, 3], [2, 2, 3, 2]));
  await both('slice whole tail', (t) => tf.slice(t, [0, 1, 0, 0], [3, 2, -1, -1]));
  await both('slice logits-like', (t) => tf.slice(t, [0, 0, 0, 0], [3, 3, 5, 6]));
  await both('slice 1-D', (t) => tf.slice(tf.reshape(t, [-1]), [7], [50]));
  await both('slice scalar-begin', (t) => tf.slice(t, 2));
  await both('slice empty', (t) => tf.slice(t, [0, 0, 0, 0], [3, 0, 5, 6]));
  for (const axis of [0, 1, 2, 3, -1]) {
    await both(`split 3 equal? axis ${axis}`, (t) => tf.split(tf.slice(t, [0, 0, 0, 0], [3, 3, 3, 3]), 3, axis));
    await both(`split sizes axis ${axis}`, (t) => tf.split(t, axis === 0 ? [1, 2] : [1, -1], axis));
  }
  await both('pad', (t) => tf.pad(t, [[0, 1], [2, 0], [1, 1], [0, 0]]));
  await both('pad constant', (t) => tf.pad(t, [[1, 0], [0, 0], [0, 0], [3, 2]], 2.5));
  await both('pad none', (t) => tf.pad(t, [[0, 0], [0, 0], [0, 0], [0, 0]]));
  // gradients: a slice's is a pad, a split's a concat
  const w = rand([3, 2, 5, 6], 10);
  const gs = (t: tf.Tensor, ww: tf.Tensor) => tf.grad((tt: tf.Tensor) => tf.sum(tf.mul(tf.slice(tt, [0, 1, 0, 0], [3, 2, 5, 6]), ww)))(t);
  close((await on('wasm', [x, w], gs))[0], (await on('cpu', [x, w], gs))[0]);
  const gsp = (t: tf.Tensor) => tf.grad((tt: tf.Tensor) => { const [a, b] = tf.split(tt, [2, 4], 3); return tf.add(tf.sum(tf.square(a)), tf.sum(tf.mul(b, 3))); })(t);
  close((await on('wasm', [x], gsp))[0], (await on('cpu', [x], gsp))[0]);
});

test('Identity shares the buffer: clones keep their values when the original is disposed', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const a = tf.tensor1d([1, 2, 3]);
  const c = tf.clone(a);
  assert.equal(c.dataId, a.dataId, 'one buffer for both');
  a.dispose();
  assert.deepEqual([...c.dataSync()], [1, 2, 3]);
  const d = tf.add(c, 1); // the shared buffer is read-only: ops write new buffers
  assert.deepEqual([...c.dataSync()], [1, 2, 3]);
  tf.dispose([c, d]);
});

test('XNNPACK threads from outside node_modules (CLIPCAP_WASM_THREADS=2, in a child process)', async () => {
  const script = `
    const tf = require('@tensorflow/tfjs');
    const { ensureBackend } = require(${JSON.stringify(path.resolve(__dirname, '../src/lib/tfjs/backend'))});
    const { wasmPatchStatus } = require(${JSON.stringify(path.resolve(__dirname, '../src/lib/tfjs/patch-status'))});
    ensureBackend({ quiet: true }).then(() => {
      const a = tf.tensor2d([[1, 2], [3, 4]]);
      const r = tf.matMul(a, a).dataSync();
      console.log(JSON.stringify({ backend: tf.getBackend(), threads: wasmPatchStatus().threads, r: Array.from(r) }));
    });`;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], { env: { ...process.env, CLIPCAP_WASM_THREADS: '2', CLIPCAP_BACKEND: 'wasm' } });
    let so = '';
    let se = '';
    child.stdout.on('data', (d) => (so += d));
    child.stderr.on('data', (d) => (se += d));
    child.on('close', (code) => (code === 0 ? resolve(so) : reject(new Error(`exit ${code}: ${se}`))));
  });
  const res = JSON.parse(out.trim().split('\n').pop()!);
  assert.deepEqual(res, { backend: 'wasm', threads: 2, r: [7, 10, 15, 22] });
});

test('fused matMul with bias (one onnxruntime Gemm) equals the cpu backend, forward and gradients', async () => {
  await ensureBackend({ quiet: true });
  for (const [as, bs, tA, tB] of [
    [[64, 96], [96, 80], false, false],
    [[96, 64], [80, 96], true, true],
    [[3, 5], [5, 4], false, false],
  ] as [number[], number[], boolean, boolean][]) {
    const a = rand(as, 1);
    const b = rand(bs, 2);
    const n = tB ? bs[0] : bs[1];
    const bias = rand([n], 3);
    const r = rand([tA ? as[1] : as[0], n], 4);
    const f = (x: tf.Tensor, y: tf.Tensor, c: tf.Tensor, rr: tf.Tensor) => {
      const fwd = (p: tf.Tensor, q: tf.Tensor, s: tf.Tensor) => tf.fused.matMul({ a: p as tf.Tensor2D, b: q as tf.Tensor2D, bias: s, transposeA: tA, transposeB: tB });
      return [fwd(x, y, c), ...tf.grads((p: tf.Tensor, q: tf.Tensor, s: tf.Tensor) => tf.sum(tf.mul(fwd(p, q, s), rr)))([x, y, c])];
    };
    const want = await on('cpu', [a, b, bias, r], f);
    const got = await on('wasm', [a, b, bias, r], f);
    want.forEach((w, i) => close(got[i], w));
  }
});

test('frozen weights: cached transposes give the same products, and follow the variable when it changes', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  const xs = rand([64, 80], 6);
  // x @ w^T in plain JavaScript
  const ref = (w: Float32Array) => {
    const out = new Float32Array(64 * 96);
    for (let i = 0; i < 64; i++) for (let j = 0; j < 96; j++) {
      let s = 0;
      for (let k = 0; k < 80; k++) s += xs.data[i * 80 + k] * w[j * 80 + k];
      out[i * 96 + j] = s;
    }
    return out;
  };
  const w0 = rand([96, 80], 5);
  const x = tf.tensor2d(xs.data, [64, 80]);
  const v = tf.variable(tf.tensor2d(w0.data, [96, 80]), false); // frozen
  for (let k = 0; k < 2; k++) close(tf.tidy(() => tf.matMul(x, v, false, true).dataSync() as Float32Array), ref(w0.data));
  const w1 = rand([96, 80], 7);
  v.assign(tf.tensor2d(w1.data, [96, 80]));
  close(tf.tidy(() => tf.matMul(x, v, false, true).dataSync() as Float32Array), ref(w1.data));
  v.trainable = true; // no longer cached
  close(tf.tidy(() => tf.matMul(x, v, false, true).dataSync() as Float32Array), ref(w1.data));
  tf.dispose([x, v]);
});

test('1x1 convolutions on wasm (Conv2D, FusedConv2D with bias and ReLU / ReLU6) through the matMul engine equal the cpu backend', async () => {
  await ensureBackend({ quiet: true });
  await tf.setBackend('wasm');
  // [x shape, filter shape, strides, pad, activation, bias]; the first five go to the engine
  const cases: [number[], number[], number, 'same' | 'valid', 'linear' | 'relu' | 'relu6' | 'elu', boolean][] = [
    [[1, 16, 16, 24], [1, 1, 24, 40], 1, 'same', 'linear', true],
    [[2, 12, 10, 32], [1, 1, 32, 48], 1, 'valid', 'relu', true],
    [[1, 16, 16, 24], [1, 1, 24, 40], 1, 'same', 'relu6', true],
    [[1, 16, 16, 24], [1, 1, 24, 40], 1, 'same', 'linear', false],
    [[1, 16, 16, 24], [1, 1, 24, 40], 1, 'same', 'relu', false],
    [[1, 16, 16, 24], [1, 1, 24, 40], 2, 'same', 'relu', true], // stride 2: the stock kernel
    [[1, 16, 16, 24], [3, 3, 24, 40], 1, 'same', 'relu', true], // 3x3: the stock kernel
    [[1, 16, 16, 24], [1, 1, 24, 40], 1, 'same', 'elu', true], // elu: the stock kernel
  ];
  for (const provider of ['auto', 'stock'] as const) {
    setMatMulProvider(provider);
    for (const [i, [xs, fs, stride, pad, activation, withBias]] of cases.entries()) {
      const x = rand(xs, 200 + i);
      const f = rand(fs, 300 + i);
      const b = rand([fs[3]], 400 + i);
      const run = (xx: tf.Tensor, ff: tf.Tensor, bb: tf.Tensor) =>
        activation === 'linear' && !withBias && i === 3
          ? tf.conv2d(xx as tf.Tensor4D, ff as tf.Tensor4D, stride, pad)
          : tf.fused.conv2d({ x: xx as tf.Tensor4D, filter: ff as tf.Tensor4D, strides: stride, pad, bias: withBias ? bb : undefined, activation });
      const [want] = await on('cpu', [x, f, b], run);
      const [got] = await on('wasm', [x, f, b], run);
      close(got, want);
      if (activation === 'relu' || activation === 'relu6') assert.ok(got.some((v) => v === 0), `case ${i}: the activation clamps`);
    }
  }
  setMatMulProvider('auto');
});

test('Sum over leading axes on wasm through the matMul engine equals the cpu backend (other axes: the stock kernel)', async () => {
  await ensureBackend({ quiet: true });
  // [shape, axis, keepDims]; the first four go to the engine
  const cases: [number[], number | number[], boolean][] = [
    [[640, 192], 0, false],
    [[640, 192], [0], true],
    [[8, 80, 192], [0, 1], false],
    [[8, 80, 192], [1, 0], true],
    [[8, 80, 192], 1, false], // a middle axis: stock
    [[640, 192], -1, false], // the last axis: stock
    [[3, 5], 0, false], // small: stock
  ];
  for (const provider of ['auto', 'stock'] as const) {
    await tf.setBackend('wasm');
    setMatMulProvider(provider);
    for (const [i, [shape, axis, keepDims]] of cases.entries()) {
      const x = rand(shape, 500 + i);
      const f = (t: tf.Tensor) => tf.sum(t, axis, keepDims);
      const [want] = await on('cpu', [x], f);
      const [got] = await on('wasm', [x], f);
      close(got, want);
      const s = await on('wasm', [x], (t) => tf.tensor1d(f(t).shape.length ? f(t).shape : [0]));
      const c = await on('cpu', [x], (t) => tf.tensor1d(f(t).shape.length ? f(t).shape : [0]));
      assert.deepEqual([...s[0]], [...c[0]], `case ${i}: shape`);
    }
  }
  await tf.setBackend('wasm');
  setMatMulProvider('auto');
});
