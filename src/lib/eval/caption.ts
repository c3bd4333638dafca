// Captioning with a trained run: image embeddings (or image files, through the run's encoder and its
// post-processing) -> prefix -> beam search (ClipCap's generate_beam) or greedy decoding -> text.
import { fork, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { centerL2, type CenterFile } from '../embed/embedding-set';
import { createEncoder, type ImageEncoder } from '../embed/encoders/index';
import { readJson } from '../util/files';
import { beamSearchBatch, greedy, sampleBatch } from '../model/generate';
import { mbrChoice } from './mbr';
import { fnv1aWords } from '../util/rng';
import { artifactPaths, repoRoot } from '../paths';
import { loadRun, openEmbeddingsOfRun, type LoadedRun } from '../run/run';
import { CENTER_FILE } from '../embed/store';
import { settings } from '../settings';
import { captionWorkers } from '../machine';
import { tsxImportUrl } from '../util/tsx';
import { cleanGenerated } from '../model/text';
import { stopIds } from '../model/tokenizer';

export interface DecodeConfig {
  /** Beam width; 1 = greedy. */
  beam: number;
  maxNewTokens: number;
  /** Beam search: no repeated n-gram of this many tokens (0 or absent = off). */
  noRepeatNgram?: number;
  /** Beam search: score = log-prob / tokens^lengthPenalty (absent = 1, the original's). */
  lengthPenalty?: number;
  /** Beam search: minus this times the log-prob under the average photo's prefix (absent or 0 = off). */
  contrastWeight?: number;
  /**
   * Consensus (minimum Bayes risk) decoding: draw this many captions per photo from the model at
   * `mbrTemperature`, and keep, among them and the beams, the one with the highest CIDEr-D against all
   * the others (eval/mbr.ts). Absent or 0 = off: the best beam.
   */
  mbrSamples?: number;
  /** Consensus decoding: the sampling temperature (absent = 1). */
  mbrTemperature?: number;
  /**
   * Consensus decoding: the samples are drawn contrastively, from softmax((log p(token | photo) -
   * mbrContrast * log p(token | average photo)) / mbrTemperature) (absent or 0 = from the model itself).
   */
  mbrContrast?: number;
}

/** The decoding settings, by name (tune.ts --decode, notebook 06, eval.byVariant). */
export const DECODE_KEYS = ['beam', 'maxNewTokens', 'noRepeatNgram', 'lengthPenalty', 'contrastWeight', 'mbrSamples', 'mbrTemperature', 'mbrContrast'] as const;

/** The decoding settings of a profile's evaluation config. */
export function decodeOf(e: DecodeConfig): DecodeConfig {
  return {
    beam: e.beam,
    maxNewTokens: e.maxNewTokens,
    noRepeatNgram: e.noRepeatNgram ?? 0,
    lengthPenalty: e.lengthPenalty ?? 1,
    contrastWeight: e.contrastWeight ?? 0,
    mbrSamples: e.mbrSamples ?? 0,
    mbrTemperature: e.mbrTemperature ?? 1,
    mbrContrast: e.mbrContrast ?? 0,
  };
}

/**
 * The decoding of one variant ('mlp' or 'transformer', the run's mapper): the evaluation config's
 * decoding with that variant's overrides (EvalConfig.byVariant) applied.
 */
export function decodeForVariant(e: DecodeConfig & { byVariant?: Partial<Record<string, Partial<DecodeConfig>>> }, variant: string): DecodeConfig {
  const o = e.byVariant?.[variant] ?? {};
  return decodeOf({ ...decodeOf(e), ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) });
}

