// Embedding extraction: a list of images -> an embedding store, resumable, sharded, on all cores.
//
//  - Resumable: ids already in the store (embedded or rejected) are skipped; each batch is committed
//    atomically, so a killed run loses at most the batches in flight.
//  - Rejects: an image that cannot be decoded goes to the store's rejects list with the reason.
//  - Overlap: the next batch is decoded (sharp, on libuv's thread pool) while the network runs on
//    the current one.
//  - Workers: with workers > 1, that many child processes each load their own encoder (their own
//    tfjs wasm runtime or onnxruntime session: the wasm backend is single-threaded in Node) and
//    embed batches; the parent is the store's only writer. CLIP workers get cores / workers
//    onnxruntime threads each.
//  - Shards: `shard: {index, count}` keeps the images whose id hashes to `index` (FNV-1a mod count),
//    so that several machines can split a dataset; `mergeStores` (store.ts) joins the results.
import { fork, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pl from 'nodejs-polars';
import type { EncoderConfig } from '../config';
import { EmbeddingStore, type EncoderSignature, type RejectRecord, type StoreRow } from './store';
import { createEncoder, encoderName, resolveClipModel, type EncoderExtras, type EncoderPaths } from './encoders/index';
import type { ImageEncoder } from './encoders/encoder';
import { cacheDir } from '../paths';
import { settings } from '../settings';
import { Progress } from '../util/progress';
import { fnv1a } from '../util/rng';
import { tsxImportUrl } from '../util/tsx';

export interface ExtractImage {
  image_id: string;
  file: string;
}

export interface ExtractOptions {
  encoder: EncoderConfig & EncoderExtras;
  images: readonly ExtractImage[];
  /** The store: <artifacts>/embeddings/<encoder>/<dataset> (see storeDir in paths.ts). */
  storeDir: string;
  /** Dataset name recorded in the store (default: the store folder's name). */
  dataset?: string;
  /** Worker processes (default encoder.workers; 1 = in this process). */
  workers?: number;
  /** Images per inference call (default encoder.batchSize). */
  batchSize?: number;
  shard?: { index: number; count: number };
  /** Where generated models live (default <cache>/models). */
  models?: string;
  /** Progress lines (default true). */
  progress?: boolean;
  /** Try images on the rejects list again (default false). */
  retryRejects?: boolean;
  /** An encoder already loaded in this process (workers = 1 only), e.g. for a benchmark loop. */
  encoderInstance?: ImageEncoder;
}

export interface ExtractResult {
  dataset: string;
  storeDir: string;
  encoder: string;
  dim: number;
  /** Distinct images asked for (after sharding). */
  images: number;
  /** Already in the store before this run. */
  skipped: number;
  embedded: number;
  rejected: number;
  seconds: number;
  /** Of `seconds`, the time to load the encoder (and start the workers). */
  loadSeconds: number;
  /**
   * CPU time (user + system, all threads) after loading: this process plus the workers. Less
   * sensitive than wall time to other programs sharing the machine (benchmarks report it per image).
   */
  cpuSeconds: number;
  /** (embedded + rejected) / seconds, model loading included. */
  imagesPerSecond: number;
  workers: number;
  /** Store rows after the run. */
  rows: number;
}


/** Parse a shard written as 'i/n' (0-based i). */
export function parseShard(s: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`shard "${s}" is not i/n (e.g. 0/4)`);
  const shard = { index: Number(m[1]), count: Number(m[2]) };
  validateShard(shard);
  return shard;
}

function validateShard(sh: { index: number; count: number }): void {
  if (!Number.isInteger(sh.count) || sh.count < 1 || !Number.isInteger(sh.index) || sh.index < 0 || sh.index >= sh.count) {
    throw new Error(`shard ${sh.index}/${sh.count}: need 0 <= index < count`);
  }
}

/** The images of one shard. Pure. */
export function shardImages<T extends { image_id: string }>(images: readonly T[], shard?: { index: number; count: number }): T[] {
  if (!shard || shard.count === 1) return images.slice();
  validateShard(shard);
  return images.filter((im) => fnv1a(im.image_id) % shard.count === shard.index);
}

