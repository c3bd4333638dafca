// Mapping networks of ClipCap: image embedding -> prefix_length vectors in GPT-2's embedding space.
//
// Both follow the original code (rmokady/CLIP_prefix_caption, train.py):
//  - MLP: Linear(dim -> d*prefix/2), tanh, Linear(-> d*prefix), reshaped to [B, prefix, d].
//  - Transformer: Linear(dim -> clip_length*d) reshaped to clip_length tokens, concatenated with
//    prefix_length learned constants, an encoder of num_layers pre-LayerNorm blocks (8 heads,
//    bidirectional attention, no bias on queries/keys/values, ReLU MLP of ratio 2), output = the last
//    prefix_length positions.
// Weights are saved under the original PyTorch parameter names and layouts (Linear weight [out, in]),
// so that checkpoints read like the original's state_dict.
import * as tf from '@tensorflow/tfjs';
import { fusedAttention, fusedAttentionFits, layerNorm, linear } from '../tfjs/ops';
import { mulberry32 as rng } from '../util/rng';

export interface MapperConfig {
  kind: 'mlp' | 'transformer';
  /** Image embedding size (CLIP ViT-B/32: 512). */
  inputDim: number;
  /** GPT-2 embedding size (gpt2: 768). */
  embedDim: number;
  prefixLength: number;
  /** Transformer only. */
  clipLength: number;
  numLayers: number;
  numHeads: number;
  mlpRatio: number;
}

export function defaultMapperConfig(partial: Partial<MapperConfig> & Pick<MapperConfig, 'kind' | 'inputDim' | 'embedDim' | 'prefixLength'>): MapperConfig {
  return { clipLength: partial.prefixLength, numLayers: 8, numHeads: 8, mlpRatio: 2, ...partial };
}

/** A learnable tensor with its PyTorch name and whether it is stored transposed ([out,in] on disk). */
interface Param {
  name: string;
  v: tf.Variable;
  transposedOnDisk: boolean;
}

function uniform(shape: number[], bound: number, rand: () => number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = (rand() * 2 - 1) * bound;
  return tf.tensor(data, shape);
}

function normal(shape: number[], rand: () => number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = Math.max(rand(), 1e-12);
    const u2 = rand();
    const r = Math.sqrt(-2 * Math.log(u1));
    data[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) data[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return tf.tensor(data, shape);
}

export abstract class Mapper {
  readonly config: MapperConfig;
  protected readonly params: Param[] = [];

  constructor(config: MapperConfig) {
    this.config = config;
  }

  /** PyTorch nn.Linear init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias. Stored [in, out]. */
  protected linear(name: string, inDim: number, outDim: number, rand: () => number, bias = true): { w: tf.Variable; b: tf.Variable | null } {
    const bound = 1 / Math.sqrt(inDim);
    const w = tf.variable(uniform([inDim, outDim], bound, rand), true);
    this.params.push({ name: `${name}.weight`, v: w, transposedOnDisk: true });
    let b: tf.Variable | null = null;
    if (bias) {
      b = tf.variable(uniform([outDim], bound, rand), true);
      this.params.push({ name: `${name}.bias`, v: b, transposedOnDisk: false });
    }
    return { w, b };
  }

  protected layerNorm(name: string, dim: number): { g: tf.Variable; b: tf.Variable } {
    const g = tf.variable(tf.ones([dim]), true);
    const b = tf.variable(tf.zeros([dim]), true);
    this.params.push({ name: `${name}.weight`, v: g, transposedOnDisk: false }, { name: `${name}.bias`, v: b, transposedOnDisk: false });
    return { g, b };
  }

  protected addParam(name: string, t: tf.Tensor): tf.Variable {
    const v = tf.variable(t, true);
    this.params.push({ name, v, transposedOnDisk: false });
    return v;
  }

  /** [B, inputDim] -> [B, prefixLength, embedDim]. */
  abstract forward(x: tf.Tensor2D, training?: boolean): tf.Tensor3D;

  variables(): tf.Variable[] {
    return this.params.map((p) => p.v);
  }

  parameterCount(): number {
    return this.params.reduce((n, p) => n + p.v.size, 0);
  }

  /** Weights under their PyTorch names and layouts (Linear weights [out, in]). Caller disposes. */
  stateDict(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const p of this.params) out.set(p.name, p.transposedOnDisk ? tf.transpose(p.v) : p.v.clone());
    return out;
  }

  /** Load weights saved by stateDict (or converted from the original PyTorch checkpoint). */
  loadStateDict(weights: Map<string, tf.Tensor>, prefix = ''): void {
    for (const p of this.params) {
      const t = weights.get(prefix + p.name);
      if (!t) throw new Error(`mapper weight ${prefix + p.name} is missing`);
      const want = p.transposedOnDisk ? [...p.v.shape].reverse() : p.v.shape;
      if (t.shape.join(',') !== want.join(',')) {
        throw new Error(`mapper weight ${prefix + p.name} has shape [${t.shape}], expected [${want}]`);
      }
      tf.tidy(() => p.v.assign(p.transposedOnDisk ? tf.transpose(t) : t));
    }
  }

  /** Names of the parameters in order (for optimizer state). */
  parameterNames(): string[] {
    return this.params.map((p) => p.name);
  }

  dispose(): void {
    for (const p of this.params) p.v.dispose();
  }
}

