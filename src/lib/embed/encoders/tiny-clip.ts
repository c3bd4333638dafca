// Random CLIP vision models in the exact layout of a Xenova (transformers.js) hub repository:
//
//   config.json                    CLIPConfig (model_type "clip", vision_config, text_config)
//   preprocessor_config.json       CLIPFeatureExtractor settings
//   onnx/vision_model.onnx         float32 graph: pixel_values -> image_embeds, last_hidden_state
//   onnx/vision_model_quantized.onnx  the same with dynamically quantized linear layers (int8 weights,
//                                  uint8 activations: onnxruntime quantize_dynamic's default QInt8)
//   clipcap_generated.json         how it was made (spec, seed): this is not a trained model
//
// CLIPVisionModelWithProjection.from_pretrained() loads onnx/vision_model{_quantized}.onnx, feeds
// `pixel_values` [batch, 3, size, size] and reads `image_embeds` [batch, projection_dim]. The graph is
// HF's CLIPVisionTransformer: patch convolution (no bias), class token, position embeddings,
// pre-LayerNorm, pre-LN encoder layers (attention, quick-GELU MLP), post-LayerNorm of the class token,
// visual projection (no bias). Two specs: a tiny one for tests and the smoke profile, and ViT-B/32's
// shapes (random weights) for the throughput benchmark. The tests check the graph against a plain
// JavaScript forward pass of the same network: test/helpers/clip-reference.ts.
import * as fs from 'fs';
import * as path from 'path';
import { buildDirAtomic, writeChunksAtomic, writeJsonAtomic } from '../../util/files';
import { attr, DataType, GraphBuilder, modelProto } from '../../tfjs/onnx-writer';
import { gaussian } from '../../util/rng';

export interface ClipVisionSpec {
  imageSize: number;
  patchSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  projectionDim: number;
  layerNormEps: number;
  seed: number;
  /** Standard deviation of the random weights. */
  initStd: number;
}

/** A tiny model for tests and the smoke profile: 32x32 input, 8x8 patches, 2 layers of width 32. */
export const TINY_CLIP_SPEC: ClipVisionSpec = {
  imageSize: 32,
  patchSize: 8,
  hiddenSize: 32,
  numLayers: 2,
  numHeads: 2,
  intermediateSize: 64,
  projectionDim: 32,
  layerNormEps: 1e-5,
  seed: 1234,
  initStd: 0.2,
};

/** openai/clip-vit-base-patch32's vision tower shapes (random weights): for the benchmark. */
export const VIT_B32_SPEC: ClipVisionSpec = {
  imageSize: 224,
  patchSize: 32,
  hiddenSize: 768,
  numLayers: 12,
  numHeads: 12,
  intermediateSize: 3072,
  projectionDim: 512,
  layerNormEps: 1e-5,
  seed: 32,
  initStd: 0.02,
};

export const CLIP_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711];

// ---------------------------------------------------------------------------------------------
// Weights

export interface LayerWeights {
  ln1g: Float32Array;
  ln1b: Float32Array;
  /** Linear weights are stored [in, out] (ONNX MatMul layout; HF keeps [out, in]). */
  wq: Float32Array;
  bq: Float32Array;
  wk: Float32Array;
  bk: Float32Array;
  wv: Float32Array;
  bv: Float32Array;
  wo: Float32Array;
  bo: Float32Array;
  ln2g: Float32Array;
  ln2b: Float32Array;
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

export interface ClipVisionWeights {
  /** [hidden, 3, patch, patch] */
  patch: Float32Array;
  classEmb: Float32Array;
  /** [numPatches + 1, hidden] */
  pos: Float32Array;
  preg: Float32Array;
  preb: Float32Array;
  layers: LayerWeights[];
  postg: Float32Array;
  postb: Float32Array;
  /** [hidden, projectionDim] */
  proj: Float32Array;
}

export function numPatches(spec: ClipVisionSpec): number {
  if (spec.imageSize % spec.patchSize !== 0) throw new Error(`image size ${spec.imageSize} is not a multiple of the patch size ${spec.patchSize}`);
  if (spec.hiddenSize % spec.numHeads !== 0) throw new Error(`hidden size ${spec.hiddenSize} is not a multiple of ${spec.numHeads} heads`);
  return (spec.imageSize / spec.patchSize) ** 2;
}

/** Random weights, a pure function of the spec (seeded). */
export function randomClipWeights(spec: ClipVisionSpec): ClipVisionWeights {
  const rnd = gaussian(spec.seed);
  const D = spec.hiddenSize;
  const normal = (n: number, std = spec.initStd, mean = 0) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = mean + std * rnd();
    return a;
  };
  const lnG = () => normal(D, 0.1, 1);
  const lnB = () => normal(D, 0.1);
  const T = numPatches(spec) + 1;
  return {
    patch: normal(D * 3 * spec.patchSize * spec.patchSize),
    classEmb: normal(D),
    pos: normal(T * D),
    preg: lnG(),
    preb: lnB(),
    layers: Array.from({ length: spec.numLayers }, () => ({
      ln1g: lnG(),
      ln1b: lnB(),
      wq: normal(D * D),
      bq: normal(D),
      wk: normal(D * D),
      bk: normal(D),
      wv: normal(D * D),
      bv: normal(D),
      wo: normal(D * D),
      bo: normal(D),
      ln2g: lnG(),
      ln2b: lnB(),
      w1: normal(D * spec.intermediateSize),
      b1: normal(spec.intermediateSize),
      w2: normal(spec.intermediateSize * D),
      b2: normal(D),
    })),
    postg: lnG(),
    postb: lnB(),
    proj: normal(D * spec.projectionDim),
  };
}

