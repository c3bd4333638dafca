// A float64, plain-array GPT-2 written from the paper / the Hugging Face modeling code, independent
// of src/lib/model/gpt2.ts (no TensorFlow.js): the reference the model is checked against.
import type { RawWeight, TinyConfig } from './gpt2-fixture';

export type RefWeights = Map<string, Float64Array>;

export function toRef(w: Map<string, RawWeight>): RefWeights {
  const m = new Map<string, Float64Array>();
  for (const [k, v] of w) m.set(k, Float64Array.from(v.data));
  return m;
}

function layerNorm(x: Float64Array, g: Float64Array, b: Float64Array, eps: number): Float64Array {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i];
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i] - mean) ** 2;
  v /= n;
  const inv = 1 / Math.sqrt(v + eps);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = (x[i] - mean) * inv * g[i] + b[i];
  return out;
}

/** y = x W + b with W stored [in, out] (Conv1D). */
function conv1d(x: Float64Array, W: Float64Array, b: Float64Array, nOut: number): Float64Array {
  const nIn = x.length;
  const y = Float64Array.from(b);
  for (let i = 0; i < nIn; i++) {
    const xi = x[i];
    const row = i * nOut;
    for (let j = 0; j < nOut; j++) y[j] += xi * W[row + j];
  }
  return y;
}

function geluNew(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

export interface RefInput {
  /** [B][T] token ids, or */
  ids?: number[][];
  /** [B][T][d] input embeddings. */
  embeds?: number[][][];
  /** [B][T] 1 = attend, 0 = padding. */
  mask?: number[][];
  positionOffset?: number;
}

/** Logits [B][T][V] of GPT-2 with weights `W` (HF names without prefix). */
export function refLogits(c: TinyConfig, W: RefWeights, input: RefInput): number[][][] {
  const d = c.nEmbd;
  const H = c.nHead;
  const hd = d / H;
  const V = c.vocabSize;
  const get = (k: string) => {
    const w = W.get(k);
    if (!w) throw new Error(`reference: no weight ${k}`);
    return w;
  };
  const wte = get('wte.weight');
  const wpe = get('wpe.weight');
  const B = input.ids ? input.ids.length : input.embeds!.length;
  const out: number[][][] = [];
  for (let b = 0; b < B; b++) {
    const T = input.ids ? input.ids[b].length : input.embeds![b].length;
    const p0 = input.positionOffset ?? 0;
    let xs: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const x = new Float64Array(d);
      for (let i = 0; i < d; i++) {
        const e = input.ids ? wte[input.ids[b][t] * d + i] : input.embeds![b][t][i];
        x[i] = e + wpe[(p0 + t) * d + i];
      }
      xs.push(x);
    }
    const keep = (s: number) => (input.mask ? input.mask[b][s] === 1 : true);
    for (let l = 0; l < c.nLayer; l++) {
      const P = `h.${l}.`;
      const qkv = xs.map((x) => conv1d(layerNorm(x, get(P + 'ln_1.weight'), get(P + 'ln_1.bias'), c.layerNormEpsilon), get(P + 'attn.c_attn.weight'), get(P + 'attn.c_attn.bias'), 3 * d));
      const attn: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const merged = new Float64Array(d);
        for (let h = 0; h < H; h++) {
          const allowed: number[] = [];
          for (let s = 0; s <= t; s++) if (keep(s)) allowed.push(s);
          const keys = allowed.length ? allowed : Array.from({ length: T }, (_, i) => i);
          const sc = keys.map((s) => {
            let dot = 0;
            for (let j = 0; j < hd; j++) dot += qkv[t][h * hd + j] * qkv[s][d + h * hd + j];
            return dot / Math.sqrt(hd);
          });
          const mx = Math.max(...sc);
          const ex = sc.map((v) => Math.exp(v - mx));
          const Z = ex.reduce((a, v) => a + v, 0);
          keys.forEach((s, i) => {
            for (let j = 0; j < hd; j++) merged[h * hd + j] += (ex[i] / Z) * qkv[s][2 * d + h * hd + j];
          });
        }
        attn.push(merged);
      }
      xs = xs.map((x, t) => {
        const a = conv1d(attn[t], get(P + 'attn.c_proj.weight'), get(P + 'attn.c_proj.bias'), d);
        const r = x.map((v, i) => v + a[i]);
        const f = conv1d(layerNorm(r, get(P + 'ln_2.weight'), get(P + 'ln_2.bias'), c.layerNormEpsilon), get(P + 'mlp.c_fc.weight'), get(P + 'mlp.c_fc.bias'), 4 * d).map(geluNew);
        const m = conv1d(f, get(P + 'mlp.c_proj.weight'), get(P + 'mlp.c_proj.bias'), d);
        return r.map((v, i) => v + m[i]);
      });
    }
    out.push(
      xs.map((x) => {
        const h = layerNorm(x, get('ln_f.weight'), get('ln_f.bias'), c.layerNormEpsilon);
        const lg = new Array<number>(V).fill(0);
        for (let v = 0; v < V; v++) {
          let s = 0;
          for (let i = 0; i < d; i++) s += h[i] * wte[v * d + i];
          lg[v] = s;
        }
        return lg;
      }),
    );
  }
  return out;
}

/** Mean cross-entropy over positions with lossMask 1 (logits at t predict targets at t). */
export function refLoss(logits: number[][][], targets: number[][], lossMask: number[][]): number {
  let sum = 0;
  let n = 0;
  logits.forEach((row, b) =>
    row.forEach((lg, t) => {
      if (lossMask[b][t] !== 1) return;
      const mx = Math.max(...lg);
      const lse = mx + Math.log(lg.reduce((a, v) => a + Math.exp(v - mx), 0));
      sum += lse - lg[targets[b][t]];
      n++;
    }),
  );
  return sum / Math.max(n, 1);
}
