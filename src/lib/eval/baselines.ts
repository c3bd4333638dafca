// Reference rows for the evaluation table, as pure functions:
//
// 1. Nearest-neighbour caption retrieval (Devlin et al. 2015, "Exploring nearest neighbor approaches for
//    image captioning"): for a query photo, the k training photos whose embeddings (from the same image
//    encoder) are most cosine-similar; their captions form a candidate pool, and the answer is the pool's
//    *consensus caption*: the caption with the highest mean similarity to the other captions of the pool.
//    Similarity is CIDEr-D exactly as the COCO toolkit computes it (src/lib/eval/metrics/cider.ts): a caption's
//    consensus score is its CIDEr-D with the rest of the pool as its references, with document frequencies
//    over the whole training caption set (one document per training photo, like the toolkit's per-image
//    reference sets). Devlin et al. tried BLEU and CIDEr for this step; CIDEr-D is chosen here because its
//    TF-IDF weighting favours the informative words the neighbours agree on rather than "a", "of", "the".
//    Ties go to the caption that comes first in the pool (nearest photo first, its captions in order).
//
// 2. Human leave-one-out: how well one person's caption scores against the other four references.
import { CIDER_N, CIDER_SIGMA } from './metrics/cider';
import { pySplit } from './metrics/pysplit';
import { tokenizeCaptions } from './metrics/tokenize';
import { scoreCaptions, METRIC_NAMES, MetricScores } from './metrics/index';

// ---------------------------------------------------------------------------------------------------
// Nearest neighbours by cosine similarity.

export interface Neighbour<K> {
  id: K;
  /** Cosine similarity to the query. */
  similarity: number;
}

/**
 * Similarity engine: given the L2-normalised training matrix (nt x dim, row-major), returns a function that
 * scores a block of normalised queries (nq x dim) against every training row: an nq x nt row-major matrix
 * of dot products (= cosine similarities). `dispose` frees what it holds.
 */
export type SimilarityEngine = (train: Float32Array, nt: number, dim: number) => { scores(queries: Float32Array, nq: number): Float32Array; dispose(): void };

/** Pure JavaScript engine (default): 4-accumulator dot products, 8 queries per pass over the training rows. */
export const jsSimilarity: SimilarityEngine = (train, nt, dim) => ({
  scores(queries, nq) {
    const out = new Float32Array(nq * nt);
    for (let b0 = 0; b0 < nq; b0 += 8) {
      const b1 = Math.min(nq, b0 + 8);
      for (let t = 0; t < nt; t++) {
        const to = t * dim;
        for (let b = b0; b < b1; b++) out[b * nt + t] = dot(queries, b * dim, train, to, dim);
      }
    }
    return out;
  },
  dispose() {},
});

/** The TensorFlow.js namespace (a type only: this module does not load TensorFlow.js itself). */
export type TfLike = typeof import('@tensorflow/tfjs');

/**
 * TensorFlow.js engine: one plain (untransposed) matMul per block of queries against the training matrix
 * uploaded once, transposed to dim x nt (the wasm backend runs only untransposed, unbatched matMul fast).
 * Pass the `tf` namespace after its backend is ready (see ensureBackend()). Similarities are float32
 * sums, so near-ties may rank differently from the JavaScript engine.
 */
export function tfjsSimilarity(tf: TfLike): SimilarityEngine {
  return (train, nt, dim) => {
    const tr = new Float32Array(nt * dim);
    for (let t = 0; t < nt; t++) for (let j = 0; j < dim; j++) tr[j * nt + t] = train[t * dim + j];
    const tT = tf.tensor2d(tr, [dim, nt]);
    return {
      scores(queries, nq) {
        const out = tf.tidy(() => tf.matMul(tf.tensor2d(queries, [nq, dim]), tT));
        const data = Float32Array.from(out.dataSync());
        out.dispose();
        return data;
      },
      dispose() {
        tT.dispose();
      },
    };
  };
}

