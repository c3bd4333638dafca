// Tiny random GPT-2 models written exactly as Hugging Face stores them: config.json (GPT2Config keys)
// and model.safetensors with Conv1D [in, out] weights, optionally under the `transformer.` prefix and
// with the `attn.bias` / `attn.masked_bias` buffers that older checkpoints carry. Plus a tiny
// byte-level BPE tokenizer (vocab.json + merges.txt) whose vocabulary fits such a model.
//
// Weights come from a seeded PRNG in plain JavaScript (independent of TensorFlow.js), so a test can
// feed the same numbers to an independent reference implementation.
import * as fs from 'fs';
import * as path from 'path';
import { writeSafetensors, type SafeTensorInput } from '../../src/lib/io/safetensors';

export interface TinyConfig {
  vocabSize: number;
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  layerNormEpsilon: number;
}

export const TINY: TinyConfig = { vocabSize: 61, nPositions: 32, nEmbd: 16, nLayer: 2, nHead: 4, layerNormEpsilon: 1e-5 };

/** mulberry32: a small seeded PRNG. */
export { mulberry32 as rng } from '../../src/lib/util/rng';
import { mulberry32 as rng } from '../../src/lib/util/rng';

export function normalSampler(seed: number): () => number {
  const u = rng(seed);
  return () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
}

/** Weight names and shapes, HF order, written independently of src/lib/model/gpt2.ts. */
export function hfShapes(c: TinyConfig): [string, number[]][] {
  const d = c.nEmbd;
  const out: [string, number[]][] = [
    ['wte.weight', [c.vocabSize, d]],
    ['wpe.weight', [c.nPositions, d]],
  ];
  for (let i = 0; i < c.nLayer; i++) {
    out.push(
      [`h.${i}.ln_1.weight`, [d]],
      [`h.${i}.ln_1.bias`, [d]],
      [`h.${i}.attn.c_attn.weight`, [d, 3 * d]],
      [`h.${i}.attn.c_attn.bias`, [3 * d]],
      [`h.${i}.attn.c_proj.weight`, [d, d]],
      [`h.${i}.attn.c_proj.bias`, [d]],
      [`h.${i}.ln_2.weight`, [d]],
      [`h.${i}.ln_2.bias`, [d]],
      [`h.${i}.mlp.c_fc.weight`, [d, 4 * d]],
      [`h.${i}.mlp.c_fc.bias`, [4 * d]],
      [`h.${i}.mlp.c_proj.weight`, [4 * d, d]],
      [`h.${i}.mlp.c_proj.bias`, [d]],
    );
  }
  out.push(['ln_f.weight', [d]], ['ln_f.bias', [d]]);
  return out;
}

export interface RawWeight {
  shape: number[];
  data: Float32Array;
}

/**
 * Random weights large enough that attention and the MLP are far from linear (std `scale`,
 * LayerNorm gains around 1, non-zero biases).
 */
export function randomHFWeights(c: TinyConfig, seed = 1, scale = 0.3): Map<string, RawWeight> {
  const g = normalSampler(seed);
  const m = new Map<string, RawWeight>();
  for (const [name, shape] of hfShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isLnGain = /ln_(\d|f)\.weight$/.test(name);
    for (let i = 0; i < n; i++) data[i] = isLnGain ? 1 + 0.1 * g() : (name.endsWith('.bias') ? 0.1 : scale) * g();
    m.set(name, { shape, data });
  }
  return m;
}

export function hfConfigJson(c: TinyConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    activation_function: 'gelu_new',
    architectures: ['GPT2LMHeadModel'],
    attn_pdrop: 0.1,
    bos_token_id: c.vocabSize - 1,
    embd_pdrop: 0.1,
    eos_token_id: c.vocabSize - 1,
    initializer_range: 0.02,
    layer_norm_epsilon: c.layerNormEpsilon,
    model_type: 'gpt2',
    n_ctx: c.nPositions,
    n_embd: c.nEmbd,
    n_head: c.nHead,
    n_inner: null,
    n_layer: c.nLayer,
    n_positions: c.nPositions,
    resid_pdrop: 0.1,
    scale_attn_weights: true,
    summary_activation: null,
    summary_first_dropout: 0.1,
    summary_proj_to_labels: true,
    summary_type: 'cls_index',
    summary_use_proj: true,
    vocab_size: c.vocabSize,
    ...extra,
  };
}

