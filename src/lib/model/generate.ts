// Text generation from input embeddings (so that a ClipCap prefix can lead): greedy, beam search
// (ClipCap's `generate_beam`), sampling at a temperature (for consensus decoding, eval/mbr.ts), and
// top-p (nucleus) sampling with a seed.
//
// All three are synchronous (they read logits with dataSync, fine on the CPU backends) and use the
// model's KV cache: the prefix is run once, then one token per step. Token choice happens in
// JavaScript in float64 from the float32 logits.
//
// Non-finite logits (NaN or infinite weights or prefix) raise NonFiniteLogitsError: never a caption.
//
// Stopping: a sequence ends at `eosId` or at any of `stopIds` (e.g. the id of "." for captions).
// Returned ids include a stop token from `stopIds` (the "." belongs to the caption) but never the
// EOS token.
import * as tf from '@tensorflow/tfjs';
import type { GPT2, KVCache } from './gpt2';
import { mulberry32 } from '../util/rng';

export interface GenerateOptions {
  maxNewTokens: number;
  eosId: number;
  stopIds?: number[];
  /** Use the KV cache (default true); false recomputes the whole sequence each step (benchmarks). */
  useCache?: boolean;
}

function checkPrefix(model: GPT2, prefix: tf.Tensor3D): void {
  if (prefix.rank !== 3 || prefix.shape[2] !== model.config.nEmbd) {
    throw new Error(`prefix must be [B, P, ${model.config.nEmbd}] input embeddings, got [${prefix.shape}]`);
  }
}

/**
 * One decoding step: GPT-2 on the new input embeddings (after those in the KV cache; without the
 * cache, on the whole sequence from position 0), and the last position's logits as floats, [B][V] flat.
 */
function stepLogits(model: GPT2, input: tf.Tensor3D, past: KVCache | undefined, useCache: boolean, step: number) {
  const r = model.forward({ inputsEmbeds: input, past, useCache, lastOnly: true, positionOffset: useCache ? undefined : 0 });
  const logits = r.logits.dataSync() as Float32Array;
  r.logits.dispose();
  try {
    assertFiniteLogits(logits, step);
  } catch (e) {
    r.present?.dispose();
    throw e;
  }
  return { logits, present: r.present };
}

/** Logits that are NaN or infinite: decoding stops instead of turning them into tokens. */
export class NonFiniteLogitsError extends Error {
  constructor(readonly step: number, readonly count: number, readonly total: number) {
    super(
      `decoding stopped: the language model gave non-finite logits (${count} of ${total} NaN or infinite) at new token ${step + 1}, so no text is made; ` +
        'the model or its prefix holds NaN or infinite values (a diverged training, or damaged weights): retrain it or restore its weights',
    );
    this.name = 'NonFiniteLogitsError';
  }
}

function assertFiniteLogits(logits: Float32Array, step: number): void {
  let bad = 0;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (x - x !== 0) bad += 1;
  }
  if (bad > 0) throw new NonFiniteLogitsError(step, bad, logits.length);
}

/**
 * The shared decoding loop: `pick` turns each row's last-position logits (float32, [B][V] flat)
 * into the next token of every row.
 */
function decodeLoop(model: GPT2, prefix: tf.Tensor3D, opts: GenerateOptions, pick: (logits: Float32Array, B: number, V: number) => number[]): number[][] {
  checkPrefix(model, prefix);
  const B = prefix.shape[0];
  const V = model.config.vocabSize;
  const useCache = opts.useCache ?? true;
  const stops = new Set(opts.stopIds ?? []);
  const out: number[][] = Array.from({ length: B }, () => []);
  const done = new Array<boolean>(B).fill(false);
  let past: KVCache | undefined;
  let input: tf.Tensor3D = prefix;
  try {
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const r = stepLogits(model, input, past, useCache, step);
      if (input !== prefix) input.dispose();
      past?.dispose();
      past = r.present;
      const next = pick(r.logits, B, V);
      for (let b = 0; b < B; b++) {
        if (done[b]) continue;
        const id = next[b];
        if (id === opts.eosId) done[b] = true;
        else {
          out[b].push(id);
          if (stops.has(id)) done[b] = true;
        }
      }
      if (done.every(Boolean) || step === opts.maxNewTokens - 1) break;
      input = tf.tidy(() => {
        if (useCache) return model.embedTokens(tf.tensor2d(next, [B, 1], 'int32'));
        // recompute: the prefix and every token chosen so far (finished rows keep their choices)
        const hist = out.map((row, b) => (done[b] ? row.concat(new Array(step + 1 - row.length).fill(next[b])) : row));
        return tf.concat([prefix, model.embedTokens(tf.tensor2d(hist, [B, step + 1], 'int32'))], 1) as tf.Tensor3D;
      });
    }
  } finally {
    if (input !== prefix) input.dispose();
    past?.dispose();
  }
  return out;
}

