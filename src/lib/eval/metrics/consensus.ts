// The consensus caption of a pool by CIDEr-D (for the retrieval baseline, eval/baselines.ts): each
// caption's CIDEr-D against the rest of its pool, exactly as the COCO toolkit computes CIDEr-D
// (metrics/cider.ts; the tests compare the two), with n-grams interned in a hash table so that
// thousands of pools score fast.
import { CIDER_N, CIDER_SIGMA } from './cider';
import { pySplit } from './pysplit';

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