/** One entry per image id (caption tables have one row per caption); an id with two files is an error. */
export function uniqueImages(rows: readonly ExtractImage[]): ExtractImage[] {
  const seen = new Map<string, string>();
  const out: ExtractImage[] = [];
  for (const r of rows) {
    const id = String(r.image_id);
    const prev = seen.get(id);
    if (prev === undefined) {
      seen.set(id, r.file);
      out.push({ image_id: id, file: r.file });
    } else if (prev !== r.file) {
      throw new Error(`image id ${id} names two files: ${prev} and ${r.file}`);
    }
  }
  return out;
}

/**
 * The photos of every subset parquet file in `subsetsDir` (columns image_id, file, split, caption,
 * source; one row per caption), grouped by `source`: one entry per image, with its split.
 */
export function imagesFromSubsets(subsetsDir: string): Map<string, (ExtractImage & { split: string })[]> {
  if (!fs.existsSync(subsetsDir)) throw new Error(`no subsets at ${subsetsDir}: run notebook 01 (data) first`);
  const files = fs.readdirSync(subsetsDir).filter((f) => f.endsWith('.parquet')).sort();
  if (files.length === 0) throw new Error(`no subset parquet files in ${subsetsDir}: run notebook 01 (data) first`);
  const bySource = new Map<string, (ExtractImage & { split: string })[]>();
  const seen = new Set<string>();
  for (const f of files) {
    const df = pl.readParquet(path.join(subsetsDir, f));
    for (const c of ['image_id', 'file', 'split', 'source']) {
      if (!df.columns.includes(c)) throw new Error(`${path.join(subsetsDir, f)} has no column ${c} (columns: ${df.columns.join(', ')})`);
    }
    const ids = df.getColumn('image_id').toArray() as unknown[];
    const fl = df.getColumn('file').toArray() as string[];
    const sp = df.getColumn('split').toArray() as string[];
    const src = df.getColumn('source').toArray() as string[];
    for (let i = 0; i < ids.length; i++) {
      const id = String(ids[i]);
      if (seen.has(id)) continue;
      seen.add(id);
      if (!bySource.has(src[i])) bySource.set(src[i], []);
      bySource.get(src[i])!.push({ image_id: id, file: fl[i], split: sp[i] });
    }
  }
  return bySource;
}

// ---------------------------------------------------------------------------------------------

interface BatchOutcome {
  rows: StoreRow[];
  rejects: RejectRecord[];
}

type Prepared = { ok: { item: ExtractImage; prepared: unknown }[]; rejects: RejectRecord[] };

/** Decode/preprocess a batch; unreadable images become rejects. */
export async function prepareBatch(enc: ImageEncoder, items: readonly ExtractImage[]): Promise<Prepared> {
  const settled = await Promise.allSettled(items.map((it) => enc.prepare(it.file)));
  const ok: Prepared['ok'] = [];
  const rejects: RejectRecord[] = [];
  settled.forEach((s, i) => {
    if (s.status === 'fulfilled') ok.push({ item: items[i], prepared: s.value });
    else rejects.push({ image_id: items[i].image_id, file: items[i].file, reason: ((s.reason as Error)?.message ?? String(s.reason)).split('\n')[0] });
  });
  return { ok, rejects };
}

/** Run the network on a prepared batch. */
export async function inferBatch(enc: ImageEncoder, p: Prepared): Promise<BatchOutcome> {
  const rows: StoreRow[] = [];
  for (let i = 0; i < p.ok.length; i += enc.maxBatch) {
    const chunk = p.ok.slice(i, i + enc.maxBatch);
    const vecs = await enc.infer(chunk.map((c) => c.prepared));
    chunk.forEach((c, k) => rows.push({ id: c.item.image_id, vector: vecs[k] }));
  }
  return { rows, rejects: p.rejects };
}