/** x @ W (+ b): one fused product with the bias (tfjs/ops.ts linear) when there is a bias. */
function dense(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor | null): tf.Tensor2D {
  return b ? linear(x, w, b) : (tf.matMul(x, w as tf.Tensor2D) as tf.Tensor2D);
}

export class MLPMapper extends Mapper {
  private readonly l0: { w: tf.Variable; b: tf.Variable | null };
  private readonly l1: { w: tf.Variable; b: tf.Variable | null };

  constructor(config: MapperConfig, seed = 0) {
    super(config);
    const rand = rng(seed);
    const out = config.embedDim * config.prefixLength;
    const hidden = Math.floor(out / 2);
    this.l0 = this.linear('model.0', config.inputDim, hidden, rand);
    this.l1 = this.linear('model.2', hidden, out, rand);
  }

  forward(x: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const h = tf.tanh(dense(x, this.l0.w, this.l0.b));
      const y = dense(h, this.l1.w, this.l1.b);
      return tf.reshape(y, [x.shape[0], this.config.prefixLength, this.config.embedDim]) as tf.Tensor3D;
    });
  }
}

interface Block {
  ln1: { g: tf.Variable; b: tf.Variable };
  q: { w: tf.Variable; b: tf.Variable | null };
  kv: { w: tf.Variable; b: tf.Variable | null };
  proj: { w: tf.Variable; b: tf.Variable | null };
  ln2: { g: tf.Variable; b: tf.Variable };
  fc1: { w: tf.Variable; b: tf.Variable | null };
  fc2: { w: tf.Variable; b: tf.Variable | null };
}

export class TransformerMapper extends Mapper {
  private readonly project: { w: tf.Variable; b: tf.Variable | null };
  private readonly prefixConst: tf.Variable;
  private readonly blocks: Block[] = [];