// ---------------------------------------------------------------------------------------------
// The ONNX graph

/** Dynamic (asymmetric uint8, per tensor) quantization of a weight, as onnxruntime's quantize_dynamic. */
export function quantizeUint8(w: Float32Array): { q: Uint8Array; scale: number; zeroPoint: number } {
  let min = 0;
  let max = 0;
  for (const v of w) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const scale = max > min ? (max - min) / 255 : 1;
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-min / scale)));
  const q = new Uint8Array(w.length);
  for (let i = 0; i < w.length; i++) q[i] = Math.min(255, Math.max(0, Math.round(w[i] / scale) + zeroPoint));
  return { q, scale, zeroPoint };
}

/**
 * Symmetric int8 quantization of a weight (zero point 0, per tensor), as onnxruntime's quantize_dynamic
 * with its default weight type QInt8.
 */
export function quantizeInt8(w: Float32Array): { q: Int8Array; scale: number } {
  let m = 0;
  for (const v of w) m = Math.max(m, Math.abs(v));
  const scale = m > 0 ? m / 127 : 1;
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) q[i] = Math.max(-127, Math.min(127, Math.round(w[i] / scale)));
  return { q, scale };
}

/** Build the vision tower graph (optionally with dynamically quantized linear layers). */
export function clipVisionGraph(spec: ClipVisionSpec, w: ClipVisionWeights, opts: { quantized?: boolean; weightType?: 'uint8' | 'int8' } = {}) {
  const g = new GraphBuilder();
  const D = spec.hiddenSize;
  const H = spec.numHeads;
  const hd = D / H;
  const P = spec.patchSize;
  const N = numPatches(spec);
  const eps = spec.layerNormEps;

  const ln = (x: string, gamma: Float32Array, beta: Float32Array, name: string) =>
    g.op('LayerNormalization', [x, g.init(`${name}.weight`, [D], gamma), g.init(`${name}.bias`, [D], beta)], { axis: attr.int(-1), epsilon: attr.float(eps) });

  const linear = (x: string, weight: Float32Array, inDim: number, outDim: number, name: string, bias?: Float32Array) => {
    let y: string;
    if (!opts.quantized) {
      y = g.op('MatMul', [x, g.init(`${name}.weight`, [inDim, outDim], weight)]);
    } else {
      let wq: string;
      let wzp: string;
      let ws: string;
      if (opts.weightType === 'uint8') {
        const { q, scale, zeroPoint } = quantizeUint8(weight);
        wq = g.init(`${name}.weight_quantized`, [inDim, outDim], q, DataType.UINT8);
        wzp = g.init(`${name}.weight_zero_point`, [], Uint8Array.of(zeroPoint), DataType.UINT8);
        ws = g.init(`${name}.weight_scale`, [], Float32Array.of(scale), DataType.FLOAT);
      } else {
        const { q, scale } = quantizeInt8(weight);
        wq = g.init(`${name}.weight_quantized`, [inDim, outDim], q, DataType.INT8);
        wzp = g.init(`${name}.weight_zero_point`, [], Int8Array.of(0), DataType.INT8);
        ws = g.init(`${name}.weight_scale`, [], Float32Array.of(scale), DataType.FLOAT);
      }
      const [xq, xs, xzp] = g.opN('DynamicQuantizeLinear', [x], 3);
      const acc = g.op('MatMulInteger', [xq, wq, xzp, wzp]);
      const accF = g.op('Cast', [acc], { to: attr.int(DataType.FLOAT) });
      y = g.op('Mul', [accF, g.op('Mul', [xs, ws])]);
    }
    return bias ? g.op('Add', [y, g.init(`${name}.bias`, [outDim], bias)]) : y;
  };

  // Embeddings
  const patches = g.op('Conv', ['pixel_values', g.init('embeddings.patch_embedding.weight', [D, 3, P, P], w.patch)], {
    kernel_shape: attr.ints([P, P]),
    strides: attr.ints([P, P]),
  }); // [B, D, G, G]
  const flat = g.op('Reshape', [patches, g.int64('shape_bdn', [0, D, -1])]); // [B, D, N]
  const tokens = g.op('Transpose', [flat], { perm: attr.ints([0, 2, 1]) }); // [B, N, D]
  const shape = g.op('Shape', [tokens]);
  const batch = g.op('Slice', [shape, g.int64('start0', [0]), g.int64('end1', [1])]);
  const clsShape = g.op('Concat', [batch, g.int64('one_d', [1, D])], { axis: attr.int(0) });
  const cls = g.op('Expand', [g.init('embeddings.class_embedding', [1, 1, D], w.classEmb), clsShape]);
  let x = g.op('Concat', [cls, tokens], { axis: attr.int(1) }); // [B, N+1, D]
  x = g.op('Add', [x, g.init('embeddings.position_embedding.weight', [N + 1, D], w.pos)]);
  x = ln(x, w.preg, w.preb, 'pre_layrnorm');

  const headsShape = g.int64('shape_heads', [0, 0, H, hd]);
  const mergeShape = g.int64('shape_merge', [0, 0, D]);
  const scale = g.scalar('attn_scale', hd ** -0.5);
  const geluK = g.scalar('quick_gelu_k', 1.702);
  w.layers.forEach((L, i) => {
    const p = `encoder.layers.${i}`;
    const h = ln(x, L.ln1g, L.ln1b, `${p}.layer_norm1`);
    const q = g.op('Mul', [linear(h, L.wq, D, D, `${p}.self_attn.q_proj`, L.bq), scale]);
    const k = linear(h, L.wk, D, D, `${p}.self_attn.k_proj`, L.bk);
    const v = linear(h, L.wv, D, D, `${p}.self_attn.v_proj`, L.bv);
    const qh = g.op('Transpose', [g.op('Reshape', [q, headsShape])], { perm: attr.ints([0, 2, 1, 3]) }); // [B,H,T,hd]
    const kh = g.op('Transpose', [g.op('Reshape', [k, headsShape])], { perm: attr.ints([0, 2, 3, 1]) }); // [B,H,hd,T]
    const vh = g.op('Transpose', [g.op('Reshape', [v, headsShape])], { perm: attr.ints([0, 2, 1, 3]) });
    const att = g.op('Softmax', [g.op('MatMul', [qh, kh])], { axis: attr.int(-1) });
    const ctx = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [att, vh])], { perm: attr.ints([0, 2, 1, 3]) }), mergeShape]);
    x = g.op('Add', [x, linear(ctx, L.wo, D, D, `${p}.self_attn.out_proj`, L.bo)]);
    const h2 = ln(x, L.ln2g, L.ln2b, `${p}.layer_norm2`);
    const f1 = linear(h2, L.w1, D, spec.intermediateSize, `${p}.mlp.fc1`, L.b1);
    const act = g.op('Mul', [f1, g.op('Sigmoid', [g.op('Mul', [f1, geluK])])]);
    x = g.op('Add', [x, linear(act, L.w2, spec.intermediateSize, D, `${p}.mlp.fc2`, L.b2)]);
  });
  g.op('Identity', [x], undefined, 'last_hidden_state');
  const pooled = g.op('Gather', [x, g.int64('cls_index', [0], [])], { axis: attr.int(1) }); // [B, D]
  const post = ln(pooled, w.postg, w.postb, 'post_layernorm');
  const emb = linear(post, w.proj, D, spec.projectionDim, 'visual_projection');
  g.op('Identity', [emb], undefined, 'image_embeds');

  return g.graph(
    'clip_vision_with_projection',
    [{ name: 'pixel_values', elemType: DataType.FLOAT, shape: ['batch_size', 3, spec.imageSize, spec.imageSize] }],
    [
      { name: 'image_embeds', elemType: DataType.FLOAT, shape: ['batch_size', spec.projectionDim] },
      { name: 'last_hidden_state', elemType: DataType.FLOAT, shape: ['batch_size', N + 1, D] },
    ],
    `random CLIP vision tower (seed ${spec.seed}), written by clipcap-ts; not a trained model`,
  );
}

