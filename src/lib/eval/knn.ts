// Nearest neighbours by cosine similarity: exhaustive search over a normalised training matrix, with
// a pluggable similarity engine (plain JavaScript, or TensorFlow.js matMuls) and top-k per query.
// Used by the retrieval baseline (baselines.ts) and the embedding sanity view of notebook 02.
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