function argmaxRow(logits: Float32Array, off: number, V: number): number {
  let best = 0;
  let bv = -Infinity;
  for (let v = 0; v < V; v++) {
    const x = logits[off + v];
    if (x > bv) {
      bv = x;
      best = v;
    }
  }
  return best;
}

/** Greedy decoding of a batch of prefixes `[B, P, d]`. */
export function greedy(model: GPT2, prefix: tf.Tensor3D, opts: GenerateOptions): number[][] {
  return decodeLoop(model, prefix, opts, (logits, B, V) => Array.from({ length: B }, (_, b) => argmaxRow(logits, b * V, V)));
}

export interface BeamOptions extends GenerateOptions {
  /** Number of beams (default 5, as ClipCap). */
  beamSize?: number;
  /** Logits are divided by this (default 1). */
  temperature?: number;
  /**
   * Never let a beam repeat an n-gram of this many tokens that it already holds (Hugging Face's
   * `no_repeat_ngram_size`); 0 (default) = off. Stops loops such as "a white shirt and white shirt ...".
   */
  noRepeatNgram?: number;
  /**
   * Beams compete by sum of log-probs / tokens^lengthPenalty: 1 (default) is ClipCap's average per
   * token; below 1 favours shorter captions, above 1 longer ones.
   */
  lengthPenalty?: number;
  /**
   * Contrastive scoring against an image-free prefix (maximum mutual information decoding, Li et al.
   * 2016): each token scores log p(token | image prefix) - weight * log p(token | contrast prefix), so
   * that continuations any photo would get ("a man is standing ...") lose to ones this photo makes
   * likelier. `prefix` [1, P, d] is typically the mapper applied to the average image embedding; weight 0
   * is plain beam search. Needs the KV cache.
   */
  contrast?: { prefix: tf.Tensor3D; weight: number };
}

/** Tokens that would complete an n-gram `seq` already holds (the last n-1 tokens followed by it). */
export function bannedNextTokens(seq: readonly number[], n: number): Set<number> {
  const banned = new Set<number>();
  if (!(n >= 1) || seq.length < n - 1) return banned;
  const start = seq.length - (n - 1);
  for (let i = 0; i + n <= seq.length; i++) {
    let same = true;
    for (let k = 0; k < n - 1 && same; k++) same = seq[i + k] === seq[start + k];
    if (same) banned.add(seq[i + n - 1]);
  }
  return banned;
}

export interface Beam {
  ids: number[];
  /** Length-normalised log-probability: sum of token log-probs / tokens^lengthPenalty (stop token included). */
  score: number;
}

/** log-softmax of row `r` (with temperature), in float64, into `out` (a new array when absent). */
function logSoftmaxRow(logits: Float32Array, r: number, V: number, temperature: number, out = new Float64Array(V)): Float64Array {
  const off = r * V;
  let mx = -Infinity;
  if (temperature === 1) {
    for (let v = 0; v < V; v++) {
      const x = logits[off + v];
      out[v] = x;
      if (x > mx) mx = x;
    }
  } else {
    for (let v = 0; v < V; v++) {
      const x = logits[off + v] / temperature;
      out[v] = x;
      if (x > mx) mx = x;
    }
  }
  let z = 0;
  for (let v = 0; v < V; v++) z += Math.exp(out[v] - mx);
  const lse = mx + Math.log(z);
  for (let v = 0; v < V; v++) out[v] -= lse;
  return out;
}

/** Indices of the k largest values (ties: lower index first), best first. */
function topK(values: Float64Array, k: number): number[] {
  const idx: number[] = [];
  let worst = -Infinity; // values[idx[k - 1]] once k are held
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (x === -Infinity || Number.isNaN(x)) continue;
    if (idx.length < k) {
      idx.push(i);
      for (let j = idx.length - 1; j > 0 && values[idx[j]] > values[idx[j - 1]]; j--) [idx[j], idx[j - 1]] = [idx[j - 1], idx[j]];
      if (idx.length === k) worst = values[idx[k - 1]];
    } else if (x > worst) {
      idx[k - 1] = i;
      for (let j = k - 1; j > 0 && values[idx[j]] > values[idx[j - 1]]; j--) [idx[j], idx[j - 1]] = [idx[j - 1], idx[j]];
      worst = values[idx[k - 1]];
    }
  }
  return idx;
}