// ---------------------------------------------------------------------------------------------
// The repository files

/** config.json of a CLIPModel with this vision tower (and a minimal text tower). */
export function clipConfigJson(spec: ClipVisionSpec): Record<string, unknown> {
  return {
    _name_or_path: 'clipcap-ts/random-clip',
    architectures: ['CLIPModel'],
    initializer_factor: 1.0,
    logit_scale_init_value: 2.6592,
    model_type: 'clip',
    projection_dim: spec.projectionDim,
    text_config: {
      hidden_size: spec.hiddenSize,
      intermediate_size: spec.intermediateSize,
      num_attention_heads: spec.numHeads,
      num_hidden_layers: spec.numLayers,
      max_position_embeddings: 77,
      vocab_size: 49408,
      hidden_act: 'quick_gelu',
      model_type: 'clip_text_model',
      projection_dim: spec.projectionDim,
    },
    vision_config: {
      hidden_size: spec.hiddenSize,
      image_size: spec.imageSize,
      intermediate_size: spec.intermediateSize,
      num_attention_heads: spec.numHeads,
      num_hidden_layers: spec.numLayers,
      patch_size: spec.patchSize,
      projection_dim: spec.projectionDim,
      hidden_act: 'quick_gelu',
      layer_norm_eps: spec.layerNormEps,
      num_channels: 3,
      model_type: 'clip_vision_model',
    },
    torch_dtype: 'float32',
    transformers_version: '4.33.0',
  };
}