  constructor(config: MapperConfig, seed = 0) {
    super(config);
    if (config.embedDim % config.numHeads !== 0) {
      throw new Error(`transformer mapper: embedDim ${config.embedDim} is not divisible by numHeads ${config.numHeads}`);
    }
    const rand = rng(seed);
    const d = config.embedDim;
    this.project = this.linear('linear', config.inputDim, config.clipLength * d, rand);
    this.prefixConst = this.addParam('prefix_const', normal([config.prefixLength, d], rand));
    const hidden = Math.floor(d * config.mlpRatio);
    for (let i = 0; i < config.numLayers; i++) {
      const p = `transformer.layers.${i}`;
      this.blocks.push({
        ln1: this.layerNorm(`${p}.norm1`, d),
        q: this.linear(`${p}.attn.to_queries`, d, d, rand, false),
        kv: this.linear(`${p}.attn.to_keys_values`, d, 2 * d, rand, false),
        proj: this.linear(`${p}.attn.project`, d, d, rand),
        ln2: this.layerNorm(`${p}.norm2`, d),
        fc1: this.linear(`${p}.mlp.fc1`, d, hidden, rand),
        fc2: this.linear(`${p}.mlp.fc2`, hidden, d, rand),
      });
    }
  }

  /** Bidirectional multi-head self-attention over [B, T, d] given as rows [B*T, d]. */
  private attention(h: tf.Tensor2D, blk: Block, B: number, T: number): tf.Tensor2D {
    const d = this.config.embedDim;
    const H = this.config.numHeads;
    const hd = d / H;
    const scale = 1 / Math.sqrt(hd);
    const qRows = dense(h, blk.q.w, null);
    // to_keys_values's output reshaped [B, T, 2, H, hd] in the original: keys are its first d columns,
    // values the next d
    const kvRows = dense(h, blk.kv.w, null);
    // one kernel where the backend has it (tfjs/fused.ts)
    if (fusedAttentionFits(hd)) return dense(fusedAttention([qRows, 0], [kvRows, 0], [kvRows, d], B, T, H, { causal: false, scale }), blk.proj.w, blk.proj.b);
    const q = tf.reshape(qRows, [B, T, H, hd]).transpose([0, 2, 1, 3]); // [B,H,T,hd]
    // a 2-D split (a 5-D one is ~100x slower on the wasm backend)
    const [kPart, vPart] = tf.split(kvRows, 2, 1);
    const k = kPart.reshape([B, T, H, hd]).transpose([0, 2, 3, 1]); // [B,H,hd,T]
    const v = vPart.reshape([B, T, H, hd]).transpose([0, 2, 1, 3]); // [B,H,T,hd]
    const att = tf.softmax(tf.mul(tf.matMul(q, k), scale), -1); // [B,H,T,T]
    const o = tf.matMul(att, v).transpose([0, 2, 1, 3]).reshape([B * T, d]) as tf.Tensor2D;
    return dense(o, blk.proj.w, blk.proj.b);
  }

  forward(x: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const { clipLength: C, prefixLength: P, embedDim: d } = this.config;
      const B = x.shape[0];
      const T = C + P;
      const clipTokens = tf.reshape(dense(x, this.project.w, this.project.b), [B, C, d]);
      // the constants repeated for each image: a broadcast multiply by ones gives the same values and
      // gradient as tf.broadcastTo, whose wasm kernel (Tile) costs ~80 ns an element here
      const consts = tf.mul(tf.ones([B, 1, 1]), tf.expandDims(this.prefixConst, 0));
      let h = tf.reshape(tf.concat([clipTokens, consts], 1), [B * T, d]) as tf.Tensor2D;
      for (const blk of this.blocks) {
        h = tf.add(h, this.attention(layerNorm(h, blk.ln1.g, blk.ln1.b, 1e-5), blk, B, T)) as tf.Tensor2D;
        const m = dense(tf.relu(dense(layerNorm(h, blk.ln2.g, blk.ln2.b, 1e-5), blk.fc1.w, blk.fc1.b)), blk.fc2.w, blk.fc2.b);
        h = tf.add(h, m) as tf.Tensor2D;
      }
      return tf.reshape(h, [B, T, d]).slice([0, C, 0], [B, P, d]) as tf.Tensor3D;
    });
  }
}

export function createMapper(config: MapperConfig, seed = 0): Mapper {
  return config.kind === 'mlp' ? new MLPMapper(config, seed) : new TransformerMapper(config, seed);
}