/** How a decoding is described in tables, e.g. "beam 5, no repeated 3-grams, at most 30 tokens". */
export function describeDecode(d: DecodeConfig): string {
  const parts = [d.beam <= 1 ? 'greedy' : `beam ${d.beam}`];
  if (d.beam > 1 && (d.noRepeatNgram ?? 0) > 0) parts.push(`no repeated ${d.noRepeatNgram}-grams`);
  if (d.beam > 1 && (d.lengthPenalty ?? 1) !== 1) parts.push(`length penalty ${d.lengthPenalty}`);
  if (d.beam > 1 && (d.contrastWeight ?? 0) > 0) parts.push(`contrast ${d.contrastWeight} against the average photo`);
  parts.push(`at most ${d.maxNewTokens} tokens`);
  if ((d.mbrSamples ?? 0) > 0) parts.push(`then the consensus (CIDEr-D) among the model's own ${d.beam > 1 ? `${d.beam} beams` : 'greedy caption'} and ${d.mbrSamples} samples at temperature ${d.mbrTemperature ?? 1}${(d.mbrContrast ?? 0) > 0 ? `, drawn with contrast ${d.mbrContrast}` : ''}`);
  return parts.join(', ');
}


/** Images decoded together (one GPT-2 batch): greedy, and beam search (BEAM_CHUNK x beam rows). */
export const GREEDY_CHUNK = 16;
export const BEAM_CHUNK = 8;

/** The sampling seed of a photo in consensus decoding: a hash of its embedding's bits (the same photo, the same samples, whatever else is decoded with it). */
export function embeddingSeed(e: Float32Array): number {
  return fnv1aWords(new Uint32Array(e.buffer, e.byteOffset, e.length));
}

/**
 * Caption a batch of (post-processed) image embeddings with a loaded run (greedy in chunks of 16, beam
 * search in chunks of 8 images, each image's beams the same as alone; with consensus decoding, each
 * photo's samples drawn from its own seeded stream, so its caption too is the same as alone);
 * `onChunk` hears how many images each chunk captioned (progress bars).
 */
export function captionEmbeddings(run: LoadedRun, embeddings: Float32Array[], opts: DecodeConfig, onChunk?: (images: number) => void): string[] {
  if (embeddings.length === 0) return [];
  const { model, tokenizer } = run;
  const dim = run.config.encoder.dim;
  const stops = stopIds(tokenizer);
  const base = { maxNewTokens: opts.maxNewTokens, eosId: tokenizer.eosId, stopIds: stops };
  const out: string[] = [];
  const chunk = opts.beam <= 1 ? GREEDY_CHUNK : BEAM_CHUNK;
  // the contrast prefix: the mapper on the zero embedding (the centre of the training embeddings)
  const weight = opts.beam > 1 ? opts.contrastWeight ?? 0 : 0;
  const mbr = opts.mbrSamples ?? 0;
  const sampleWeight = mbr > 0 ? opts.mbrContrast ?? 0 : 0;
  const contrastPrefix = weight > 0 || sampleWeight > 0 ? tf.tidy(() => model.prefix(tf.zeros([1, dim]) as tf.Tensor2D)) : null;
  try {
    for (let i = 0; i < embeddings.length; i += chunk) {
      const part = embeddings.slice(i, i + chunk);
      const data = new Float32Array(part.length * dim);
      part.forEach((e, j) => {
        if (e.length !== dim) throw new Error(`embedding ${i + j} has ${e.length} values; the run's encoder gives ${dim}`);
        data.set(e, j * dim);
      });
      const prefix = tf.tidy(() => model.prefix(tf.tensor2d(data, [part.length, dim])));
      try {
        const beamOpts = { ...base, beamSize: opts.beam, noRepeatNgram: opts.noRepeatNgram ?? 0, lengthPenalty: opts.lengthPenalty ?? 1, ...(contrastPrefix && weight > 0 ? { contrast: { prefix: contrastPrefix, weight } } : {}) };
        // every beam, best first (greedy: one)
        const found = opts.beam <= 1 ? greedy(model.lm, prefix, base).map((ids) => [ids]) : beamSearchBatch(model.lm, prefix, beamOpts).map((beams) => beams.map((b) => b.ids));
        const text = (ids: number[]) => (ids.length ? cleanGenerated(tokenizer.decode(ids)) : ''); // a sequence may end at once (EOS first)
        if (mbr > 0) {
          const drawn = sampleBatch(model.lm, prefix, { ...base, samples: mbr, temperature: opts.mbrTemperature ?? 1, seeds: part.map(embeddingSeed), ...(contrastPrefix && sampleWeight > 0 ? { contrast: { prefix: contrastPrefix, weight: sampleWeight } } : {}) });
          found.forEach((beams, j) => {
            const pool = [...beams, ...drawn[j]].map(text);
            out.push(pool[mbrChoice(pool)]);
          });
        } else for (const beams of found) out.push(text(beams[0]));
      } finally {
        prefix.dispose();
      }
      onChunk?.(part.length);
    }
  } finally {
    contrastPrefix?.dispose();
  }
  return out;
}

