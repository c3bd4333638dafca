// GPT-2 (Radford et al. 2019) in TensorFlow.js, weight-for-weight compatible with Hugging Face's
// `GPT2LMHeadModel`: pre-LayerNorm blocks, causal multi-head self-attention, `gelu_new` MLP, tied LM
// head, dropout in training only. Forward takes token ids or input embeddings (ClipCap's prefix), an
// attention mask for padding, and a KV cache for incremental decoding.
//
// Weights are named as in Hugging Face checkpoints without the `transformer.` prefix
// (`wte.weight`, `h.0.attn.c_attn.weight`, ...), with the Conv1D `[in, out]` layout, so that
// `x @ W + b` is a plain (untransposed) matMul. The residual stream is kept 2-D (`[B*T, d]`) so that
// every projection is a single 2-D matMul (the fast path of the wasm backend). LayerNorm, GELU,
// dropout, linear layers and the loss have hand-written gradients (src/lib/tfjs/ops.ts); speed on the
// wasm backend comes from src/lib/tfjs/wasm-patches.ts (installed by ensureBackend). Generation:
// src/lib/model/generate.ts.
//
// Loading and saving use `config.json` + `model.safetensors` in the Hugging Face layout, from a local
// directory or a hub id (through `hub.resolveModelFile`).
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { buildDirAtomic, writeFileAtomic, writeJsonAtomic } from '../util/files';
import { resolveModelFile, resolveModelJson, type FetchOptions } from '../io/hub';
import { parseSafetensors, toFloat32 } from '../io/safetensors';
import { saveSafetensorsFile } from '../io/weights';
import { dropout, gatherRows, matMulNT, gptGelu, layerNorm, linear } from '../tfjs/ops';
import { loadTokenizer, optionalJson, RestrictedVocab, restrictTokenizer, type Tokenizer } from './tokenizer';

export interface GPT2Config {
  vocabSize: number;
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  layerNormEpsilon: number;
  activation: 'gelu_new';
  embdPdrop: number;
  residPdrop: number;
  attnPdrop: number;
}

/** GPT-2 small (124M), the `gpt2` checkpoint's configuration. */
export const GPT2_SMALL: GPT2Config = {
  vocabSize: 50257,
  nPositions: 1024,
  nEmbd: 768,
  nLayer: 12,
  nHead: 12,
  layerNormEpsilon: 1e-5,
  activation: 'gelu_new',
  embdPdrop: 0.1,
  residPdrop: 0.1,
  attnPdrop: 0.1,
};

/** A Hugging Face `config.json` (GPT2Config) as ours; an error names missing keys or unsupported options. */
export function configFromHF(json: Record<string, unknown>, source = 'config.json'): GPT2Config {
  const num = (k: string, alt?: string): number | undefined => {
    const v = json[k] ?? (alt ? json[alt] : undefined);
    return typeof v === 'number' ? v : undefined;
  };
  const required: [keyof GPT2Config, string, string?][] = [
    ['vocabSize', 'vocab_size'],
    ['nPositions', 'n_positions', 'n_ctx'],
    ['nEmbd', 'n_embd'],
    ['nLayer', 'n_layer'],
    ['nHead', 'n_head'],
  ];
  const missing = required.filter(([, k, alt]) => num(k, alt) === undefined).map(([, k]) => k);
  if (missing.length) throw new Error(`${source}: missing GPT-2 key(s) ${missing.join(', ')} (a Hugging Face GPT2Config is expected)`);
  const act = (json.activation_function as string | undefined) ?? 'gelu_new';
  // gelu_pytorch_tanh is the same tanh approximation under another name.
  if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new Error(`${source}: activation_function "${act}" is not supported (only gelu_new, GPT-2's own)`);
  }
  if (json.model_type !== undefined && json.model_type !== 'gpt2') {
    throw new Error(`${source}: model_type "${String(json.model_type)}" is not gpt2`);
  }
  const unsupported: string[] = [];
  if (json.n_inner != null && json.n_inner !== 4 * (num('n_embd') as number)) unsupported.push(`n_inner=${String(json.n_inner)}`);
  if (json.scale_attn_weights === false) unsupported.push('scale_attn_weights=false');
  if (json.scale_attn_by_inverse_layer_idx === true) unsupported.push('scale_attn_by_inverse_layer_idx=true');
  if (json.add_cross_attention === true) unsupported.push('add_cross_attention=true');
  if (unsupported.length) throw new Error(`${source}: unsupported GPT-2 option(s) ${unsupported.join(', ')}`);
  const c: GPT2Config = {
    vocabSize: num('vocab_size') as number,
    nPositions: num('n_positions', 'n_ctx') as number,
    nEmbd: num('n_embd') as number,
    nLayer: num('n_layer') as number,
    nHead: num('n_head') as number,
    layerNormEpsilon: num('layer_norm_epsilon') ?? 1e-5,
    activation: 'gelu_new',
    embdPdrop: num('embd_pdrop') ?? 0.1,
    residPdrop: num('resid_pdrop') ?? 0.1,
    attnPdrop: num('attn_pdrop') ?? 0.1,
  };
  validateConfig(c, source);
  return c;
}