/** preprocessor_config.json as in Xenova/clip-vit-base-patch32 (sizes scaled to the spec). */
export function clipPreprocessorJson(spec: ClipVisionSpec): Record<string, unknown> {
  return {
    crop_size: spec.imageSize,
    do_center_crop: true,
    do_normalize: true,
    do_resize: true,
    feature_extractor_type: 'CLIPFeatureExtractor',
    image_mean: CLIP_IMAGE_MEAN,
    image_std: CLIP_IMAGE_STD,
    resample: 3,
    size: spec.imageSize,
  };
}

export const GENERATED_MARKER = 'clipcap_generated.json';
/** Bumped when the files written for a spec change (a repository of an older version is rewritten). */
export const GENERATOR_VERSION = 2;

/** Write a complete repository into `dir` (atomically: the folder appears complete or not at all). */
export async function writeRandomClipRepo(dir: string, spec: ClipVisionSpec, opts: { quantized?: boolean } = {}): Promise<void> {
  const w = randomClipWeights(spec);
  await buildDirAtomic(dir, (tmp) => {
    writeJsonAtomic(path.join(tmp, 'config.json'), clipConfigJson(spec));
    writeJsonAtomic(path.join(tmp, 'preprocessor_config.json'), clipPreprocessorJson(spec));
    const variants: [string, boolean][] = [['vision_model.onnx', false]];
    if (opts.quantized !== false) variants.push(['vision_model_quantized.onnx', true]);
    for (const [file, quantized] of variants) {
      const model = modelProto({ graph: clipVisionGraph(spec, w, { quantized }), opset: 17, doc: 'random CLIP vision tower for tests and benchmarks' });
      writeChunksAtomic(path.join(tmp, 'onnx', file), model.chunks);
    }
    writeJsonAtomic(path.join(tmp, GENERATED_MARKER), {
      note: 'A CLIP vision tower with RANDOM weights in the Xenova/transformers.js repository layout, written by clipcap-ts (src/lib/encoders/tiny-clip.ts). Not a trained model.',
      generator: GENERATOR_VERSION,
      spec,
    });
  });
}

/** The generated repository at `dir`, written on first use (or when its spec changed). */
export async function ensureRandomClip(dir: string, spec: ClipVisionSpec = TINY_CLIP_SPEC, opts: { quantized?: boolean } = {}): Promise<string> {
  const marker = path.join(dir, GENERATED_MARKER);
  if (fs.existsSync(marker)) {
    try {
      const m = JSON.parse(fs.readFileSync(marker, 'utf8')) as { spec: ClipVisionSpec; generator?: number };
      const want = opts.quantized === false ? ['vision_model.onnx'] : ['vision_model.onnx', 'vision_model_quantized.onnx'];
      if (m.generator === GENERATOR_VERSION && JSON.stringify(m.spec) === JSON.stringify(spec) && want.every((f) => fs.existsSync(path.join(dir, 'onnx', f)))) return dir;
    } catch {
      /* regenerate */
    }
  } else if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
    throw new Error(`${dir} exists and is not a generated random CLIP (no ${GENERATED_MARKER}); move it away or point the encoder elsewhere`);
  }
  await writeRandomClipRepo(dir, spec, opts);
  return dir;
}