/** Messages from a captioning worker process (caption-worker.ts). */
export type CaptionWorkerMessage = { type: 'ready' } | { type: 'result'; seq: number; captions: string[] } | { type: 'error'; message: string };

/** Photos a captioning worker is sent at a time (two BEAM_CHUNKs; two chunks in flight per worker). */
export const WORKER_CHUNK = 2 * BEAM_CHUNK;

/**
 * Caption `embeddings` with the run at `runDir` in `workers` child processes (caption-worker.ts), each
 * loading the run once and captioning chunks of WORKER_CHUNK photos as they are handed out: the same
 * captions as captionEmbeddings in this process (each photo's caption depends only on its embedding).
 */
async function captionInWorkers(runDir: string, embeddings: Float32Array[], decode: DecodeConfig, workers: number, onChunk?: (images: number) => void): Promise<string[]> {
  const chunks: Float32Array[][] = [];
  for (let i = 0; i < embeddings.length; i += WORKER_CHUNK) chunks.push(embeddings.slice(i, i + WORKER_CHUNK));
  const out = new Array<string[]>(chunks.length);
  const children: ChildProcess[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let next = 0;
      let done = 0;
      let failed = false;
      const fail = (e: Error) => {
        if (!failed) (failed = true), reject(e);
      };
      const hand = (child: ChildProcess) => {
        if (failed || next >= chunks.length) return;
        const seq = next++;
        child.send({ type: 'chunk', seq, embeddings: chunks[seq] });
      };
      for (let w = 0; w < Math.min(workers, chunks.length); w++) {
        const child = fork(path.join(__dirname, 'caption-worker.ts'), [], {
          execArgv: ['--import', tsxImportUrl()],
          serialization: 'advanced',
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          env: settings().childEnv({ set: { CLIPCAP_QUIET_BACKEND: '1', CLIPCAP_TRAIN_THREADS: '1' }, unlessSet: { CLIPCAP_ORT_THREADS: '1' } }),
        });
        children.push(child);
        child.on('error', (e) => fail(new Error(`could not start a captioning worker: ${e.message}`)));
        child.on('message', (m: CaptionWorkerMessage) => {
          if (m.type === 'ready') {
            hand(child);
            hand(child);
          } else if (m.type === 'result') {
            out[m.seq] = m.captions;
            onChunk?.(m.captions.length);
            if (++done === chunks.length) resolve();
            else hand(child);
          } else fail(new Error(`captioning worker ${child.pid}: ${m.message}`));
        });
        child.on('exit', (code) => {
          if (done < chunks.length) fail(new Error(`captioning worker ${child.pid} exited (code ${code}) before the captions were done`));
        });
        child.send({ type: 'init', runDir, decode });
      }
    });
  } finally {
    for (const c of children) if (c.connected) c.disconnect();
  }
  return out.flat();
}