export function validateConfig(c: GPT2Config, source = 'GPT2Config'): void {
  for (const k of ['vocabSize', 'nPositions', 'nEmbd', 'nLayer', 'nHead'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new Error(`${source}: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.nEmbd % c.nHead !== 0) throw new Error(`${source}: n_embd ${c.nEmbd} is not divisible by n_head ${c.nHead}`);
}

/** Ours as a Hugging Face `config.json` object (loads in transformers' GPT2LMHeadModel). */
export function configToHF(c: GPT2Config): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: c.vocabSize,
    n_positions: c.nPositions,
    n_ctx: c.nPositions,
    n_embd: c.nEmbd,
    n_layer: c.nLayer,
    n_head: c.nHead,
    n_inner: null,
    activation_function: c.activation,
    layer_norm_epsilon: c.layerNormEpsilon,
    embd_pdrop: c.embdPdrop,
    resid_pdrop: c.residPdrop,
    attn_pdrop: c.attnPdrop,
    initializer_range: 0.02,
    scale_attn_weights: true,
    bos_token_id: Math.min(50256, c.vocabSize - 1),
    eos_token_id: Math.min(50256, c.vocabSize - 1),
    tie_word_embeddings: true,
  };
}

/** Every weight of a config, by Hugging Face name (without `transformer.`), with its shape. */
export function weightShapes(c: GPT2Config): Map<string, number[]> {
  const d = c.nEmbd;
  const m = new Map<string, number[]>();
  m.set('wte.weight', [c.vocabSize, d]);
  m.set('wpe.weight', [c.nPositions, d]);
  for (let i = 0; i < c.nLayer; i++) {
    const p = `h.${i}.`;
    m.set(p + 'ln_1.weight', [d]);
    m.set(p + 'ln_1.bias', [d]);
    m.set(p + 'attn.c_attn.weight', [d, 3 * d]);
    m.set(p + 'attn.c_attn.bias', [3 * d]);
    m.set(p + 'attn.c_proj.weight', [d, d]);
    m.set(p + 'attn.c_proj.bias', [d]);
    m.set(p + 'ln_2.weight', [d]);
    m.set(p + 'ln_2.bias', [d]);
    m.set(p + 'mlp.c_fc.weight', [d, 4 * d]);
    m.set(p + 'mlp.c_fc.bias', [4 * d]);
    m.set(p + 'mlp.c_proj.weight', [4 * d, d]);
    m.set(p + 'mlp.c_proj.bias', [d]);
  }
  m.set('ln_f.weight', [d]);
  m.set('ln_f.bias', [d]);
  return m;
}

/** Per-layer attention keys and values `[B, nHead, T, headDim]`, for incremental decoding. */
export class KVCache {
  constructor(
    readonly keys: tf.Tensor4D[],
    readonly values: tf.Tensor4D[],
  ) {}
  /** Number of cached positions. */
  get length(): number {
    return this.keys.length ? this.keys[0].shape[2] : 0;
  }
  get batchSize(): number {
    return this.keys.length ? this.keys[0].shape[0] : 0;
  }
  /** A new cache whose batch entry i is this cache's entry `rows[i]` (beam search reordering). */
  select(rows: number[]): KVCache {
    const [k, v] = tf.tidy(() => {
      const idx = tf.tensor1d(rows, 'int32');
      return [this.keys.map((t) => tf.gather(t, idx) as tf.Tensor4D), this.values.map((t) => tf.gather(t, idx) as tf.Tensor4D)];
    });
    return new KVCache(k, v);
  }
  dispose(): void {
    for (const t of this.keys) t.dispose();
    for (const t of this.values) t.dispose();
  }
}

export interface ForwardOptions {
  inputsEmbeds?: tf.Tensor3D;
  inputIds?: tf.Tensor2D;
  /** `[B, T_total]` (past + new positions): 1 = attend, 0 = padding. */
  attentionMask?: tf.Tensor2D;
  past?: KVCache;
  useCache?: boolean;
  /** Dropout on (default off). */
  training?: boolean;
  /** Position id of the first new token (default: the cache length). */
  positionOffset?: number;
  /** Compute logits only for the last position (generation). Default false. */
  lastOnly?: boolean;
  /** Compute logits only for positions >= logitsFrom (e.g. skip a ClipCap prefix). Default 0. */
  logitsFrom?: number;
  /** Seed of the dropout masks (training): the same seed gives the same masks, so a resumed run repeats them. */
  dropoutSeed?: number;
}

export interface ForwardResult {
  /** `[B, T, V]` (or `[B, 1, V]` with lastOnly, `[B, T - logitsFrom, V]` with logitsFrom). */
  logits: tf.Tensor3D;
  present?: KVCache;
}

export interface GPT2InitOptions {
  /** Seed of the random initialisation (weights not given). */
  seed?: number;
}

const NEG = -1e9;

export class GPT2 {
  readonly config: GPT2Config;
  private readonly weights = new Map<string, tf.Variable>();
  private trainable = true;
  private disposed = false;
  private readonly causalCache = new Map<string, tf.Tensor>();

  constructor(config: GPT2Config, weights?: Map<string, tf.Tensor>, opts: GPT2InitOptions = {}) {
    validateConfig(config);
    this.config = { ...config };
    const shapes = weightShapes(config);
    if (weights) {
      const missing = [...shapes.keys()].filter((k) => !weights.has(k));
      if (missing.length) throw new Error(`GPT-2 weights: missing ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ` and ${missing.length - 8} more` : ''}`);
      for (const [name, shape] of shapes) {
        const t = weights.get(name)!;
        if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
          throw new Error(`GPT-2 weight ${name} has shape [${t.shape}], expected [${shape}] for this config`);
        }
      }
      const extra = [...weights.keys()].filter((k) => !shapes.has(k));
      if (extra.length) throw new Error(`GPT-2 weights: unexpected ${extra.slice(0, 8).join(', ')} (config has ${config.nLayer} layers)`);
    }
    let seed = opts.seed ?? 42;
    const projStd = 0.02 / Math.sqrt(2 * config.nLayer);
    for (const [name, shape] of shapes) {
      const init = tf.tidy(() => {
        const given = weights?.get(name);
        if (given) return given.dtype === 'float32' ? given.clone() : tf.cast(given, 'float32');
        if (/(ln_\d|ln_f)\.weight$/.test(name)) return tf.ones(shape);
        if (name.endsWith('.bias')) return tf.zeros(shape);
        // transformers' GPT2PreTrainedModel._init_weights: N(0, 0.02), c_proj scaled by 1/sqrt(2 n_layer)
        const std = name.endsWith('c_proj.weight') ? projStd : 0.02;
        return tf.randomNormal(shape, 0, std, 'float32', seed++);
      });
      this.weights.set(name, tf.variable(init, true));
      init.dispose();
    }
  }

  private w(name: string): tf.Variable {
    const v = this.weights.get(name);
    if (!v) throw new Error(`GPT-2 has no weight ${name}`);
    return v;
  }

  /** Frozen (false): the weights are not trainable and no gradients are computed for them. */
  setTrainable(trainable: boolean): void {
    this.trainable = trainable;
    for (const v of this.weights.values()) v.trainable = trainable;
  }

  get isTrainable(): boolean {
    return this.trainable;
  }

  trainableVariables(): tf.Variable[] {
    return this.trainable ? [...this.weights.values()] : [];
  }

  /** The weights by Hugging Face name (without `transformer.`), Conv1D `[in, out]` layout. */
  namedWeights(): Map<string, tf.Variable> {
    return new Map(this.weights);
  }

  /** Number of parameters. */
  numParams(): number {
    let n = 0;
    for (const v of this.weights.values()) n += v.size;
    return n;
  }

  /** `[B, T]` int32 token ids -> `[B, T, d]` embeddings (differentiable w.r.t. `wte`). */
  embedTokens(ids: tf.Tensor2D): tf.Tensor3D {
    const [B, T] = ids.shape;
    return tf.tidy(() => {
      const flat = ids.dtype === 'int32' ? ids.reshape([B * T]) : tf.cast(ids, 'int32').reshape([B * T]);
      return gatherRows(this.w('wte.weight'), flat as tf.Tensor1D).reshape([B, T, this.config.nEmbd]) as tf.Tensor3D;
    });
  }

  /** Additive attention bias `[B|1, 1, T, Tk]` (causal + padding), or null when nothing is masked. */
  private attentionBias(B: number, T: number, pastLen: number, mask?: tf.Tensor2D): tf.Tensor | null {
    const Tk = pastLen + T;
    let causal: tf.Tensor | null = null;
    if (T > 1) {
      const key = `${T}x${Tk}`;
      let c = this.causalCache.get(key);
      if (!c) {
        const a = new Float32Array(T * Tk);
        for (let i = 0; i < T; i++) for (let j = pastLen + i + 1; j < Tk; j++) a[i * Tk + j] = NEG;
        if (this.causalCache.size >= 32) {
          for (const t of this.causalCache.values()) t.dispose();
          this.causalCache.clear();
        }
        c = tf.keep(tf.tensor4d(a, [1, 1, T, Tk]));
        this.causalCache.set(key, c);
      }
      causal = c;
    }
    if (!mask) return causal;
    if (mask.shape[0] !== B || mask.shape[1] !== Tk) {
      throw new Error(`attentionMask has shape [${mask.shape}], expected [${B}, ${Tk}] (batch, past + new positions)`);
    }
    const pad = tf.mul(tf.sub(1, tf.cast(mask, 'float32')), NEG).reshape([B, 1, 1, Tk]);
    return causal ? tf.add(pad, causal) : pad;
  }

  forward(opts: ForwardOptions): ForwardResult {
    if (this.disposed) throw new Error('GPT-2 model was disposed');
    const c = this.config;
    const d = c.nEmbd;
    const H = c.nHead;
    const hd = d / H;
    if (!opts.inputsEmbeds === !opts.inputIds) throw new Error('GPT2.forward: give exactly one of inputsEmbeds or inputIds');
    const [B, T] = opts.inputsEmbeds ? opts.inputsEmbeds.shape : opts.inputIds!.shape;
    if (opts.inputsEmbeds && opts.inputsEmbeds.shape[2] !== d) {
      throw new Error(`inputsEmbeds has width ${opts.inputsEmbeds.shape[2]}, the model's n_embd is ${d}`);
    }
    const past = opts.past;
    const pastLen = past ? past.length : 0;
    if (past && past.batchSize !== B) throw new Error(`KV cache batch ${past.batchSize} != input batch ${B}`);
    const pos0 = opts.positionOffset ?? pastLen;
    if (pos0 + T > c.nPositions) throw new Error(`sequence of ${pos0 + T} positions exceeds n_positions ${c.nPositions}`);
    const training = !!opts.training;
    // Each dropout call gets its own seed derived from dropoutSeed (the same seed gives the same masks).
    let dropCall = 0;
    const baseSeed = opts.dropoutSeed ?? Math.floor(Math.random() * 2 ** 31);
    const drop = (x: tf.Tensor, rate: number): tf.Tensor => {
      if (!training || rate <= 0) return x;
      dropCall += 1;
      return dropout(x, rate, (baseSeed * 1009 + dropCall) >>> 0);
    };
    const from = opts.logitsFrom ?? 0;
    if (from < 0 || from >= T || (from > 0 && opts.lastOnly)) throw new Error(`logitsFrom ${from} must be in [0, ${T}) and not combined with lastOnly`);

    const out = tf.tidy(() => {
      const N = B * T;
      const emb = opts.inputsEmbeds ? opts.inputsEmbeds : this.embedTokens(opts.inputIds!);
      const posIds = tf.range(pos0, pos0 + T, 1, 'int32') as tf.Tensor1D;
      const pos = gatherRows(this.w('wpe.weight'), posIds);
      let x = drop(tf.add(emb, pos), c.embdPdrop).reshape([N, d]) as tf.Tensor2D;
      const bias = this.attentionBias(B, T, pastLen, opts.attentionMask);
      const scale = 1 / Math.sqrt(hd);
      const presentK: tf.Tensor4D[] = [];
      const presentV: tf.Tensor4D[] = [];
      for (let l = 0; l < c.nLayer; l++) {
        const p = `h.${l}.`;
        // --- attention
        const h1 = layerNorm(x, this.w(p + 'ln_1.weight'), this.w(p + 'ln_1.bias'), c.layerNormEpsilon);
        const qkv = linear(h1, this.w(p + 'attn.c_attn.weight'), this.w(p + 'attn.c_attn.bias'));
        const [q2, k2, v2] = tf.split(qkv, 3, 1);
        const heads = (t: tf.Tensor) => t.reshape([B, T, H, hd]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
        const q = heads(q2);
        let k = heads(k2);
        let v = heads(v2);
        if (past) {
          k = tf.concat([past.keys[l], k], 2);
          v = tf.concat([past.values[l], v], 2);
        }
        if (opts.useCache) {
          presentK.push(k);
          presentV.push(v);
        }
        let scores = tf.mul(tf.matMul(q, k, false, true), scale); // [B,H,T,Tk]
        if (bias) scores = tf.add(scores, bias);
        const probs = drop(tf.softmax(scores), c.attnPdrop);
        const a = tf.matMul(probs, v).transpose([0, 2, 1, 3]).reshape([N, d]); // [N, d]
        const attnOut = linear(a as tf.Tensor2D, this.w(p + 'attn.c_proj.weight'), this.w(p + 'attn.c_proj.bias'));
        x = tf.add(x, drop(attnOut, c.residPdrop));
        // --- MLP
        const h2 = layerNorm(x, this.w(p + 'ln_2.weight'), this.w(p + 'ln_2.bias'), c.layerNormEpsilon);
        const f = gptGelu(linear(h2, this.w(p + 'mlp.c_fc.weight'), this.w(p + 'mlp.c_fc.bias')));
        const m = linear(f as tf.Tensor2D, this.w(p + 'mlp.c_proj.weight'), this.w(p + 'mlp.c_proj.bias'));
        x = tf.add(x, drop(m, c.residPdrop));
      }
      let hF = layerNorm(x, this.w('ln_f.weight'), this.w('ln_f.bias'), c.layerNormEpsilon);
      let Tout = T;
      if (opts.lastOnly && T > 1) {
        hF = hF.reshape([B, T, d]).slice([0, T - 1, 0], [B, 1, d]).reshape([B, d]);
        Tout = 1;
      } else if (from > 0) {
        hF = hF.reshape([B, T, d]).slice([0, from, 0], [B, T - from, d]).reshape([B * (T - from), d]);
        Tout = T - from;
      }
      const logits = matMulNT(hF, this.w('wte.weight') as tf.Tensor as tf.Tensor2D).reshape([B, Tout, c.vocabSize]) as tf.Tensor3D;
      return { logits, presentK, presentV };
    });
    const res: ForwardResult = { logits: out.logits };
    if (opts.useCache) res.present = new KVCache(out.presentK, out.presentV);
    return res;
  }

  /** Free the tensors the model caches between calls (causal masks); they are rebuilt on demand. */
  clearCaches(): void {
    for (const t of this.causalCache.values()) t.dispose();
    this.causalCache.clear();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.weights.values()) v.dispose();
    for (const t of this.causalCache.values()) t.dispose();
    this.causalCache.clear();
  }
}

