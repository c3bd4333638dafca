// Several datasets of one encoder read as one set of embeddings (EmbeddingSet), and the
// post-processing step that turns a stored raw row into what the models see (centring fitted on the
// training photos, then L2 normalisation: center.json beside the stores).
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { readJson, writeJsonAtomic } from '../util/files';
import type { Postprocess, PostprocessPart } from './encoders/encoder';
import { CENTER_FILE, sameSignature, EmbeddingStore } from './store';

export interface CenterFile {
  format: string;
  encoder: string;
  kind: 'center-l2';
  parts: (PostprocessPart & { offset: number; mean: number[] })[];
  fit: { images: number; idsSha256: string; datasets: string[]; note: string };
  createdAt: string;
}

/** sha256 of the sorted, newline-joined ids (records which images a statistic came from). */
export function idsHash(ids: readonly string[]): string {
  return crypto.createHash('sha256').update([...ids].sort().join('\n')).digest('hex');
}

/** Means of each part over `rows` (row-major, `dim` wide), summed in float64. Pure. */
export function fitPartMeans(rows: readonly Float32Array[], parts: readonly PostprocessPart[]): number[][] {
  if (rows.length === 0) throw new Error('cannot fit centring means on zero images');
  const dim = parts.reduce((a, p) => a + p.length, 0);
  const sum = new Float64Array(dim);
  for (const r of rows) {
    if (r.length !== dim) throw new Error(`row of ${r.length} values; parts add up to ${dim}`);
    for (let i = 0; i < dim; i++) sum[i] += r[i];
  }
  const means: number[][] = [];
  let off = 0;
  for (const p of parts) {
    means.push(Array.from(sum.subarray(off, off + p.length), (v) => v / rows.length));
    off += p.length;
  }
  return means;
}

/** Apply 'center-l2' to one raw row: per part subtract the mean, then L2-normalise. Pure. */
export function centerL2(raw: Float32Array, center: Pick<CenterFile, 'parts'>): Float32Array {
  const out = new Float32Array(raw.length);
  for (const p of center.parts) {
    let ss = 0;
    for (let i = 0; i < p.length; i++) {
      const v = raw[p.offset + i] - p.mean[i];
      out[p.offset + i] = v;
      ss += v * v;
    }
    const n = Math.sqrt(ss);
    if (n > 0) for (let i = 0; i < p.length; i++) out[p.offset + i] /= n;
  }
  return out;
}

/**
 * The stores of several datasets for one encoder, looked up by image id across them, with the
 * encoder's post-processing applied. `dir` is <artifacts>/embeddings/<encoder>.
 */
export class EmbeddingSet {
  readonly dir: string;
  readonly stores: Map<string, EmbeddingStore>;
  private where = new Map<string, EmbeddingStore>();
  private center: CenterFile | null = null;

  private constructor(dir: string, stores: Map<string, EmbeddingStore>) {
    this.dir = dir;
    this.stores = stores;
    const sigs = [...stores.values()];
    for (const s of sigs) {
      if (!sameSignature(s.meta, sigs[0].meta)) throw new Error(`stores ${sigs[0].dir} and ${s.dir} hold different embeddings (encoder settings differ)`);
      for (const id of s.ids()) {
        const other = this.where.get(id);
        if (other) throw new Error(`image id ${id} is in two embedding stores (${other.dir} and ${s.dir}); ids must be unique across datasets`);
        this.where.set(id, s);
      }
    }
    const centerPath = path.join(dir, CENTER_FILE);
    if (fs.existsSync(centerPath)) this.center = readJson<CenterFile>(centerPath);
  }

  /** Open the stores of `datasets` (default: every store under `dir`). */
  static open(dir: string, datasets?: readonly string[]): EmbeddingSet {
    const names = datasets ?? (fs.existsSync(dir) ? fs.readdirSync(dir).filter((d) => EmbeddingStore.exists(path.join(dir, d))).sort() : []);
    if (names.length === 0) throw new Error(`no embedding stores under ${dir}; run notebook 02 (extraction) first`);
    const stores = new Map<string, EmbeddingStore>();
    for (const n of names) stores.set(n, EmbeddingStore.open(path.join(dir, n)));
    return new EmbeddingSet(dir, stores);
  }