/**
 * Caption photos (by id) with the trained run at `runDir`: load it, take each photo's embedding from
 * `opts.embeddings` (default: the embeddings the run was trained on), caption, and release the model.
 * The one path from a run to captions for dev scoring, notebook samples and the evaluation. With
 * `workers` above 1 (default: captionWorkers), child processes caption the photos, the same captions.
 */
export async function captionWithRun(
  runDir: string,
  imageIds: readonly string[],
  decode: DecodeConfig,
  opts: { embeddings?: (id: string) => Float32Array; onChunk?: (images: number) => void; workers?: number } = {},
): Promise<Map<string, string>> {
  const run = await loadRun(runDir);
  let embeddings: Float32Array[];
  let workers: number;
  try {
    let get = opts.embeddings;
    if (!get) {
      const set = openEmbeddingsOfRun(run.config);
      get = (id) => set.get(id);
    }
    embeddings = imageIds.map((id) => get!(id));
    const dim = run.config.encoder.dim;
    embeddings.forEach((e, i) => {
      if (e.length !== dim) throw new Error(`embedding ${i} has ${e.length} values; the run's encoder gives ${dim}`);
    });
    workers = opts.workers ?? captionWorkers(imageIds.length, tf.getBackend());
    if (workers <= 1) {
      const caps = captionEmbeddings(run, embeddings, decode, opts.onChunk);
      return new Map(imageIds.map((id, i) => [id, caps[i]]));
    }
  } finally {
    run.dispose();
  }
  const caps = await captionInWorkers(runDir, embeddings, decode, workers, opts.onChunk);
  return new Map(imageIds.map((id, i) => [id, caps[i]]));
}

/** One file's caption, or why it has none (Captioner: image files end to end, through the run's encoder). */
export type CaptionResult = { file: string; caption: string; error?: undefined } | { file: string; caption?: undefined; error: string };

export class Captioner {
  private constructor(
    readonly run: LoadedRun,
    private readonly encoder: ImageEncoder,
    private readonly center: CenterFile | null,
  ) {}

  static async open(runDir: string): Promise<Captioner> {
    const run = await loadRun(runDir);
    try {
      const profile = run.config.profile;
      const encoder = await createEncoder(run.config.encoder.config, { models: artifactPaths(profile).models });
      let center: CenterFile | null = null;
      if (encoder.postprocess.kind === 'center-l2') {
        const dir = path.isAbsolute(run.config.encoder.embeddingsDir) ? run.config.encoder.embeddingsDir : path.join(repoRoot(), run.config.encoder.embeddingsDir);
        const file = path.join(dir, CENTER_FILE);
        if (!fs.existsSync(file)) throw new Error(`${file} is missing: the ${encoder.name} embeddings of this run need the centring means fitted by notebook 02`);
        center = readJson<CenterFile>(file);
      }
      return new Captioner(run, encoder, center);
    } catch (e) {
      run.dispose();
      throw e;
    }
  }

  /**
   * Caption each file; a file that cannot be read (missing, a directory, not an image, damaged) gets
   * an `error` naming the file and the problem instead of a caption, and the others are captioned.
   */
  async caption(files: string[], opts: DecodeConfig): Promise<CaptionResult[]> {
    const out: CaptionResult[] = [];
    for (const file of files) {
      const problem = !fs.existsSync(file) ? 'no such file' : fs.statSync(file).isDirectory() ? 'is a directory, not an image file' : null;
      if (problem) {
        out.push({ file, error: `${file}: ${problem}` });
        continue;
      }
      let raw: Float32Array;
      try {
        [raw] = await this.encoder.embed([file]);
      } catch (e) {
        out.push({ file, error: `${file}: cannot be read as an image (${(e as Error).message.split('\n')[0]})` });
        continue;
      }
      const emb = this.center ? centerL2(raw, this.center) : raw;
      out.push({ file, caption: captionEmbeddings(this.run, [emb], opts)[0] });
    }
    return out;
  }

  async dispose(): Promise<void> {
    await this.encoder.dispose();
    this.run.dispose();
  }
}