/**
 * Mean cross-entropy over positions where `mask` is 1: `logits[b, t]` predicts `targets[b, t]`.
 * Targets under mask 0 are ignored (any value).
 *
 * One softmax pass: p = softmax(logits) (a fused kernel); loss = lse - logit[target] with
 * lse = max - log(max p) (max p >= 1/V never underflows); the gradient (p - onehot) * weight reuses
 * p, with the target entries fixed by a scatter instead of a dense one-hot tensor.
 */
export function lmLoss(logits: tf.Tensor3D, targets: tf.Tensor2D, mask: tf.Tensor2D): tf.Scalar {
  const [B, T, V] = logits.shape;
  if (targets.shape[0] !== B || targets.shape[1] !== T || mask.shape[0] !== B || mask.shape[1] !== T) {
    throw new Error(`lmLoss: logits [${logits.shape}], targets [${targets.shape}] and mask [${mask.shape}] disagree`);
  }
  const N = B * T;
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32').reshape([N]);
    const count = tf.maximum(tf.sum(m), 1);
    const w = tf.div(m, count); // per-position weight
    const tgt = tf.cast(tf.clipByValue(targets.reshape([N]), 0, V - 1), 'int32') as tf.Tensor1D;
    const idx2 = tf.stack([tf.range(0, N, 1, 'int32'), tgt], 1) as tf.Tensor2D; // [N, 2]
    // Tensors the gradient needs go through save(): closures would see them disposed by this tidy.
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const lg = args[0] as tf.Tensor;
      const save = args[1] as tf.GradSaveFunc;
      const l2 = lg.reshape([N, V]);
      const p = tf.softmax(l2);
      const lse = tf.sub(tf.max(l2, 1), tf.log(tf.max(p, 1)));
      const picked = tf.gatherND(l2, idx2);
      const value = tf.sum(tf.mul(tf.sub(lse, picked), w)) as tf.Scalar;
      save([p, w, idx2]);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [ps, ws, ix] = saved;
          const scale = tf.mul(ws, dy); // [N]
          const g = tf.mul(ps, scale.reshape([N, 1]));
          const atTarget = tf.sub(tf.gatherND(g, ix), scale);
          return tf.tensorScatterUpdate(g, ix, atTarget).reshape([B, T, V]);
        },
      };
    });
    return f(logits) as tf.Scalar;
  });
}