/**
 * Beam search from one prefix `[1, P, d]` with ClipCap's `generate_beam` semantics: the first step
 * takes the top `beamSize` tokens; afterwards every beam's continuations compete by length-normalised
 * log-probability (sum / tokens so far); a beam that produced a stop token is kept as it is and
 * competes with its final score; the search ends when every beam has stopped or after
 * `maxNewTokens`. Returns all beams, best first.
 */
export function beamSearch(model: GPT2, prefix: tf.Tensor3D, opts: BeamOptions): Beam[] {
  checkPrefix(model, prefix);
  if (prefix.shape[0] !== 1) throw new Error(`beamSearch takes one prefix [1, P, d], got batch ${prefix.shape[0]}; beamSearchBatch takes several`);
  return beamSearchBatch(model, prefix, opts)[0];
}

/** One image's beams during a batched beam search. */
interface BeamState {
  tokens: number[][];
  sums: number[];
  stopped: boolean[];
  done: boolean;
}

/**
 * Beam search of several images at once, prefixes `[N, P, d]`: each image's beams are exactly those of
 * `beamSearch` on its prefix alone (the same scores and choices; only the rows of GPT-2's batch are
 * shared, which amortises its per-step cost), and an image leaves the batch when all its beams have
 * stopped. Returns, per image, all its beams, best first.
 */