/** Embed batches in this process, decoding batch k+1 while batch k is inferred. */
async function runInProcess(enc: ImageEncoder, batches: ExtractImage[][], onBatch: (o: BatchOutcome) => void): Promise<void> {
  let next: Promise<Prepared> | null = batches.length ? prepareBatch(enc, batches[0]) : null;
  for (let i = 0; i < batches.length; i++) {
    const cur = await next!;
    next = i + 1 < batches.length ? prepareBatch(enc, batches[i + 1]) : null;
    onBatch(await inferBatch(enc, cur));
  }
}

export interface WorkerInit {
  encoder: EncoderConfig & EncoderExtras;
  models: string;
  threads?: number;
}

type FromWorker =
  | { type: 'ready'; signature: EncoderSignature & { name: string } }
  | { type: 'result'; seq: number; rows: { id: string; vector: Float32Array }[]; rejects: RejectRecord[]; cpuSeconds: number }
  | { type: 'error'; message: string };

/** Start a worker process; resolves when its encoder is loaded. */
function startWorker(init: WorkerInit): Promise<{ child: ChildProcess; signature: EncoderSignature & { name: string } }> {
  const entry = path.join(__dirname, 'extract-worker.ts');
  const child = fork(entry, [], {
    execArgv: ['--import', tsxImportUrl()],
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // The wasm backend's matMuls run in OpenBLAS (1 thread) or onnxruntime (tfjs/matmul.ts): give each worker its share of the cores.
    env: settings().childEnv({ set: { CLIPCAP_QUIET_BACKEND: '1' }, unlessSet: { UV_THREADPOOL_SIZE: '2', CLIPCAP_ORT_THREADS: String(init.threads ?? 1) } }),
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`an extraction worker exited (code ${code}) while loading the encoder`));
    child.once('exit', onExit);
    child.once('message', (m: FromWorker) => {
      child.off('exit', onExit);
      if (m.type === 'ready') resolve({ child, signature: m.signature });
      else {
        child.kill();
        reject(new Error(`extraction worker: ${m.type === 'error' ? m.message : 'unexpected message'}`));
      }
    });
    child.send({ type: 'init', init });
  });
}

/** Embed batches in worker processes; two batches in flight per worker. */
async function runInWorkers(
  workers: { child: ChildProcess; cpuSeconds?: number }[],
  batches: ExtractImage[][],
  onBatch: (o: BatchOutcome) => void,
): Promise<void> {
  let nextBatch = 0;
  let done = 0;
  if (batches.length === 0) return;
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (e: Error) => {
      if (failed) return;
      failed = true;
      reject(e);
    };
    const send = (child: ChildProcess) => {
      if (nextBatch >= batches.length || failed) return;
      const seq = nextBatch++;
      child.send({ type: 'batch', seq, items: batches[seq] });
    };
    for (const w of workers) {
      w.child.on('message', (m: FromWorker) => {
        if (m.type === 'result') {
          w.cpuSeconds = m.cpuSeconds;
          try {
            onBatch({ rows: m.rows, rejects: m.rejects });
          } catch (e) {
            fail(e as Error);
            return;
          }
          done += 1;
          if (done === batches.length) resolve();
          else send(w.child);
        } else if (m.type === 'error') fail(new Error(`extraction worker ${w.child.pid}: ${m.message}`));
      });
      w.child.on('exit', (code) => {
        if (done < batches.length) fail(new Error(`extraction worker ${w.child.pid} exited (code ${code}) with batches in flight; rerun to resume`));
      });
      send(w.child);
      send(w.child);
    }
  });
}

