// The embedding store: the image embeddings of one dataset by one encoder, on disk.
//
// Layout of a store directory (<artifacts>/embeddings/<encoder>/<dataset>/):
//   rows.f32       float32 little-endian rows, `dim` values each, in append order (raw encoder output)
//   index.parquet  image_id (string) -> row (int32); the commit record: a row exists iff it is indexed
//   rejects.json   [{image_id, file, reason}] images that could not be read, with the reason
//   meta.json      encoder, dim, preprocessing, postprocessing, counts, extraction runs
//   writer.lock    present while a process appends (holds its pid)
//
// Appends are atomic per batch: the rows are appended to rows.f32 and fsync'ed, then rejects.json,
// index.parquet and meta.json are replaced atomically (temp file + rename). A process killed at any
// moment leaves the store at its last committed batch: rows past the indexed count are ignored and
// cut off by the next writer. A rerun skips ids that are indexed or rejected.
//
// Raw rows and post-processing. Stores keep the encoder's raw output. Encoders whose embedding needs
// statistics of the training images (the CenterNet stand-in: each part centred by its mean over the
// training images, then L2-normalised) declare it in `meta.postprocess`; the means are fitted once per
// encoder from the training ids (`EmbeddingSet.fitCentering`) and kept in
// <artifacts>/embeddings/<encoder>/center.json, beside the dataset stores. The fit is deterministic
// (float64 sums over the sorted ids) and center.json records which ids it used (count and sha256), so
// the step is reproducible; `EmbeddingSet.get()` / `embeddingsFor()` return post-processed vectors,
// `EmbeddingStore.get()` the raw ones.
import * as fs from 'fs';
import * as path from 'path';
import pl from 'nodejs-polars';
import { cleanStaleTemps, DiskFullError, isDiskFull, readJson, writeFileAtomic, writeJsonAtomic } from '../util/files';
import { acquireLock } from '../util/lock';
import type { Postprocess } from './encoders/encoder';

export const STORE_FORMAT = 'clipcap-embeddings/1';
export const ROWS_FILE = 'rows.f32';
export const INDEX_FILE = 'index.parquet';
export const META_FILE = 'meta.json';
export const REJECTS_FILE = 'rejects.json';
export const LOCK_FILE = 'writer.lock';
export const CENTER_FILE = 'center.json';

/** Who produced the rows; must match when a store is reopened for appending. */
export interface EncoderSignature {
  /** Encoder name, e.g. 'clip-Xenova_clip-vit-base-patch32' or 'centernet'. */
  encoder: string;
  dim: number;
  /** Everything that determines the pixels and the network (decoding, resize, normalisation, model files). */
  preprocessing: Record<string, unknown>;
  postprocess: Postprocess;
}

export interface ExtractionRun {
  startedAt: string;
  finishedAt: string;
  /** Images embedded / rejected by this run (skipped ones not counted). */
  embedded: number;
  rejected: number;
  skipped: number;
  seconds: number;
  imagesPerSecond: number;
  workers: number;
  shard?: { index: number; count: number };
}

export interface StoreMeta extends EncoderSignature {
  format: string;
  dataset: string;
  rows: number;
  rejects: number;
  createdAt: string;
  updatedAt: string;
  runs: ExtractionRun[];
  /** How to read this directory. */
  note: string;
}

export interface RejectRecord {
  image_id: string;
  file: string;
  reason: string;
}

export interface StoreRow {
  id: string;
  vector: Float32Array | number[];
}

const STORE_NOTE =
  'rows.f32 holds the raw encoder output (float32, little-endian, dim values a row); index.parquet maps image_id to row. ' +
  "postprocess 'center-l2' means: per part, subtract the mean over the training images (../center.json, fitted by " +
  'EmbeddingSet.fitCentering from the train split) and L2-normalise; EmbeddingSet.get applies it.';