export function beamSearchBatch(model: GPT2, prefix: tf.Tensor3D, opts: BeamOptions): Beam[][] {
  checkPrefix(model, prefix);
  const N = prefix.shape[0];
  const K = opts.beamSize ?? 5;
  const temperature = opts.temperature ?? 1;
  const V = model.config.vocabSize;
  if (!(K >= 1 && K <= V)) throw new Error(`beamSize must be in 1..${V}, got ${K}`);
  const stops = new Set([opts.eosId, ...(opts.stopIds ?? [])]);
  const useCache = opts.useCache ?? true;
  const ngram = opts.noRepeatNgram ?? 0;
  const alpha = opts.lengthPenalty ?? 1;
  if (!(Number.isInteger(ngram) && ngram >= 0)) throw new Error(`noRepeatNgram must be a whole number >= 0, got ${ngram}`);
  if (!(alpha >= 0 && Number.isFinite(alpha))) throw new Error(`lengthPenalty must be a finite number >= 0, got ${alpha}`);
  // average log-prob per token^alpha (alpha 1: ClipCap's sum / tokens, computed the same way)
  const norm = alpha === 1 ? (sum: number, len: number) => sum / len : (sum: number, len: number) => sum / Math.pow(len, alpha);
  const contrast = opts.contrast && opts.contrast.weight !== 0 ? opts.contrast : null;
  if (contrast) {
    if (!useCache) throw new Error('contrastive beam search needs the KV cache (useCache)');
    if (!(Number.isFinite(contrast.weight) && contrast.weight > 0 && contrast.weight < 1)) throw new Error(`contrast weight must be in [0, 1), got ${contrast.weight}`);
    checkPrefix(model, contrast.prefix);
    if (contrast.prefix.shape[0] !== 1 || contrast.prefix.shape[1] !== prefix.shape[1]) throw new Error(`the contrast prefix must be [1, ${prefix.shape[1]}, d] like the prefix, got [${contrast.prefix.shape}]`);
  }
  // Scores of row r's next tokens: log-softmax, minus the weighted log-softmax of its contrast row.
  const lpBuf = new Float64Array(V);
  const baseBuf = contrast ? new Float64Array(V) : lpBuf;
  const rowScores = (logits: Float32Array, r: number, rows: number): Float64Array => {
    const lp = logSoftmaxRow(logits, r, V, temperature, lpBuf);
    if (contrast) {
      const base = logSoftmaxRow(logits, rows + r, V, temperature, baseBuf);
      for (let v = 0; v < V; v++) lp[v] -= contrast.weight * base[v];
    }
    return lp;
  };

  const vals = new Float64Array(V); // one beam's candidate scores (reused)
  const states: BeamState[] = Array.from({ length: N }, () => ({ tokens: [], sums: [], stopped: [], done: false }));
  // The batch holds the beams of the images still searching (`active`, in image order), then, with
  // contrast, the same beams again on the contrast prefix.
  let active = states.map((_, i) => i);
  let past: KVCache | undefined;
  const first: tf.Tensor3D = contrast ? tf.tidy(() => tf.concat([prefix, tf.tile(contrast.prefix, [N, 1, 1])], 0) as tf.Tensor3D) : prefix;
  let input: tf.Tensor3D = first;
  try {
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const r = stepLogits(model, input, past, useCache, step);
      if (input !== prefix) input.dispose();
      const logits = r.logits;
      const rows = step === 0 ? active.length : active.length * K; // beam rows fed in this step
      const keep: number[] = []; // rows of this step the next one continues, in the next batch's order
      const stillActive: number[] = [];
      active.forEach((img, j) => {
        const st = states[img];
        const row0 = step === 0 ? j : j * K; // this image's first row
        let source: number[];
        if (step === 0) {
          const lp = rowScores(logits, row0, rows);
          const chosen = topK(lp, K);
          source = chosen.map(() => 0);
          st.sums = chosen.map((v) => lp[v]);
          st.tokens = chosen.map((v) => [v]);
          st.stopped = chosen.map((v) => stops.has(v));
        } else {
          // candidates: (beam, token) with average log-prob; a stopped beam has one candidate (itself).
          // The best K overall are among each beam's best K, so only those are kept: `index` b * V + v
          // orders ties as a search over all n * V candidates would (lower index first).
          const n = st.tokens.length;
          const cands: { value: number; index: number; sum: number }[] = [];
          for (let b = 0; b < n; b++) {
            if (st.stopped[b]) {
              cands.push({ value: norm(st.sums[b], st.tokens[b].length), index: b * V, sum: st.sums[b] });
              continue;
            }
            const lp = rowScores(logits, row0 + b, rows);
            const len = st.tokens[b].length + 1;
            const sb = st.sums[b];
            const den = alpha === 1 ? len : Math.pow(len, alpha); // norm(sum, len) = sum / den
            for (let v = 0; v < V; v++) vals[v] = (sb + lp[v]) / den;
            if (ngram > 0) for (const v of bannedNextTokens(st.tokens[b], ngram)) vals[v] = -Infinity;
            for (const v of topK(vals, K)) cands.push({ value: vals[v], index: b * V + v, sum: st.sums[b] + lp[v] });
          }
          const top = cands.filter((c) => c.value !== -Infinity).sort((x, y) => y.value - x.value || x.index - y.index).slice(0, K);
          const best = top.map((c) => c.index);
          source = best.map((i) => Math.floor(i / V));
          const chosen = best.map((i) => i % V);
          const nextTokens: number[][] = [];
          const nextStopped: boolean[] = [];
          st.sums = top.map((c) => c.sum);
          best.forEach((_, q) => {
            const b = source[q];
            if (st.stopped[b]) {
              nextTokens.push(st.tokens[b]);
              nextStopped.push(true);
            } else {
              nextTokens.push([...st.tokens[b], chosen[q]]);
              nextStopped.push(stops.has(chosen[q]));
            }
          });
          st.tokens = nextTokens;
          st.stopped = nextStopped;
        }
        if (st.stopped.every(Boolean) || step === opts.maxNewTokens - 1) st.done = true;
        else {
          stillActive.push(img);
          for (const b of source) keep.push(row0 + b);
        }
      });
      const present = r.present;
      if (useCache) {
        const reordered = stillActive.length ? present!.select(contrast ? [...keep, ...keep.map((k) => rows + k)] : keep) : undefined;
        present!.dispose();
        past?.dispose();
        past = reordered;
      }
      active = stillActive;
      if (active.length === 0) break;
      input = tf.tidy(() => {
        // stopped beams feed a dummy token (their continuation is ignored)
        const last = active.flatMap((img) => states[img].tokens.map((t, b) => (states[img].stopped[b] ? 0 : t[t.length - 1])));
        const n = last.length;
        if (useCache) return model.embedTokens(contrast ? tf.tensor2d([...last, ...last], [2 * n, 1], 'int32') : tf.tensor2d(last, [n, 1], 'int32'));
        const L = step + 1;
        const hist = active.flatMap((img) => states[img].tokens.map((t) => t.concat(new Array(L - t.length).fill(0))));
        const pre = tf.gather(prefix, tf.tensor1d(active.flatMap((img) => new Array<number>(K).fill(img)), 'int32'));
        return tf.concat([pre, model.embedTokens(tf.tensor2d(hist, [n, L], 'int32'))], 1) as tf.Tensor3D;
      });
    }
  } finally {
    if (input !== prefix) input.dispose();
    past?.dispose();
  }
  return states.map((st) => {
    const beams = st.tokens.map((t, b) => ({ ids: t[t.length - 1] === opts.eosId ? t.slice(0, -1) : t, score: norm(st.sums[b], t.length) }));
    return beams
      .map((beam, i) => ({ beam, i }))
      .sort((a, b) => b.beam.score - a.beam.score || a.i - b.i)
      .map((x) => x.beam);
  });
}