/** Embed `images` into the store at `storeDir` (see the file comment). */
export async function extractEmbeddings(opts: ExtractOptions): Promise<ExtractResult> {
  const t0 = Date.now();
  const startedAt = new Date().toISOString();
  const cfg = opts.encoder;
  const dataset = opts.dataset ?? path.basename(opts.storeDir);
  const workers = Math.max(1, Math.floor(opts.workers ?? cfg.workers ?? 1));
  const batchSize = Math.max(1, Math.floor(opts.batchSize ?? cfg.batchSize ?? 8));
  const models = opts.models ?? path.join(cacheDir(), 'models');
  const paths: EncoderPaths = { models };
  if (opts.encoderInstance && workers > 1) throw new Error('encoderInstance works with workers = 1 only');

  const all = shardImages(uniqueImages(opts.images), opts.shard);

  // Skip what a previous run did, before loading any model.
  const skipSet = new Set<string>();
  const existing = EmbeddingStore.exists(opts.storeDir) ? EmbeddingStore.open(opts.storeDir) : null;
  if (existing) {
    for (const im of all) if (existing.has(im.image_id) || (!opts.retryRejects && existing.isRejected(im.image_id))) skipSet.add(im.image_id);
  }
  const todo = all.filter((im) => !skipSet.has(im.image_id));
  const batches: ExtractImage[][] = [];
  for (let i = 0; i < todo.length; i += batchSize) batches.push(todo.slice(i, i + batchSize));

  let embedded = 0;
  let rejected = 0;
  let loadSeconds = 0;
  let store: EmbeddingStore | null = null;
  let signature: EncoderSignature | null = null;
  const name = opts.encoderInstance?.name ?? encoderName(cfg);
  let local: ImageEncoder | null = null;
  const children: { child: ChildProcess; cpuSeconds?: number }[] = [];
  let cpuSeconds = 0;
  try {
    if (todo.length > 0) {
      if (workers === 1) {
        local = opts.encoderInstance ?? (await createEncoder(cfg, paths));
        signature = { encoder: local.name, dim: local.dim, preprocessing: local.preprocessing, postprocess: local.postprocess };
      } else {
        // A generated model is written once, here, not by each worker at the same time.
        if (cfg.kind === 'clip') await resolveClipModel(cfg.modelId, paths);
        const threads = cfg.threads ?? Math.max(1, Math.floor(os.cpus().length / workers));
        const started = await Promise.all(Array.from({ length: Math.min(workers, batches.length) }, () => startWorker({ encoder: cfg, models, threads })));
        children.push(...started);
        const s = started[0].signature;
        signature = { encoder: s.name, dim: s.dim, preprocessing: s.preprocessing, postprocess: s.postprocess };
      }
      loadSeconds = (Date.now() - t0) / 1000;
      const cpu0 = process.cpuUsage();
      store = EmbeddingStore.openForAppend(opts.storeDir, { ...signature, dataset });
      const bar = opts.progress === false ? null : new Progress({ total: todo.length, label: `${signature.encoder} ${dataset}`, unit: 'img' });
      const onBatch = (o: BatchOutcome) => {
        const r = store!.append(o.rows, o.rejects);
        embedded += r.added;
        rejected += r.rejected;
        bar?.tick(o.rows.length + o.rejects.length, rejected ? { rejected } : undefined);
      };
      if (local) await runInProcess(local, batches, onBatch);
      else await runInWorkers(children, batches, onBatch);
      bar?.finish();
      const cpu = process.cpuUsage(cpu0);
      cpuSeconds = (cpu.user + cpu.system) / 1e6 + children.reduce((a, c) => a + (c.cpuSeconds ?? 0), 0);
      const seconds = (Date.now() - t0) / 1000;
      store.recordRun({
        startedAt,
        finishedAt: new Date().toISOString(),
        embedded,
        rejected,
        skipped: skipSet.size,
        seconds,
        imagesPerSecond: seconds > 0 ? (embedded + rejected) / seconds : 0,
        workers,
        ...(opts.shard ? { shard: opts.shard } : {}),
      });
    }
  } finally {
    for (const c of children) {
      c.child.removeAllListeners('exit');
      c.child.kill();
    }
    if (local && !opts.encoderInstance) await local.dispose();
    store?.close();
  }
  const seconds = (Date.now() - t0) / 1000;
  // The appending store holds every committed row in memory (close() releases only the file and lock).
  const finalStore = store ?? existing;
  return {
    dataset,
    storeDir: opts.storeDir,
    encoder: finalStore?.meta.encoder ?? name,
    dim: finalStore?.dim ?? signature?.dim ?? 0,
    images: all.length,
    skipped: skipSet.size,
    embedded,
    rejected,
    seconds,
    loadSeconds,
    cpuSeconds,
    imagesPerSecond: seconds > 0 ? (embedded + rejected) / seconds : 0,
    workers,
    rows: finalStore?.size ?? 0,
  };
}