function nowIso(): string {
  return new Date().toISOString();
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Do two signatures describe the same embedding (same encoder, dim, preprocessing, postprocessing)? */
export function sameSignature(a: EncoderSignature, b: EncoderSignature): boolean {
  return a.encoder === b.encoder && a.dim === b.dim && stableJson(a.preprocessing) === stableJson(b.preprocessing) && stableJson(a.postprocess) === stableJson(b.postprocess);
}

function readIndex(file: string): string[] {
  let ids: unknown[];
  let rows: number[];
  try {
    const df = pl.readParquet(file);
    ids = df.getColumn('image_id').toArray() as unknown[];
    rows = df.getColumn('row').toArray() as number[];
  } catch (e) {
    throw new Error(
      `the embedding store index ${file} is damaged (${(e as Error).message.split('\n')[0]}): delete the store's folder (${path.dirname(file)}) and rerun the extraction (notebook 02) to rebuild it`,
    );
  }
  const out = new Array<string>(ids.length);
  for (let i = 0; i < ids.length; i++) {
    if (rows[i] !== i) throw new Error(`${file}: row ${i} maps to ${rows[i]}; the index must be dense (rows 0..n-1 in order)`);
    out[i] = String(ids[i]);
  }
  return out;
}

function indexBytes(ids: readonly string[]): Uint8Array {
  const rows = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) rows[i] = i;
  const df = pl.DataFrame([pl.Series('image_id', ids as string[], pl.Utf8), pl.Series('row', Array.from(rows), pl.Int32)]);
  return df.writeParquet();
}

/** One (encoder, dataset) store. `open` for reading; `openForAppend` to add rows. */
export class EmbeddingStore {
  readonly dir: string;
  private metaData: StoreMeta;
  private idList: string[];
  private rowOf: Map<string, number>;
  private data: Float32Array;
  private rejectList: RejectRecord[];
  private rejectIds: Set<string>;
  private fd: number | null = null;
  private lockPath: string | null = null;

  private constructor(dir: string, meta: StoreMeta, ids: string[], data: Float32Array, rejects: RejectRecord[]) {
    this.dir = dir;
    this.metaData = meta;
    this.idList = ids;
    this.rowOf = new Map(ids.map((id, i) => [id, i]));
    if (this.rowOf.size !== ids.length) throw new Error(`${path.join(dir, INDEX_FILE)} lists an image id twice`);
    this.data = data;
    this.rejectList = rejects;
    this.rejectIds = new Set(rejects.map((r) => r.image_id));
  }

  /** Is there a store in `dir`? */
  static exists(dir: string): boolean {
    return fs.existsSync(path.join(dir, META_FILE));
  }

  /** Open a store for reading (its committed rows). */
  static open(dir: string): EmbeddingStore {
    const metaPath = path.join(dir, META_FILE);
    if (!fs.existsSync(metaPath)) {
      throw new Error(`no embedding store at ${dir} (no ${META_FILE}); run the extraction (notebook 02 or extractEmbeddings) first`);
    }
    const meta = readJson<StoreMeta>(metaPath);
    if (meta.format !== STORE_FORMAT) throw new Error(`${metaPath}: format ${meta.format}, expected ${STORE_FORMAT}`);
    const indexPath = path.join(dir, INDEX_FILE);
    const ids = fs.existsSync(indexPath) ? readIndex(indexPath) : [];
    const rowsPath = path.join(dir, ROWS_FILE);
    const need = ids.length * meta.dim * 4;
    const have = fs.existsSync(rowsPath) ? fs.statSync(rowsPath).size : 0;
    if (have < need) {
      throw new Error(`${rowsPath} has ${have} bytes but the index lists ${ids.length} rows of ${meta.dim} floats (${need} bytes): the store is damaged; delete ${dir} and extract again`);
    }
    const data = new Float32Array(ids.length * meta.dim);
    if (need > 0) {
      const fd = fs.openSync(rowsPath, 'r');
      try {
        fs.readSync(fd, new Uint8Array(data.buffer), 0, need, 0);
      } finally {
        fs.closeSync(fd);
      }
    }
    const rejectsPath = path.join(dir, REJECTS_FILE);
    const rejects = fs.existsSync(rejectsPath) ? readJson<RejectRecord[]>(rejectsPath) : [];
    // The index is the truth; meta.json may lag one commit behind a kill.
    meta.rows = ids.length;
    meta.rejects = rejects.length;
    return new EmbeddingStore(dir, meta, ids, data, rejects);
  }