export interface SampleOptions extends GenerateOptions {
  /** Sequences drawn per prefix. */
  samples: number;
  /** Logits are divided by this (default 1: the model's own distribution). */
  temperature?: number;
  /**
   * One seed per prefix: prefix n's samples depend only on it, its prefix and the model, not on the
   * other prefixes of the batch or their order (sample s of prefix n draws from its own stream).
   */
  seeds: readonly number[];
  /**
   * Contrastive sampling: draw from softmax((log p(token | prefix) - weight * log p(token | contrast
   * prefix)) / temperature), the beam search's contrastive score as a distribution, so that samples
   * favour what this photo makes likelier than the image-free prefix does. Each sample gets a
   * contrast row: the contrast `prefix` [1, P, d] followed by the sample's own tokens. Weight in
   * [0, 1); 0 is plain sampling.
   */
  contrast?: { prefix: tf.Tensor3D; weight: number };
}

/** Draw a token from row `off..off+V` of `probs` (unnormalised: the row is summed first) with the uniform `u` in [0, 1). */
function drawRow(probs: Float32Array, off: number, V: number, u: number): number {
  let z = 0;
  for (let v = 0; v < V; v++) z += probs[off + v];
  let target = u * z;
  for (let v = 0; v < V; v++) {
    target -= probs[off + v];
    if (target < 0) return v;
  }
  // rounding left a sliver: the last token with any probability
  for (let v = V - 1; v > 0; v--) if (probs[off + v] > 0) return v;
  return 0;
}

/**
 * Ancestral sampling at a temperature: `samples` sequences for each prefix of `[N, P, d]`, drawn
 * together in one batch of N x samples rows (KV cache; a row leaves the batch when it stops, so the
 * long tail of one caption does not carry the finished ones). The probabilities are the backend's
 * softmax of logits / temperature (float32); each row draws with its own uniform stream. Returns, per
 * prefix, its samples' ids (a stop token from `stopIds` kept, EOS dropped, as greedy).
 */