  private get first(): EmbeddingStore {
    return this.stores.values().next().value as EmbeddingStore;
  }

  get dim(): number {
    return this.first.dim;
  }

  get postprocess(): Postprocess {
    return this.first.meta.postprocess;
  }

  get encoder(): string {
    return this.first.meta.encoder;
  }

  get centerFile(): CenterFile | null {
    return this.center;
  }

  /**
   * The identity of the embeddings the models see: the encoder's signature (name, dimension,
   * pre- and post-processing) and the centring means. 16 hex digits.
   */
  get fingerprint(): string {
    const m = this.first.meta;
    const sig = { encoder: m.encoder, dim: m.dim, preprocessing: m.preprocessing, postprocess: m.postprocess, center: this.center ? { parts: this.center.parts } : null };
    return crypto.createHash('sha256').update(JSON.stringify(sig)).digest('hex').slice(0, 16);
  }

  has(id: string): boolean {
    return this.where.has(id);
  }

  /** The dataset holding an id, or undefined. */
  datasetOf(id: string): string | undefined {
    const s = this.where.get(id);
    return s ? s.meta.dataset : undefined;
  }

  ids(): string[] {
    return [...this.where.keys()];
  }

  /** The raw (stored) row of an id. */
  raw(id: string): Float32Array {
    const s = this.where.get(id);
    if (!s) throw new Error(`image ${id} has no embedding under ${this.dir} (datasets: ${[...this.stores.keys()].join(', ')})`);
    return s.get(id);
  }

  /** The embedding of an id as the models see it (post-processing applied). */
  get(id: string): Float32Array {
    const raw = this.raw(id);
    const post = this.postprocess;
    if (post.kind === 'none') return raw;
    if (!this.center) {
      throw new Error(`embeddings of ${this.encoder} need centring means (${path.join(this.dir, CENTER_FILE)}); fit them from the training images with EmbeddingSet.fitCentering(trainIds) (notebook 02 does)`);
    }
    return centerL2(raw, this.center);
  }

  /** Post-processed embeddings of several ids, in order. */
  embeddingsFor(ids: readonly string[]): Float32Array[] {
    return ids.map((id) => this.get(id));
  }

  /** Post-processed embeddings as one row-major matrix [ids.length, dim]. */
  matrix(ids: readonly string[]): Float32Array {
    const out = new Float32Array(ids.length * this.dim);
    ids.forEach((id, i) => out.set(this.get(id), i * this.dim));
    return out;
  }

  /**
   * Fit the centring means of a 'center-l2' encoder on the training images and write center.json
   * (atomically). Deterministic for a given set of ids. A no-op returning null for encoders
   * without post-processing.
   */
  fitCentering(trainIds: readonly string[]): CenterFile | null {
    const post = this.postprocess;
    if (post.kind !== 'center-l2') return null;
    const ids = [...new Set(trainIds.map(String))].filter((id) => this.where.has(id)).sort();
    const missing = trainIds.length - ids.length;
    if (ids.length === 0) throw new Error(`none of the ${trainIds.length} training ids has an embedding under ${this.dir}`);
    const means = fitPartMeans(ids.map((id) => this.raw(id)), post.parts);
    let off = 0;
    const parts = post.parts.map((p, i) => {
      const part = { ...p, offset: off, mean: means[i] };
      off += p.length;
      return part;
    });
    const center: CenterFile = {
      format: 'clipcap-center/1',
      encoder: this.encoder,
      kind: 'center-l2',
      parts,
      fit: {
        images: ids.length,
        idsSha256: idsHash(ids),
        datasets: [...new Set(ids.map((id) => this.datasetOf(id) as string))].sort(),
        note: `means of the raw parts over the training images (float64 sums, ids sorted)${missing ? `; ${missing} training ids without an embedding were left out` : ''}`,
      },
      createdAt: new Date().toISOString(),
    };
    writeJsonAtomic(path.join(this.dir, CENTER_FILE), center);
    this.center = center;
    return center;
  }
}