  /**
   * Open (creating if needed) a store for appending. An existing store must have been written by the
   * same encoder signature. Takes a writer lock; call `close()` when done.
   */
  static openForAppend(dir: string, sig: EncoderSignature & { dataset: string }): EmbeddingStore {
    fs.mkdirSync(dir, { recursive: true });
    const lockPath = path.join(dir, LOCK_FILE);
    acquireLock(lockPath, {
      busy: (pid) => `the embedding store ${dir} is being written by process ${pid}; wait for it or stop it (a store has one writer)`,
      self: `the embedding store ${dir} is already open for appending in this process`,
    });
    try {
      cleanStaleTemps(dir);
      if (!EmbeddingStore.exists(dir)) {
        const meta: StoreMeta = {
          format: STORE_FORMAT,
          encoder: sig.encoder,
          dataset: sig.dataset,
          dim: sig.dim,
          preprocessing: sig.preprocessing,
          postprocess: sig.postprocess,
          rows: 0,
          rejects: 0,
          createdAt: nowIso(),
          updatedAt: nowIso(),
          runs: [],
          note: STORE_NOTE,
        };
        writeFileAtomic(path.join(dir, ROWS_FILE), new Uint8Array(0));
        writeFileAtomic(path.join(dir, INDEX_FILE), indexBytes([]));
        writeJsonAtomic(path.join(dir, META_FILE), meta);
      }
      const store = EmbeddingStore.open(dir);
      if (!sameSignature(store.metaData, sig)) {
        throw new Error(
          `the embedding store at ${dir} was written by encoder ${store.metaData.encoder} (dim ${store.metaData.dim}) with other ` +
            `settings than ${sig.encoder} (dim ${sig.dim}); use another directory or delete it to start over`,
        );
      }
      // Cut rows of a batch that was being appended when a writer died.
      const rowsPath = path.join(dir, ROWS_FILE);
      const committed = store.idList.length * store.dim * 4;
      if (fs.statSync(rowsPath).size !== committed) fs.truncateSync(rowsPath, committed);
      store.fd = fs.openSync(rowsPath, 'r+');
      store.lockPath = lockPath;
      return store;
    } catch (e) {
      fs.rmSync(lockPath, { force: true });
      throw e;
    }
  }

  get dim(): number {
    return this.metaData.dim;
  }

  get meta(): StoreMeta {
    return { ...this.metaData, rows: this.idList.length, rejects: this.rejectList.length };
  }

  get size(): number {
    return this.idList.length;
  }

  has(id: string): boolean {
    return this.rowOf.has(id);
  }

  isRejected(id: string): boolean {
    return this.rejectIds.has(id);
  }

  /** Indexed or rejected: a rerun skips it. */
  isDone(id: string): boolean {
    return this.rowOf.has(id) || this.rejectIds.has(id);
  }

  /** Row number of an id, or -1. */
  rowIndex(id: string): number {
    return this.rowOf.get(id) ?? -1;
  }

  /** The raw row of an image (a copy). */
  get(id: string): Float32Array {
    const r = this.rowOf.get(id);
    if (r === undefined) throw new Error(`image ${id} is not in the embedding store ${this.dir}`);
    return this.row(r);
  }

  /** Raw row `r` (a copy). */
  row(r: number): Float32Array {
    if (r < 0 || r >= this.idList.length) throw new Error(`row ${r} out of range 0..${this.idList.length - 1} in ${this.dir}`);
    return this.data.slice(r * this.dim, (r + 1) * this.dim);
  }

  /** Image ids in row order. */
  ids(): string[] {
    return this.idList.slice();
  }

  rejects(): RejectRecord[] {
    return this.rejectList.map((r) => ({ ...r }));
  }

  /** All raw rows as one row-major matrix (a view: do not modify). */
  matrix(): Float32Array {
    return this.data.subarray(0, this.idList.length * this.dim);
  }

