// GPT-2 (Radford et al. 2019) in TensorFlow.js, weight-for-weight compatible with Hugging Face's
// `GPT2LMHeadModel`: pre-LayerNorm blocks, causal multi-head self-attention, `gelu_new` MLP, tied LM
// head, dropout in training only. Forward takes token ids or input embeddings (ClipCap's prefix), an
// attention mask for padding, and a KV cache for incremental decoding.
//
// Weights are named as in Hugging Face checkpoints without the `transformer.` prefix
// (`wte.weight`, `h.0.attn.c_attn.weight`, ...), with the Conv1D `[in, out]` layout, so that
// `x @ W + b` is a plain (untransposed) matMul. The residual stream is kept 2-D (`[B*T, d]`) so that
// every projection is a single 2-D matMul (the fast path of the wasm backend). LayerNorm, GELU,
// dropout and linear layers have hand-written gradients (src/lib/tfjs/ops.ts), and so has the loss
// (src/lib/model/loss.ts); speed on the wasm backend comes from src/lib/tfjs/wasm-patches.ts
// (installed by ensureBackend). Generation: src/lib/model/generate.ts.
//
// Loading and saving in the Hugging Face layout: model/gpt2-hf.ts.

import * as tf from '@tensorflow/tfjs';
import { dropout, fusedAttention, fusedAttentionFits, gatherRows, matMulNT, gptGelu, layerNorm, linear } from '../tfjs/ops';
import { lmHeadLoss } from './loss';

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
    const r = this.run(opts, true);
    const res: ForwardResult = { logits: r.logits! };
    if (r.present) res.present = r.present;
    return res;
  }

  /**
   * The final LayerNorm's output `[B, T', d]` for the positions `forward` would give logits for,
   * without the LM head: for `headLoss`, which needs no `[B, T', V]` logits tensor.
   */
  hidden(opts: Omit<ForwardOptions, 'useCache' | 'past'>): tf.Tensor3D {
    return this.run(opts, false).hidden!;
  }

  /**
   * Mean cross-entropy of the tied LM head over hidden states `[N, d]` (from `hidden`) against
   * `targets` `[N]`, where `mask` `[N]` is 1 (model/loss.ts `lmHeadLoss`).
   */
  headLoss(hidden: tf.Tensor2D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
    return lmHeadLoss(hidden, this.w('wte.weight') as tf.Tensor as tf.Tensor2D, targets, mask);
  }

  private run(opts: ForwardOptions, head: boolean): { logits?: tf.Tensor3D; hidden?: tf.Tensor3D; present?: KVCache } {
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
    const nextSeed = () => (baseSeed * 1009 + ++dropCall) >>> 0;
    const drop = (x: tf.Tensor, rate: number): tf.Tensor => (!training || rate <= 0 ? x : dropout(x, rate, nextSeed()));
    const from = opts.logitsFrom ?? 0;
    if (from < 0 || from >= T || (from > 0 && opts.lastOnly)) throw new Error(`logitsFrom ${from} must be in [0, ${T}) and not combined with lastOnly`);

    const out = tf.tidy(() => {
      const N = B * T;
      const emb = opts.inputsEmbeds ? opts.inputsEmbeds : this.embedTokens(opts.inputIds!);
      const posIds = tf.range(pos0, pos0 + T, 1, 'int32') as tf.Tensor1D;
      const pos = gatherRows(this.w('wpe.weight'), posIds);
      let x = drop(tf.add(emb, pos), c.embdPdrop).reshape([N, d]) as tf.Tensor2D;
      const scale = 1 / Math.sqrt(hd);
      // without a cache or a padding mask (training, scoring), attention is one kernel where the backend has it (tfjs/fused.ts)
      const fused = !past && !opts.useCache && !opts.attentionMask && fusedAttentionFits(hd);
      const bias = fused ? null : this.attentionBias(B, T, pastLen, opts.attentionMask);
      const presentK: tf.Tensor4D[] = [];
      const presentV: tf.Tensor4D[] = [];
      for (let l = 0; l < c.nLayer; l++) {
        const p = `h.${l}.`;
        // --- attention
        const h1 = layerNorm(x, this.w(p + 'ln_1.weight'), this.w(p + 'ln_1.bias'), c.layerNormEpsilon);
        const qkv = linear(h1, this.w(p + 'attn.c_attn.weight'), this.w(p + 'attn.c_attn.bias'));
        let a: tf.Tensor2D;
        if (fused) {
          const dropOpt = training && c.attnPdrop > 0 ? { dropout: { rate: c.attnPdrop, seed: nextSeed() } } : {};
          a = fusedAttention([qkv, 0], [qkv, d], [qkv, 2 * d], B, T, H, { causal: true, scale, ...dropOpt });
        } else {
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
          a = tf.matMul(probs, v).transpose([0, 2, 1, 3]).reshape([N, d]) as tf.Tensor2D; // [N, d]
        }
        const attnOut = linear(a, this.w(p + 'attn.c_proj.weight'), this.w(p + 'attn.c_proj.bias'));
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
      if (!head) return { out: hF.reshape([B, Tout, d]) as tf.Tensor3D, presentK, presentV };
      const logits = matMulNT(hF, this.w('wte.weight') as tf.Tensor as tf.Tensor2D).reshape([B, Tout, c.vocabSize]) as tf.Tensor3D;
      return { out: logits, presentK, presentV };
    });
    const present = opts.useCache ? new KVCache(out.presentK, out.presentV) : undefined;
    return head ? { logits: out.out, present } : { hidden: out.out, present };
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