export interface KnnOptions<K, Q> {
  k: number;
  /** Leave out a training item for a query, e.g. the query photo itself. Default: equal ids are left out. */
  exclude?: (query: Q, train: K) => boolean;
  /** How similarities are computed (default jsSimilarity). */
  engine?: SimilarityEngine;
  /** Queries per engine call (default 256). */
  blockSize?: number;
}

/** Row-major matrix of L2-normalised rows (zero rows stay zero). */
function normalisedMatrix(vectors: Float32Array[], what: string): { data: Float32Array; dim: number } {
  if (vectors.length === 0) return { data: new Float32Array(0), dim: 0 };
  const dim = vectors[0].length;
  const data = new Float32Array(vectors.length * dim);
  vectors.forEach((v, i) => {
    if (v.length !== dim) throw new Error(`${what} ${i} has ${v.length} dimensions, expected ${dim}`);
    let s = 0;
    for (let j = 0; j < dim; j++) s += v[j] * v[j];
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) data[i * dim + j] = v[j] * inv;
  });
  return { data, dim };
}

/** Dot product of a[ao..ao+n) and b[bo..bo+n), 4 accumulators. */
function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let j = 0;
  for (; j + 3 < n; j += 4) {
    s0 += a[ao + j] * b[bo + j];
    s1 += a[ao + j + 1] * b[bo + j + 1];
    s2 += a[ao + j + 2] * b[bo + j + 2];
    s3 += a[ao + j + 3] * b[bo + j + 3];
  }
  for (; j < n; j++) s0 += a[ao + j] * b[bo + j];
  return s0 + s1 + (s2 + s3);
}

/**
 * The k nearest training items of every query by cosine similarity, most similar first (ties: earlier
 * training item first). Exhaustive search: blocks of queries scored against the whole normalised training
 * matrix by the similarity engine, then a top-k selection per query.
 */
