import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { createMapper, defaultMapperConfig, MLPMapper, TransformerMapper } from '../src/lib/model/mapper';

// Plain float64 reference of the original PyTorch modules, reading the PyTorch-layout state dict.
type SD = Map<string, { shape: number[]; data: Float64Array }>;
function sdOf(m: { stateDict(): Map<string, tf.Tensor> }): SD {
  const out: SD = new Map();
  for (const [k, t] of m.stateDict()) {
    out.set(k, { shape: t.shape, data: Float64Array.from(t.dataSync()) });
    t.dispose();
  }
  return out;
}
function linear(x: number[][], sd: SD, name: string, bias = true): number[][] {
  const w = sd.get(`${name}.weight`)!; // [out, in]
  const [out, inp] = w.shape;
  const b = bias ? sd.get(`${name}.bias`)!.data : null;
  return x.map((row) => {
    const y = new Array(out).fill(0);
    for (let o = 0; o < out; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inp; i++) s += w.data[o * inp + i] * row[i];
      y[o] = s;
    }
    return y;
  });
}
function ln(x: number[][], sd: SD, name: string): number[][] {
  const g = sd.get(`${name}.weight`)!.data;
  const b = sd.get(`${name}.bias`)!.data;
  return x.map((r) => {
    const m = r.reduce((a, v) => a + v, 0) / r.length;
    const v = r.reduce((a, u) => a + (u - m) ** 2, 0) / r.length;
    return r.map((u, i) => ((u - m) / Math.sqrt(v + 1e-5)) * g[i] + b[i]);
  });
}
function refTransformer(x: number[], sd: SD, C: number, P: number, d: number, H: number, L: number): number[][] {
  const proj = linear([x], sd, 'linear')[0];
  const consts = sd.get('prefix_const')!.data;
  let h: number[][] = [];
  for (let c = 0; c < C; c++) h.push(proj.slice(c * d, (c + 1) * d));
  for (let p = 0; p < P; p++) h.push(Array.from(consts.slice(p * d, (p + 1) * d)));
  const T = C + P;
  const hd = d / H;
  for (let l = 0; l < L; l++) {
    const pre = `transformer.layers.${l}`;
    const a = ln(h, sd, `${pre}.norm1`);
    const q = linear(a, sd, `${pre}.attn.to_queries`, false);
    const kv = linear(a, sd, `${pre}.attn.to_keys_values`, false); // [T, 2*d] = (2, H, hd)
    const o: number[][] = Array.from({ length: T }, () => new Array(d).fill(0));
    for (let hh = 0; hh < H; hh++) {
      for (let n = 0; n < T; n++) {
        const s: number[] = [];
        for (let m = 0; m < T; m++) {
          let dot = 0;
          for (let j = 0; j < hd; j++) dot += q[n][hh * hd + j] * kv[m][hh * hd + j];
          s.push(dot / Math.sqrt(hd));
        }
        const mx = Math.max(...s);
        const e = s.map((v) => Math.exp(v - mx));
        const z = e.reduce((u, v) => u + v, 0);
        for (let m = 0; m < T; m++) for (let j = 0; j < hd; j++) o[n][hh * hd + j] += (e[m] / z) * kv[m][d + hh * hd + j];
      }
    }
    const pr = linear(o, sd, `${pre}.attn.project`);
    h = h.map((r, i) => r.map((v, j) => v + pr[i][j]));
    const f = linear(linear(ln(h, sd, `${pre}.norm2`), sd, `${pre}.mlp.fc1`).map((r) => r.map((v) => Math.max(0, v))), sd, `${pre}.mlp.fc2`);
    h = h.map((r, i) => r.map((v, j) => v + f[i][j]));
  }
  return h.slice(C);
}

test('MLP mapper: original layer sizes and tanh, [B, prefix, d] output', () => {
  const cfg = defaultMapperConfig({ kind: 'mlp', inputDim: 6, embedDim: 4, prefixLength: 3 });
  const m = new MLPMapper(cfg, 1);
  // Linear(6 -> 6) + Linear(6 -> 12): (6*6+6) + (6*12+12)
  assert.equal(m.parameterCount(), 6 * 6 + 6 + 6 * 12 + 12);
  assert.deepEqual(m.parameterNames(), ['model.0.weight', 'model.0.bias', 'model.2.weight', 'model.2.bias']);
  const x = tf.randomNormal([2, 6], 0, 1, 'float32', 3) as tf.Tensor2D;
  const y = m.forward(x);
  assert.deepEqual(y.shape, [2, 3, 4]);
  const sd = sdOf(m);
  const xs = x.arraySync() as number[][];
  const ref = linear(linear(xs, sd, 'model.0').map((r) => r.map(Math.tanh)), sd, 'model.2');
  const got = y.reshape([2, 12]).arraySync() as number[][];
  for (let b = 0; b < 2; b++) for (let i = 0; i < 12; i++) assert.ok(Math.abs(got[b][i] - ref[b][i]) < 1e-5);
  m.dispose();
});

test('Transformer mapper equals a float64 reference of the original module', () => {
  const cfg = defaultMapperConfig({ kind: 'transformer', inputDim: 5, embedDim: 8, prefixLength: 3, clipLength: 2, numLayers: 2, numHeads: 2 });
  const m = new TransformerMapper(cfg, 7);
  const x = tf.randomNormal([2, 5], 0, 1, 'float32', 11) as tf.Tensor2D;
  const y = m.forward(x).arraySync() as number[][][];
  const sd = sdOf(m);
  const xs = x.arraySync() as number[][];
  for (let b = 0; b < 2; b++) {
    const ref = refTransformer(xs[b], sd, 2, 3, 8, 2, 2);
    for (let p = 0; p < 3; p++) for (let j = 0; j < 8; j++) {
      const rel = Math.abs(y[b][p][j] - ref[p][j]) / Math.max(1, Math.abs(ref[p][j]));
      assert.ok(rel < 1e-4, `b${b} p${p} j${j}: ${y[b][p][j]} vs ${ref[p][j]}`);
    }
  }
  m.dispose();
});

test('every mapper weight receives a gradient; state dicts round-trip and mismatches are named', () => {
  for (const kind of ['mlp', 'transformer'] as const) {
    const cfg = defaultMapperConfig({ kind, inputDim: 5, embedDim: 8, prefixLength: 2, clipLength: 2, numLayers: 1, numHeads: 2 });
    const m = createMapper(cfg, 3);
    const x = tf.randomNormal([3, 5], 0, 1, 'float32', 5) as tf.Tensor2D;
    const { grads } = tf.variableGrads(() => tf.sum(tf.square(m.forward(x))) as tf.Scalar, m.variables());
    for (const v of m.variables()) {
      const g = grads[v.name];
      assert.ok(g, `no gradient for ${v.name}`);
      assert.ok(tf.sum(tf.abs(g)).dataSync()[0] > 0);
    }
    const other = createMapper(cfg, 99);
    const sd = m.stateDict();
    other.loadStateDict(sd);
    const a = m.forward(x).dataSync();
    const b = other.forward(x).dataSync();
    assert.deepEqual(Array.from(a), Array.from(b));
    const first = [...sd.keys()][0];
    sd.set(first, tf.zeros([1, 1]));
    assert.throws(() => other.loadStateDict(sd), new RegExp(`${first.replace(/\./g, '\\.')} has shape`));
    sd.delete(first);
    assert.throws(() => other.loadStateDict(sd), /is missing/);
    m.dispose();
    other.dispose();
  }
});