export interface WriteOptions {
  /** Store keys as `transformer.h.0...` (GPT2LMHeadModel.save_pretrained) instead of `h.0...`. */
  prefix?: boolean;
  /** Include the `attn.bias` (causal mask) and `attn.masked_bias` buffers. */
  buffers?: boolean;
  /** Include a (tied) `lm_head.weight`. */
  lmHead?: boolean;
  /** Write a byte-level tokenizer (vocab.json + merges.txt) that fits vocabSize (see byteTokenizerFiles). */
  tokenizer?: boolean;
  seed?: number;
  scale?: number;
}

/** Write a tiny random GPT-2 in the Hugging Face layout into `dir`; returns its weights. */
export function writeTinyGPT2(dir: string, c: TinyConfig = TINY, opts: WriteOptions = {}): Map<string, RawWeight> {
  fs.mkdirSync(dir, { recursive: true });
  const weights = randomHFWeights(c, opts.seed ?? 1, opts.scale ?? 0.3);
  const tensors = new Map<string, SafeTensorInput>();
  const pre = opts.prefix ? 'transformer.' : '';
  for (const [name, w] of weights) tensors.set(pre + name, w);
  if (opts.buffers) {
    const P = c.nPositions;
    for (let i = 0; i < c.nLayer; i++) {
      const tril = new Float32Array(P * P);
      for (let r = 0; r < P; r++) for (let k = 0; k <= r; k++) tril[r * P + k] = 1;
      tensors.set(`${pre}h.${i}.attn.bias`, { shape: [1, 1, P, P], data: tril });
      tensors.set(`${pre}h.${i}.attn.masked_bias`, { shape: [], data: new Float32Array([-1e4]) });
    }
  }
  if (opts.lmHead) tensors.set('lm_head.weight', weights.get('wte.weight')!);
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfigJson(c), null, 2));
  if (opts.tokenizer) {
    const files = byteTokenizerFiles();
    if (files.vocabSize !== c.vocabSize) throw new Error(`byte tokenizer has ${files.vocabSize} tokens, config ${c.vocabSize}`);
    fs.writeFileSync(path.join(dir, 'vocab.json'), files.vocabJson);
    fs.writeFileSync(path.join(dir, 'merges.txt'), files.mergesTxt);
  }
  return weights;
}

/** GPT-2's byte -> printable unicode table (openai/gpt-2 encoder.py bytes_to_unicode). */
export function bytesToUnicode(): Map<number, string> {
  const bs: number[] = [];
  for (let b = '!'.charCodeAt(0); b <= '~'.charCodeAt(0); b++) bs.push(b);
  for (let b = '¡'.charCodeAt(0); b <= '¬'.charCodeAt(0); b++) bs.push(b);
  for (let b = '®'.charCodeAt(0); b <= 'ÿ'.charCodeAt(0); b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  return new Map(bs.map((b, i) => [b, String.fromCharCode(cs[i])]));
}

/** Merges of the tiny byte-level tokenizer. */
export const BYTE_MERGES = ['Ġ t', 'h e', 'Ġt he', 'Ġ a', 'i n'];

/**
 * A byte-level BPE tokenizer in GPT-2's file format: the 256 byte symbols, a few merges, and
 * `<|endoftext|>` last. Vocabulary size 256 + merges + 1 = 262.
 */
export function byteTokenizerFiles(): { vocabJson: string; mergesTxt: string; vocabSize: number; eosId: number } {
  const vocab: Record<string, number> = {};
  const b2u = bytesToUnicode();
  for (let b = 0; b < 256; b++) vocab[b2u.get(b)!] = b;
  let id = 256;
  for (const m of BYTE_MERGES) vocab[m.replace(' ', '')] = id++;
  vocab['<|endoftext|>'] = id++;
  return {
    vocabJson: JSON.stringify(vocab),
    mergesTxt: '#version: 0.2\n' + BYTE_MERGES.join('\n') + '\n',
    vocabSize: id,
    eosId: id - 1,
  };
}

/** A tiny config whose vocabulary fits the byte tokenizer. */
export const TINY_BYTES: TinyConfig = { ...TINY, vocabSize: 256 + BYTE_MERGES.length + 1 };