export function nearestNeighbours<K, Q>(train: Map<K, Float32Array>, queries: Map<Q, Float32Array>, opts: KnnOptions<K, Q>): Map<Q, Neighbour<K>[]> {
  const k = Math.floor(opts.k);
  if (!(k >= 1)) throw new Error(`nearestNeighbours: k must be at least 1, got ${opts.k}`);
  const exclude = opts.exclude ?? ((q: Q, t: K) => (q as unknown) === (t as unknown));
  const trainIds = [...train.keys()];
  const T = normalisedMatrix([...train.values()], 'training embedding');
  const queryIds = [...queries.keys()];
  const Qm = normalisedMatrix([...queries.values()], 'query embedding');
  if (trainIds.length && queryIds.length && T.dim !== Qm.dim) throw new Error(`nearestNeighbours: training embeddings have ${T.dim} dimensions, queries ${Qm.dim}`);
  const out = new Map<Q, Neighbour<K>[]>();
  if (queryIds.length === 0) return out;
  const nt = trainIds.length;
  const dim = Qm.dim;
  const engine = (opts.engine ?? jsSimilarity)(T.data, nt, dim);
  const B = Math.max(1, Math.floor(opts.blockSize ?? 256));
  try {
    const topSim = new Float64Array(k);
    const topIdx = new Int32Array(k);
    for (let q0 = 0; q0 < queryIds.length; q0 += B) {
      const nq = Math.min(B, queryIds.length - q0);
      const sims = nt ? engine.scores(Qm.data.subarray(q0 * dim, (q0 + nq) * dim), nq) : new Float32Array(0);
      for (let b = 0; b < nq; b++) {
        const qid = queryIds[q0 + b];
        topSim.fill(-Infinity);
        topIdx.fill(-1);
        const row = b * nt;
        for (let t = 0; t < nt; t++) {
          const s = sims[row + t];
          if (!(s > topSim[k - 1])) continue;
          if (exclude(qid, trainIds[t])) continue;
          let p = k - 1;
          while (p > 0 && topSim[p - 1] < s) {
            topSim[p] = topSim[p - 1];
            topIdx[p] = topIdx[p - 1];
            p--;
          }
          topSim[p] = s;
          topIdx[p] = t;
        }
        const list: Neighbour<K>[] = [];
        for (let p = 0; p < k; p++) if (topIdx[p] >= 0) list.push({ id: trainIds[topIdx[p]], similarity: topSim[p] });
        out.set(qid, list);
      }
    }
  } finally {
    engine.dispose();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Consensus caption by CIDEr-D.

/** Open-addressing hash table from pairs of non-negative int32 (n-gram prefix id, word id) to dense ids. */
class PairTable {
  private a: Int32Array;
  private b: Int32Array;
  private v: Int32Array;
  private mask: number;
  size = 0;
  constructor(capacity = 1 << 12) {
    this.a = new Int32Array(capacity);
    this.b = new Int32Array(capacity);
    this.v = new Int32Array(capacity).fill(-1);
    this.mask = capacity - 1;
  }
  private slot(x: number, y: number): number {
    let h = (Math.imul(x, 0x9e3779b1) ^ Math.imul(y + 0x7f4a7c15, 0x85ebca77)) >>> 0;
    h ^= h >>> 15;
    let i = h & this.mask;
    while (this.v[i] >= 0 && (this.a[i] !== x || this.b[i] !== y)) i = (i + 1) & this.mask;
    return i;
  }
  /** The pair's id, or -1. */
  get(x: number, y: number): number {
    return this.v[this.slot(x, y)];
  }
  /** The pair's id, a new one if absent. */
  add(x: number, y: number): number {
    let i = this.slot(x, y);
    if (this.v[i] >= 0) return this.v[i];
    if ((this.size + 1) * 2 > this.v.length) {
      this.grow();
      i = this.slot(x, y);
    }
    this.a[i] = x;
    this.b[i] = y;
    this.v[i] = this.size;
    return this.size++;
  }
  private grow(): void {
    const { a, b, v } = this;
    const cap = v.length * 2;
    this.a = new Int32Array(cap);
    this.b = new Int32Array(cap);
    this.v = new Int32Array(cap).fill(-1);
    this.mask = cap - 1;
    for (let i = 0; i < v.length; i++) {
      if (v[i] < 0) continue;
      const j = this.slot(a[i], b[i]);
      this.a[j] = a[i];
      this.b[j] = b[i];
      this.v[j] = v[i];
    }
  }
}

/**
 * CIDEr-D statistics of a training caption corpus (document frequencies, one document per photo) and the
 * consensus choice among its captions. Every caption's TF-IDF vector is computed once, in flat arrays:
 * n-grams are numbered per order (a k-gram is the pair (id of its (k-1)-gram prefix, id of its last
 * word)), so comparing two captions is a merge of sorted integer lists. Numerically it is the toolkit's
 * CIDEr-D (see ciderVector / ciderSim in metrics/cider.ts; the tests compare the two).
 */
export class ConsensusScorer {
  private readonly n: number;
  private readonly sigma: number;
  private readonly wordId = new Map<string, number>();
  private readonly gramId: PairTable[] = []; // per order (index 0 unused): (prefix id, word id) -> id
  private readonly df: number[][] = []; // per order: id -> document frequency
  private readonly lastDoc: number[][] = []; // per order: id -> last document that counted it
  private readonly logDocs: number;
  private readonly captionIndex = new Map<string, number>();
  // Flat per-caption vectors: caption c, order k occupies [offsets[c*n+k], offsets[c*n+k+1]) of ids/weights.
  private ids: Int32Array = new Int32Array(0);
  private weights: Float64Array = new Float64Array(0);
  private offsets: Int32Array = new Int32Array(1);
  private norms: Float64Array = new Float64Array(0);
  private lengths: Int32Array = new Int32Array(0);

  /** @param captionSets tokenized captions (toolkit form) of each training photo. */
  constructor(captionSets: Iterable<string[]>, opts: { n?: number; sigma?: number } = {}) {
    this.n = opts.n ?? CIDER_N;
    this.sigma = opts.sigma ?? CIDER_SIGMA;
    for (let k = 0; k < this.n; k++) {
      this.gramId.push(new PairTable());
      this.df.push([]);
      this.lastDoc.push([]);
    }
    // Pass 1: n-gram ids, term frequencies of each distinct caption, document frequencies.
    const capGrams: Int32Array[][] = []; // caption -> per order: interleaved (id, tf) pairs sorted by id
    let docs = 0;
    for (const set of captionSets) {
      docs++;
      for (const c of set) {
        let ci = this.captionIndex.get(c);
        if (ci === undefined) {
          ci = capGrams.length;
          this.captionIndex.set(c, ci);
          capGrams.push(this.countGrams(c, true));
        }
        const g = capGrams[ci];
        for (let k = 0; k < this.n; k++) {
          const df = this.df[k];
          const last = this.lastDoc[k];
          for (let p = 0; p < g[k].length; p += 2) {
            const id = g[k][p];
            if (last[id] !== docs) {
              last[id] = docs;
              df[id] = (df[id] ?? 0) + 1;
            }
          }
        }
      }
    }
    this.lastDoc.length = 0;
    this.logDocs = Math.log(Math.max(1, docs));
    // Pass 2: weights, norms and lengths of every distinct caption.
    this.build(capGrams);
  }

  /**
   * Per order, the caption's (n-gram id, count) pairs sorted by id. New n-grams get ids when `intern`;
   * otherwise n-grams unseen in the corpus get negative ids from `unseen` (shared by the captions scored
   * together, so that equal unseen n-grams still match).
   */
  private countGrams(caption: string, intern: boolean, unseen: Map<string, number> = new Map()): Int32Array[] {
    const words = pySplit(caption);
    const L = words.length;
    const out: Int32Array[] = [];
    let prev = new Int32Array(L); // ids of the (k-1)-grams starting at each position (-1: unseen)
    for (let k = 1; k <= this.n; k++) {
      const cnt = Math.max(0, L - k + 1);
      const cur = new Int32Array(cnt);
      for (let i = 0; i < cnt; i++) {
        let id = -1;
        if (k === 1) {
          const w = this.wordId.get(words[i]);
          if (w !== undefined) id = w;
          else if (intern) {
            id = this.wordId.size;
            this.wordId.set(words[i], id);
          }
        } else if (prev[i] >= 0) {
          const w = this.wordId.get(words[i + k - 1]);
          if (w !== undefined) id = intern ? this.gramId[k - 1].add(prev[i], w) : this.gramId[k - 1].get(prev[i], w);
        }
        cur[i] = id;
      }
      // (id, count) pairs sorted by id; unseen n-grams get negative ids from `unseen`.
      const keys = new Int32Array(cnt);
      for (let i = 0; i < cnt; i++) {
        let id = cur[i];
        if (id < 0) {
          const g = words.slice(i, i + k).join(' ');
          const u = unseen.get(g);
          if (u === undefined) {
            id = -1 - unseen.size;
            unseen.set(g, id);
          } else id = u;
        }
        keys[i] = id;
      }
      keys.sort();
      let distinct = 0;
      for (let i = 0; i < cnt; i++) if (i === 0 || keys[i] !== keys[i - 1]) distinct++;
      const pairs = new Int32Array(distinct * 2);
      let j = -1;
      for (let i = 0; i < cnt; i++) {
        if (i === 0 || keys[i] !== keys[i - 1]) {
          j++;
          pairs[2 * j] = keys[i];
        }
        pairs[2 * j + 1]++;
      }
      out.push(pairs);
      prev = cur;
    }
    return out;
  }

  private build(capGrams: Int32Array[][]): void {
    const n = this.n;
    let total = 0;
    for (const g of capGrams) for (const p of g) total += p.length / 2;
    this.ids = new Int32Array(total);
    this.weights = new Float64Array(total);
    this.offsets = new Int32Array(capGrams.length * n + 1);
    this.norms = new Float64Array(capGrams.length * n);
    this.lengths = new Int32Array(capGrams.length);
    let o = 0;
    capGrams.forEach((g, c) => {
      for (let k = 0; k < n; k++) {
        this.offsets[c * n + k] = o;
        let sq = 0;
        for (let p = 0; p < g[k].length; p += 2) {
          const id = g[k][p];
          const tf = g[k][p + 1];
          // As ciderVector: tf x (log(#docs) - log(max(1, df))); n-grams unseen in the corpus have df 0.
          const w = tf * (this.logDocs - Math.log(Math.max(1, id >= 0 ? (this.df[k][id] ?? 0) : 0)));
          this.ids[o] = id;
          this.weights[o] = w;
          sq += w * w;
          if (k === 1) this.lengths[c] += tf; // the toolkit's length: number of bigrams
          o++;
        }
        this.norms[c * n + k] = Math.sqrt(sq);
      }
    });
    this.offsets[capGrams.length * n] = o;
  }

  /** Document frequency of a space-separated n-gram (0 when unseen). */
  documentFrequency(gram: string): number {
    const words = gram.split(' ');
    let id = this.wordId.get(words[0]) ?? -1;
    for (let k = 1; k < words.length && id >= 0; k++) {
      const w = this.wordId.get(words[k]);
      id = w === undefined ? -1 : this.gramId[k].get(id, w);
    }
    return id < 0 ? 0 : (this.df[words.length - 1][id] ?? 0);
  }

  get logDocumentCount(): number {
    return this.logDocs;
  }

  /** Index of a corpus caption, or -1. */
  indexOf(caption: string): number {
    return this.captionIndex.get(caption) ?? -1;
  }

  /**
   * Consensus scores of a pool of tokenized captions: for each caption, its CIDEr-D (toolkit formula, x10)
   * with all the other captions of the pool as references. A pool of one caption scores 0. Captions that
   * are not in the corpus are allowed (their n-grams unseen in the corpus get document frequency 0).
   */
  poolScores(pool: string[]): Float64Array {
    const extra: string[] = [];
    const idx = pool.map((c) => {
      const i = this.indexOf(c);
      if (i >= 0) return i;
      extra.push(c);
      return -extra.length;
    });
    if (extra.length === 0) return this.poolScoresByIndex(idx);
    // Captions outside the corpus: score on a copy that holds them too (rare; tests and odd callers).
    const copy = Object.create(ConsensusScorer.prototype) as ConsensusScorer;
    Object.assign(copy, this);
    const unseen = new Map<string, number>();
    const grams = extra.map((c) => this.countGrams(c, false, unseen));
    const base = this.lengths.length;
    copy.appendVectors(grams);
    return copy.poolScoresByIndex(idx.map((i) => (i >= 0 ? i : base - 1 - i)));
  }

  private appendVectors(grams: Int32Array[][]): void {
    const n = this.n;
    const old = { ids: this.ids, weights: this.weights, offsets: this.offsets, norms: this.norms, lengths: this.lengths };
    const tmp = Object.create(ConsensusScorer.prototype) as ConsensusScorer;
    Object.assign(tmp, this);
    tmp.build(grams);
    const base = old.lengths.length;
    const shift = old.ids.length;
    this.ids = concatI32(old.ids, tmp.ids);
    this.weights = concatF64(old.weights, tmp.weights);
    this.norms = concatF64(old.norms, tmp.norms);
    this.lengths = concatI32(old.lengths, tmp.lengths);
    const offs = new Int32Array((base + grams.length) * n + 1);
    offs.set(old.offsets.subarray(0, base * n));
    for (let j = 0; j <= grams.length * n; j++) offs[base * n + j] = tmp.offsets[j] + shift;
    this.offsets = offs;
  }

  /** poolScores for corpus captions given by index (see indexOf). */
  poolScoresByIndex(pool: ArrayLike<number>): Float64Array {
    const m = pool.length;
    const total = new Float64Array(m);
    if (m < 2) return total;
    const n = this.n;
    const { ids, weights: w, offsets, norms, lengths } = this;
    const twoSigma2 = 2 * this.sigma * this.sigma;
    for (let i = 0; i < m; i++) {
      const a = pool[i];
      for (let j = i + 1; j < m; j++) {
        const b = pool[j];
        const delta = lengths[a] - lengths[b];
        const pen = Math.exp(-(delta * delta) / twoSigma2);
        let sumAB = 0; // sim(a as candidate, b as reference), summed over n
        let sumBA = 0;
        for (let k = 0; k < n; k++) {
          let p = offsets[a * n + k];
          const pe = offsets[a * n + k + 1];
          let q = offsets[b * n + k];
          const qe = offsets[b * n + k + 1];
          let ab = 0;
          let ba = 0;
          while (p < pe && q < qe) {
            const x = ids[p];
            const y = ids[q];
            if (x === y) {
              const mn = Math.min(w[p], w[q]);
              ab += mn * w[q];
              ba += mn * w[p];
              p++;
              q++;
            } else if (x < y) p++;
            else q++;
          }
          const na = norms[a * n + k];
          const nb = norms[b * n + k];
          if (na !== 0 && nb !== 0) {
            ab /= na * nb;
            ba /= na * nb;
          }
          sumAB += ab * pen;
          sumBA += ba * pen;
        }
        total[i] += sumAB / n;
        total[j] += sumBA / n;
      }
    }
    for (let i = 0; i < m; i++) total[i] = (total[i] / (m - 1)) * 10;
    return total;
  }

  /** Index (into `pool`) of the consensus caption (highest poolScores; ties: first). -1 for an empty pool. */
  consensusIndex(pool: string[]): number {
    const s = this.poolScores(pool);
    let best = -1;
    for (let i = 0; i < s.length; i++) if (best < 0 || s[i] > s[best]) best = i;
    return best;
  }
}

function concatI32(a: Int32Array, b: Int32Array): Int32Array {
  const o = new Int32Array(a.length + b.length);
  o.set(a);
  o.set(b, a.length);
  return o;
}
function concatF64(a: Float64Array, b: Float64Array): Float64Array {
  const o = new Float64Array(a.length + b.length);
  o.set(a);
  o.set(b, a.length);
  return o;
}

export interface NearestNeighbourCaptionOptions<K, Q> {
  /** Number of nearest training photos whose captions form the pool (default 25). */
  k?: number;
  /** Leave out a training photo for a query (default: equal ids). */
  exclude?: (query: Q, train: K) => boolean;
  /** Similarity engine for the neighbour search (default jsSimilarity; tfjsSimilarity(tf) is much faster). */
  engine?: SimilarityEngine;
  /**
   * How captions become toolkit tokens for the CIDEr-D consensus (default: the toolkit tokenization,
   * tokenizeCaptions). Pass `(cs) => cs` when the captions are already tokenized.
   */
  tokenize?: (captions: string[]) => string[];
}

export interface RetrievedCaption<K> {
  /** The consensus caption, as written in the training set (not tokenized). */
  caption: string;
  /** The training photo it came from. */
  from: K;
  /** Its consensus score (CIDEr-D against the rest of the pool). */
  score: number;
  /** The k nearest training photos, most similar first. */
  neighbours: Neighbour<K>[];
}

/**
 * Nearest-neighbour caption retrieval (see the header): for every query embedding, the consensus caption
 * of the captions of its k nearest training photos. `trainEmbeddings` and `trainCaptions` must have the
 * same ids; a training photo without captions contributes nothing to the pool.
 */
export function nearestNeighbourCaptions<K, Q>(
  trainEmbeddings: Map<K, Float32Array>,
  trainCaptions: Map<K, string[]>,
  queries: Map<Q, Float32Array>,
  opts: NearestNeighbourCaptionOptions<K, Q> = {},
): Map<Q, RetrievedCaption<K>> {
  const k = opts.k ?? 25;
  for (const id of trainEmbeddings.keys()) {
    if (!trainCaptions.has(id)) throw new Error(`nearestNeighbourCaptions: training photo ${String(id)} has an embedding but no captions`);
  }
  const tokenize = opts.tokenize ?? tokenizeCaptions;
  // Tokenize the training captions once (one batch), keeping each photo's slice.
  const ids = [...trainEmbeddings.keys()];
  const flat: string[] = [];
  for (const id of ids) flat.push(...trainCaptions.get(id)!);
  const tok = tokenize(flat);
  if (tok.length !== flat.length) throw new Error(`nearestNeighbourCaptions: tokenize returned ${tok.length} captions for ${flat.length}`);
  const tokenized = new Map<K, string[]>();
  let o = 0;
  for (const id of ids) {
    const n = trainCaptions.get(id)!.length;
    tokenized.set(id, tok.slice(o, o + n));
    o += n;
  }
  const scorer = new ConsensusScorer(tokenized.values());
  const tokIndex = new Map<K, number[]>();
  for (const [id, t] of tokenized) tokIndex.set(id, t.map((c) => scorer.indexOf(c)));
  const knn = nearestNeighbours(trainEmbeddings, queries, { k, exclude: opts.exclude, engine: opts.engine });
  const out = new Map<Q, RetrievedCaption<K>>();
  for (const [q, neighbours] of knn) {
    const pool: number[] = [];
    const origin: { id: K; raw: string }[] = [];
    for (const nb of neighbours) {
      const raw = trainCaptions.get(nb.id)!;
      const t = tokIndex.get(nb.id)!;
      raw.forEach((c, i) => {
        pool.push(t[i]);
        origin.push({ id: nb.id, raw: c });
      });
    }
    if (pool.length === 0) throw new Error(`nearestNeighbourCaptions: no training captions near query ${String(q)}`);
    const scores = scorer.poolScoresByIndex(pool);
    let best = 0;
    for (let i = 1; i < scores.length; i++) if (scores[i] > scores[best]) best = i;
    out.set(q, { caption: origin[best].raw, from: origin[best].id, score: scores[best], neighbours });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Human leave-one-out.

export interface HumanScore {
  /** Mean over the 5 rotations of each corpus metric. */
  scores: MetricScores;
  /** The corpus metrics of each rotation r = 0..4 (reference r of every image as its candidate). */
  rotations: MetricScores[];
  /** Photos used (those with at least 5 references). */
  count: number;
  /** Photos left out for having fewer than 5 references. */
  skipped: number;
}

/**
 * The human row of the table: how one person's caption scores against the other people's.
 *
 * Exactly: take the photos with at least 5 reference captions and use their first 5 (a photo with fewer
 * is skipped; with more, the extras are ignored, so every rotation has 4 references). For rotation
 * r = 0..4, reference r of every photo is its candidate and the other 4 its references; the corpus metrics
 * of that rotation are computed exactly like a model's (scoreCaptions: BLEU pooled over photos, ROUGE-L
 * and CIDEr-D averaged over photos, CIDEr-D document frequencies from that rotation's reference sets). The
 * reported score of each metric is the plain mean of its 5 rotation values.
 *
 * All captions are tokenized once, as one batch in photo order (not per rotation as the toolkit would;
 * this can only matter for the rare cross-caption lookahead described in metrics/tokenize.ts).
 */
export function humanLeaveOneOut<K>(gts: Map<K, string[]>, opts: { tokenized?: boolean } = {}): HumanScore {
  const R = 5;
  const used = new Map<K, string[]>();
  let skipped = 0;
  for (const [k, refs] of gts) {
    if (refs.length >= R) used.set(k, refs.slice(0, R));
    else skipped++;
  }
  if (used.size === 0) throw new Error(`humanLeaveOneOut: no photo has ${R} reference captions (${skipped} photos have fewer)`);
  const ids = [...used.keys()];
  let sets = ids.map((k) => used.get(k)!);
  if (!opts.tokenized) {
    const flat = tokenizeCaptions(sets.flat());
    sets = sets.map((_, i) => flat.slice(i * R, (i + 1) * R));
  }
  const rotations: MetricScores[] = [];
  for (let r = 0; r < R; r++) {
    const g = new Map<K, string[]>();
    const c = new Map<K, string>();
    ids.forEach((k, i) => {
      c.set(k, sets[i][r]);
      g.set(k, sets[i].filter((_, j) => j !== r));
    });
    rotations.push(scoreCaptions(g, c, { tokenized: true }).scores);
  }
  const scores = Object.fromEntries(METRIC_NAMES.map((m) => [m, rotations.reduce((s, x) => s + x[m], 0) / R])) as MetricScores;
  return { scores, rotations, count: ids.length, skipped };
}
