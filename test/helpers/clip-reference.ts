// A plain JavaScript forward pass of the random CLIP vision tower of src/lib/embed/encoders/tiny-clip.ts
// (float32 weights, written independently of its ONNX graph), to check that graph in the tests.
import type { ClipVisionSpec, ClipVisionWeights } from '../../src/lib/embed/encoders/tiny-clip';

function layerNorm(x: Float32Array, rows: number, D: number, gamma: Float32Array, beta: Float32Array, eps: number): Float32Array {
  const out = new Float32Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < D; i++) mean += x[r * D + i];
    mean /= D;
    let v = 0;
    for (let i = 0; i < D; i++) v += (x[r * D + i] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / D + eps);
    for (let i = 0; i < D; i++) out[r * D + i] = (x[r * D + i] - mean) * inv * gamma[i] + beta[i];
  }
  return out;
}

function matmul(x: Float32Array, rows: number, inDim: number, w: Float32Array, outDim: number, b?: Float32Array): Float32Array {
  const out = new Float32Array(rows * outDim);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < outDim; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i] * w[i * outDim + o];
      out[r * outDim + o] = s;
    }
  return out;
}

/** image_embeds of one image given its pixel_values [3, S, S] (reference implementation for tests). */
export function clipVisionReference(spec: ClipVisionSpec, w: ClipVisionWeights, pixels: Float32Array): Float32Array {
  const { imageSize: S, patchSize: P, hiddenSize: D, numHeads: H } = spec;
  const G = S / P;
  const N = G * G;
  const T = N + 1;
  const hd = D / H;
  let x = new Float32Array(T * D);
  x.set(w.classEmb, 0);
  for (let py = 0; py < G; py++)
    for (let px = 0; px < G; px++)
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let c = 0; c < 3; c++)
          for (let ky = 0; ky < P; ky++)
            for (let kx = 0; kx < P; kx++) s += w.patch[((d * 3 + c) * P + ky) * P + kx] * pixels[(c * S + py * P + ky) * S + px * P + kx];
        x[(1 + py * G + px) * D + d] = s;
      }
  for (let i = 0; i < T * D; i++) x[i] += w.pos[i];
  x = layerNorm(x, T, D, w.preg, w.preb, spec.layerNormEps);
  for (const L of w.layers) {
    const h = layerNorm(x, T, D, L.ln1g, L.ln1b, spec.layerNormEps);
    const q = matmul(h, T, D, L.wq, D, L.bq).map((v) => v * hd ** -0.5);
    const k = matmul(h, T, D, L.wk, D, L.bk);
    const v = matmul(h, T, D, L.wv, D, L.bv);
    const ctx = new Float32Array(T * D);
    for (let hh = 0; hh < H; hh++)
      for (let i = 0; i < T; i++) {
        const sc = new Float64Array(T);
        let mx = -Infinity;
        for (let j = 0; j < T; j++) {
          let s = 0;
          for (let e = 0; e < hd; e++) s += q[i * D + hh * hd + e] * k[j * D + hh * hd + e];
          sc[j] = s;
          mx = Math.max(mx, s);
        }
        let z = 0;
        for (let j = 0; j < T; j++) z += sc[j] = Math.exp(sc[j] - mx);
        for (let e = 0; e < hd; e++) {
          let s = 0;
          for (let j = 0; j < T; j++) s += (sc[j] / z) * v[j * D + hh * hd + e];
          ctx[i * D + hh * hd + e] = s;
        }
      }
    const o = matmul(ctx, T, D, L.wo, D, L.bo);
    for (let i = 0; i < T * D; i++) x[i] += o[i];
    const h2 = layerNorm(x, T, D, L.ln2g, L.ln2b, spec.layerNormEps);
    const f1 = matmul(h2, T, D, L.w1, spec.intermediateSize, L.b1).map((u) => u / (1 + Math.exp(-1.702 * u)));
    const f2 = matmul(f1, T, spec.intermediateSize, L.w2, D, L.b2);
    for (let i = 0; i < T * D; i++) x[i] += f2[i];
  }
  const pooled = layerNorm(x.subarray(0, D), 1, D, w.postg, w.postb, spec.layerNormEps);
  return matmul(pooled, 1, D, w.proj, spec.projectionDim);
}