export function sampleBatch(model: GPT2, prefix: tf.Tensor3D, opts: SampleOptions): number[][][] {
  checkPrefix(model, prefix);
  const N = prefix.shape[0];
  const S = opts.samples;
  const temperature = opts.temperature ?? 1;
  if (!(Number.isInteger(S) && S >= 1)) throw new Error(`samples must be a whole number >= 1, got ${S}`);
  if (!(temperature > 0 && Number.isFinite(temperature))) throw new Error(`temperature must be a finite number > 0, got ${temperature}`);
  if (opts.seeds.length !== N) throw new Error(`sampleBatch: ${opts.seeds.length} seeds for ${N} prefixes`);
  const contrast = opts.contrast && opts.contrast.weight !== 0 ? opts.contrast : null;
  if (contrast) {
    if (!(Number.isFinite(contrast.weight) && contrast.weight > 0 && contrast.weight < 1)) throw new Error(`contrast weight must be in [0, 1), got ${contrast.weight}`);
    checkPrefix(model, contrast.prefix);
    if (contrast.prefix.shape[0] !== 1 || contrast.prefix.shape[1] !== prefix.shape[1]) throw new Error(`the contrast prefix must be [1, ${prefix.shape[1]}, d] like the prefix, got [${contrast.prefix.shape}]`);
  }
  const V = model.config.vocabSize;
  const stops = new Set(opts.stopIds ?? []);
  const streams = opts.seeds.flatMap((seed) => Array.from({ length: S }, (_, s) => mulberry32((seed ^ Math.imul(s + 1, 0x9e3779b1)) >>> 0)));
  const out: number[][] = Array.from({ length: N * S }, () => []);
  let active = out.map((_, r) => r); // rows still drawing, in batch order
  let past: KVCache | undefined;
  // the batch: the N x S sample rows, then (contrast) as many contrast rows in the same order
  let input: tf.Tensor3D = tf.tidy(() => {
    const rows = S === 1 ? prefix : (tf.reshape(tf.tile(tf.expandDims(prefix, 1), [1, S, 1, 1]), [N * S, prefix.shape[1], prefix.shape[2]]) as tf.Tensor3D);
    return contrast ? (tf.concat([rows, tf.tile(contrast.prefix, [N * S, 1, 1])], 0) as tf.Tensor3D) : tf.clone(rows);
  });
  try {
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const r = model.forward({ inputsEmbeds: input, past, useCache: true, lastOnly: true });
      input.dispose();
      past?.dispose();
      past = undefined;
      const n = active.length;
      const pt = tf.tidy(() => {
        let scores: tf.Tensor = r.logits;
        if (contrast) {
          const lp = tf.logSoftmax(tf.reshape(r.logits, [2 * n, V]));
          const [own, base] = tf.split(lp, [n, n], 0);
          scores = tf.sub(own, tf.mul(base, contrast.weight));
        }
        return tf.softmax(temperature === 1 ? scores : tf.div(scores, temperature));
      });
      r.logits.dispose();
      const probs = pt.dataSync() as Float32Array;
      pt.dispose();
      try {
        assertFiniteLogits(probs, step);
      } catch (e) {
        r.present?.dispose();
        throw e;
      }
      const keep: number[] = []; // positions in this step's batch of the rows that go on
      const next: number[] = [];
      active.forEach((row, j) => {
        const id = drawRow(probs, j * V, V, streams[row]());
        if (id === opts.eosId) return;
        out[row].push(id);
        if (stops.has(id)) return;
        keep.push(j);
        next.push(id);
      });
      active = keep.map((j) => active[j]);
      if (active.length === 0 || step === opts.maxNewTokens - 1) {
        r.present!.dispose();
        break;
      }
      if (keep.length === n) past = r.present;
      else {
        past = r.present!.select(contrast ? [...keep, ...keep.map((j) => n + j)] : keep);
        r.present!.dispose();
      }
      const tokens = contrast ? [...next, ...next] : next;
      input = tf.tidy(() => model.embedTokens(tf.tensor2d(tokens, [tokens.length, 1], 'int32')));
    }
  } finally {
    if (!input.isDisposed) input.dispose();
    past?.dispose();
  }
  return Array.from({ length: N }, (_, n) => out.slice(n * S, (n + 1) * S));
}

export interface TopPOptions extends GenerateOptions {
  topP: number;
  temperature?: number;
  seed: number;
}


/**
 * Sample one token from the smallest set of most probable tokens whose probability reaches `topP`
 * (the first token is always kept), renormalised. `u` is a uniform number in [0, 1).
 */
export function sampleTopP(logits: ArrayLike<number>, off: number, V: number, topP: number, temperature: number, u: number): number {
  const p = new Float64Array(V);
  let mx = -Infinity;
  for (let v = 0; v < V; v++) mx = Math.max(mx, logits[off + v] / temperature);
  let z = 0;
  for (let v = 0; v < V; v++) {
    p[v] = Math.exp(logits[off + v] / temperature - mx);
    z += p[v];
  }
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  let cum = 0;
  let n = 0;
  while (n < V) {
    cum += p[order[n]] / z;
    n++;
    if (cum >= topP) break;
  }
  let target = u * cum;
  for (let i = 0; i < n; i++) {
    target -= p[order[i]] / z;
    if (target < 0) return order[i];
  }
  return order[n - 1];
}

/** Top-p (nucleus) sampling for a batch of prefixes, reproducible with `seed`. */
export function topP(model: GPT2, prefix: tf.Tensor3D, opts: TopPOptions): number[][] {
  if (!(opts.topP > 0 && opts.topP <= 1)) throw new Error(`topP must be in (0, 1], got ${opts.topP}`);
  const temperature = opts.temperature ?? 1;
  if (!(temperature > 0)) throw new Error(`temperature must be > 0, got ${temperature}`);
  const rand = mulberry32(opts.seed);
  return decodeLoop(model, prefix, opts, (logits, B, V) => Array.from({ length: B }, (_, b) => sampleTopP(logits, b * V, V, opts.topP, temperature, rand())));
}