// ---------------------------------------------------------------------------------------------
// Loading and saving in the Hugging Face layout

const IGNORED_KEYS = /(^|\.)attn\.(bias|masked_bias)$|^lm_head\.weight$/;

/** Map safetensors keys to our names: drop `transformer.`, skip the attention buffers and the tied head. */
export function weightsFromSafetensors(buf: Uint8Array, config: GPT2Config, source = 'model.safetensors'): Map<string, tf.Tensor> {
  const file = parseSafetensors(buf, source);
  const shapes = weightShapes(config);
  const out = new Map<string, tf.Tensor>();
  const unexpected: string[] = [];
  try {
    for (const [key, entry] of file.tensors) {
      const name = key.startsWith('transformer.') ? key.slice('transformer.'.length) : key;
      if (IGNORED_KEYS.test(name)) continue;
      const shape = shapes.get(name);
      if (!shape) {
        unexpected.push(key);
        continue;
      }
      if (entry.shape.length !== shape.length || entry.shape.some((s, i) => s !== shape[i])) {
        throw new Error(`${source}: tensor ${key} has shape [${entry.shape}], config.json implies [${shape}]`);
      }
      out.set(name, tf.tensor(toFloat32(entry), shape, 'float32'));
    }
    if (unexpected.length) {
      throw new Error(`${source}: unexpected tensor(s) ${unexpected.slice(0, 8).join(', ')} (does config.json match the weights?)`);
    }
    const missing = [...shapes.keys()].filter((k) => !out.has(k));
    if (missing.length) {
      throw new Error(`${source}: missing tensor(s) ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ` and ${missing.length - 8} more` : ''}`);
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}

export interface LoadGPT2Options extends FetchOptions {
  /** Start frozen (not trainable). Default false. */
  frozen?: boolean;
}

/** Load `config.json` + `model.safetensors` from a local directory or a hub id. */
export async function loadGPT2(idOrDir: string, opts: LoadGPT2Options = {}): Promise<GPT2> {
  const cfgJson = await resolveModelJson(idOrDir, 'config.json', opts);
  const config = configFromHF(cfgJson!, `config.json of ${idOrDir}`);
  const buf = await resolveModelFile(idOrDir, 'model.safetensors', { ...opts, optional: true });
  if (!buf) {
    throw new Error(
      `model "${idOrDir}" has no model.safetensors (only safetensors weights are read; convert a pytorch_model.bin with ` +
        '`transformers` save_pretrained(safe_serialization=True))',
    );
  }
  const weights = weightsFromSafetensors(buf, config, `model.safetensors of ${idOrDir}`);
  try {
    const model = new GPT2(config, weights);
    if (opts.frozen) model.setTrainable(false);
    return model;
  } finally {
    for (const t of weights.values()) t.dispose();
  }
}

/** Write `model.safetensors` of a model to a file atomically. */
export function writeGPT2Safetensors(model: GPT2, file: string): void {
  saveSafetensorsFile(file, model.namedWeights(), { format: 'pt' });
}

/**
 * Save in the Hugging Face layout (config.json, model.safetensors, and `extraFiles` such as
 * tokenizer files), atomically: the directory is built beside `dir` and then replaces it whole.
 */
export async function saveGPT2(model: GPT2, dir: string, extraFiles: Record<string, string | Uint8Array> = {}): Promise<void> {
  await buildDirAtomic(dir, (tmp) => {
    writeGPT2Safetensors(model, path.join(tmp, 'model.safetensors'));
    writeJsonAtomic(path.join(tmp, 'config.json'), configToHF(model.config));
    for (const [name, data] of Object.entries(extraFiles)) writeFileAtomic(path.join(tmp, name), data);
  });
}

/** A model with its tokenizer (restricted to the model's vocabulary when the directory has vocab_map.json). */
export interface LanguageModel {
  model: GPT2;
  tokenizer: Tokenizer;
}

/**
 * Load a GPT-2 and its tokenizer from a model directory or hub id. With `vocab_map.json` (a
 * RestrictedVocab) the tokenizer encodes to and decodes from the model's compact ids.
 */
export async function loadLanguageModel(idOrDir: string, opts: LoadGPT2Options = {}): Promise<LanguageModel> {
  const mapJson = await optionalJson(idOrDir, 'vocab_map.json', opts);
  const base = await loadTokenizer(idOrDir, opts);
  const tokenizer = mapJson ? restrictTokenizer(base, RestrictedVocab.fromJSON(mapJson, `vocab_map.json of ${idOrDir}`)) : base;
  const model = await loadGPT2(idOrDir, opts);
  const V = model.config.vocabSize;
  if (mapJson ? tokenizer.vocabSize !== V : tokenizer.vocabSize > V) {
    model.dispose();
    throw new Error(
      `model "${idOrDir}": the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${V}` +
        (mapJson ? ' (vocab_map.json does not match the weights)' : ''),
    );
  }
  return { model, tokenizer };
}

/** Save a model with its tokenizer files (and vocab_map.json for a restricted vocabulary). */
export async function saveLanguageModel(lm: LanguageModel, dir: string, extraFiles: Record<string, string | Uint8Array> = {}): Promise<void> {
  const files = lm.tokenizer.files?.();
  if (!files) throw new Error('this tokenizer cannot be saved (it has no files())');
  await saveGPT2(lm.model, dir, { ...files, ...extraFiles });
}