  /**
   * Commit one batch: rows for new ids and rejects. Ids already present are ignored (first wins).
   * Atomic: after a kill the store holds all of this batch or none of it.
   */
  append(rows: readonly StoreRow[], rejects: readonly RejectRecord[] = []): { added: number; rejected: number } {
    if (this.fd === null) throw new Error(`the embedding store ${this.dir} is open read-only (use EmbeddingStore.openForAppend)`);
    const fresh: StoreRow[] = [];
    const seen = new Set<string>();
    for (const r of rows) {
      const id = String(r.id);
      if (this.rowOf.has(id) || seen.has(id)) continue;
      if (r.vector.length !== this.dim) throw new Error(`embedding of ${id} has ${r.vector.length} values; the store ${this.dir} holds ${this.dim}`);
      for (let i = 0; i < r.vector.length; i++) {
        if (!Number.isFinite(r.vector[i])) throw new Error(`embedding of ${id} has a non-finite value at ${i}; not stored`);
      }
      seen.add(id);
      fresh.push({ id, vector: r.vector });
    }
    const newRejects = rejects.filter((r) => !this.rejectIds.has(String(r.image_id)) && !this.rowOf.has(String(r.image_id)) && !seen.has(String(r.image_id)));
    if (fresh.length === 0 && newRejects.length === 0) return { added: 0, rejected: 0 };

    // 1. rows after the committed ones, durable before anything refers to them
    const n0 = this.idList.length;
    const block = new Float32Array(fresh.length * this.dim);
    fresh.forEach((r, i) => block.set(r.vector, i * this.dim));
    const bytes = new Uint8Array(block.buffer);
    try {
      let off = 0;
      while (off < bytes.byteLength) off += fs.writeSync(this.fd, bytes, off, bytes.byteLength - off, n0 * this.dim * 4 + off);
      fs.fsyncSync(this.fd);
    } catch (e) {
      // rows past the committed index are cut by the next writer: a rerun resumes after the last commit
      if (isDiskFull(e)) throw new DiskFullError(this.dir);
      throw e;
    }
    // 2. rejects, 3. index (the commit), 4. meta (informational counts)
    const rejectList = newRejects.length ? [...this.rejectList, ...newRejects.map((r) => ({ image_id: String(r.image_id), file: r.file, reason: r.reason }))] : this.rejectList;
    if (newRejects.length) writeJsonAtomic(path.join(this.dir, REJECTS_FILE), rejectList);
    const ids = fresh.length ? [...this.idList, ...fresh.map((r) => r.id as string)] : this.idList;
    if (fresh.length) writeFileAtomic(path.join(this.dir, INDEX_FILE), indexBytes(ids));
    // In memory only after the commit.
    this.idList = ids;
    fresh.forEach((r, i) => this.rowOf.set(r.id as string, n0 + i));
    this.rejectList = rejectList;
    for (const r of newRejects) this.rejectIds.add(String(r.image_id));
    this.growTo(ids.length);
    this.data.set(block, n0 * this.dim);
    this.writeMeta();
    return { added: fresh.length, rejected: newRejects.length };
  }

  /** Record an extraction run in meta.json. */
  recordRun(run: ExtractionRun): void {
    this.metaData.runs = [...(this.metaData.runs ?? []), run];
    this.writeMeta();
  }

  private writeMeta(): void {
    this.metaData = { ...this.metaData, rows: this.idList.length, rejects: this.rejectList.length, updatedAt: nowIso() };
    writeJsonAtomic(path.join(this.dir, META_FILE), this.metaData);
  }

  private growTo(rows: number): void {
    const need = rows * this.dim;
    if (this.data.length >= need) return;
    const next = new Float32Array(Math.max(need, Math.ceil(this.data.length * 1.5)));
    next.set(this.data);
    this.data = next;
  }

  /** Release the writer lock (appending stores); reading stays possible. */
  close(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
    if (this.lockPath) {
      fs.rmSync(this.lockPath, { force: true });
      this.lockPath = null;
    }
  }
}

/**
 * Merge stores (e.g. the shards of one dataset, extracted on several machines) into `outDir`.
 * All must share one encoder signature; an id present in several keeps its first row. Rejects are
 * merged too (an id embedded by any shard is not a reject). Resumable: merging into an existing store
 * adds only what it lacks.
 */
export function mergeStores(srcDirs: readonly string[], outDir: string, dataset?: string): EmbeddingStore {
  if (srcDirs.length === 0) throw new Error('mergeStores: no source stores');
  const srcs = srcDirs.map((d) => EmbeddingStore.open(d));
  const first = srcs[0].meta;
  for (const s of srcs) {
    if (!sameSignature(s.meta, first)) throw new Error(`cannot merge ${s.dir} (encoder ${s.meta.encoder}) with ${srcs[0].dir} (encoder ${first.encoder}): different encoder settings`);
  }
  const out = EmbeddingStore.openForAppend(outDir, { ...first, dataset: dataset ?? first.dataset });
  try {
    const embedded = new Set<string>();
    for (const s of srcs) for (const id of s.ids()) embedded.add(id);
    const BATCH = 4096;
    for (const s of srcs) {
      const ids = s.ids();
      for (let i = 0; i < ids.length; i += BATCH) {
        out.append(ids.slice(i, i + BATCH).map((id, k) => ({ id, vector: s.row(i + k) })));
      }
    }
    const rejects = srcs.flatMap((s) => s.rejects()).filter((r) => !embedded.has(r.image_id));
    if (rejects.length) out.append([], rejects);
    for (const s of srcs) for (const run of s.meta.runs ?? []) out.recordRun(run);
    return out;
  } finally {
    out.close();
  }
}
