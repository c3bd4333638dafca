// A ClipCap run: its configuration (RunConfig), its folder under data/<profile>/runs/ (named by the
// hash of the experiment, with runs/<name> linking to the latest), its weights, and loading it back
// for captioning. Training writes runs only through this module; evaluation, the notebooks, the CLI
// and the scripts read them only through it. The folder's files: run/files.ts.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { LoopConfig, ProfileConfig, TrainConfig } from '../config';
import { ensureBackend } from '../tfjs/backend';
import { loadSafetensorsTensors, saveSafetensorsFile, weightsFingerprint } from '../io/weights';
import { EmbeddingSet } from '../embed/embedding-set';
import { ClipCapModel } from '../model/clipcap';
import { loadLanguageModel, saveGPT2, weightsFromSafetensors } from '../model/gpt2-hf';
import type { GPT2Config } from '../model/gpt2';
import { createMapper, type MapperConfig } from '../model/mapper';
import type { Tokenizer } from '../model/tokenizer';
import { readJson } from '../util/files';
import { repoRoot, runDirectory, runNameProblem, type ArtifactOwner } from '../paths';
import { isRunDir, runFiles, weightFiles } from './files';
import type { TrainSummary } from './logs';

export interface RunConfig {
  format: 'clipcap-run/1';
  profile: string;
  name: string;
  train: TrainConfig;
  loop: LoopConfig;
  mapper: MapperConfig;
  /** `fingerprint`: of the embeddings (EmbeddingSet.fingerprint: encoder signature and centring), checked on load. */
  encoder: { name: string; embeddingsDir: string; dim: number; config: ProfileConfig['encoder']; fingerprint?: string };
  /**
   * The language model the run started from: a hub id, or a directory relative to the repository
   * root; `fingerprint`: the content hash of its weights (io/weights.weightsFingerprint), checked
   * when the run is loaded again.
   */
  lm: { source: string; config: GPT2Config; vocabSize: number; restrictedVocab: boolean; fingerprint?: string };
  /**
   * `identity`: data/subset.subsetIdentity of the training and validation subsets it was trained on
   * (part of the run's key; absent in runs made before it was recorded).
   */
  data: {
    trainExamples: number;
    valExamples: number;
    trainImages: number;
    valImages: number;
    skippedNoEmbedding: number;
    subsetsDir: string;
    identity?: string;
    /** A dataset of your own (CLIPCAP_DATASET): its name and folder; absent for a profile's own data. */
    dataset?: { name: string; folder: string };
  };
  backend: string;
  createdAt: string;
}

export interface RunSummary extends TrainSummary {
  name: string;
  finishedAt: string;
}

/** A path relative to the repository root when it lies inside it (run configs stay portable). */
export function repoRelative(p: string): string {
  const r = path.relative(repoRoot(), p);
  return r.startsWith('..') || path.isAbsolute(r) ? p : r;
}

function fromRepo(p: string): string {
  return path.isAbsolute(p) || !fs.existsSync(path.join(repoRoot(), p)) ? p : path.join(repoRoot(), p);
}

/**
 * What makes two runs the same experiment (the run name aside): hyperparameters, model, LM weights,
 * and the data: which captions it trains and validates on (data.identity), not only how many.
 */
function experimentKey(c: RunConfig): string {
  // settings that never change what is computed stay out of the key (a stopped run is not complete)
  const { divergenceFactor: _stopsOnly, ...train } = c.train as TrainConfig & { divergenceFactor?: number };
  return JSON.stringify({
    // the examples per pass actually used ('auto' resolved): they change the sums' rounding
    train: { ...train, name: '', maxSteps: 0, checkpointEverySteps: 0, microBatchSize: c.loop.microBatchSize },
    mapper: c.mapper,
    encoder: c.encoder.name,
    lm: c.lm.source,
    lmFingerprint: c.lm.fingerprint ?? null,
    data: c.data.trainExamples,
    dataIdentity: c.data.identity ?? null,
  });
}

/**
 * Why a run cannot be evaluated on the current subsets (null when it can): it was trained on another
 * draw of the data than `identity` (the current subsets' subsetIdentity), so its training photos may be
 * among today's evaluation photos. A run made before identities were recorded is not refused.
 */
export function dataDrawProblem(config: RunConfig, identity: string): string | null {
  if (!config.data.identity || config.data.identity === identity) return null;
  return (
    `the run ${config.name} was trained on another draw of the data (${config.data.identity}) than the subsets hold now (${identity}): ` +
    'notebook 01 was run again with other settings, so its training photos may be among the evaluation photos. Rerun notebooks 03 and 04 (they train new runs on the current draw), then this one'
  );
}

/** Do two run configurations describe the same experiment? */
export function sameExperiment(a: RunConfig, b: RunConfig): boolean {
  return experimentKey(a) === experimentKey(b);
}

/**
 * The folder of a run: runs/<name>@<8 hex digits of its experiment key>, so that a run with other
 * hyperparameters (or another language model) is a new run, and rerunning the same one resumes or
 * reuses it. runs/<name> links to the latest of them that training reached (see linkLatest).
 */
export function hashedRunDir(profile: ArtifactOwner, c: RunConfig): string {
  const h = crypto.createHash('sha256').update(experimentKey(c)).digest('hex').slice(0, 8);
  return `${runDirectory(profile, c.name)}@${h}`;
}

/**
 * Point runs/<name> at `dir` (a relative symbolic link, replaced atomically). `link` must be named by a
 * plain run name and `dir` must be one of its run folders beside it (<name>@<hash>). Nothing else is
 * ever moved: an existing link is replaced, a run folder of the older layout (a real folder holding
 * config.json) is kept under a name of its own, and anything else at `link` is refused.
 */
export function linkLatest(link: string, dir: string): void {
  const name = path.basename(link);
  const problem = runNameProblem(name);
  if (problem || path.basename(path.resolve(link)) !== name) throw new Error(`cannot link the latest run at ${link}: run name ${JSON.stringify(name)} ${problem ?? 'is not a plain folder name'}`);
  if (path.resolve(path.dirname(dir)) !== path.resolve(path.dirname(link)) || !path.basename(dir).startsWith(`${name}@`)) {
    throw new Error(`cannot link ${link} to ${dir}: a run's latest link points at one of its own folders beside it (${name}@<hash>), never outside`);
  }
  const st = fs.lstatSync(link, { throwIfNoEntry: false });
  if (st && !st.isSymbolicLink()) {
    if (!st.isDirectory() || !isRunDir(link)) {
      throw new Error(
        `${link} exists and is not a run (no config.json) nor a link to one; training will not move or delete it. ` +
          'Move it away yourself, or give the run another name.',
      );
    }
    // a run directory of an earlier version of this code: keep it, under a name of its own
    fs.renameSync(link, `${link}@earlier-${st.mtimeMs.toFixed(0)}`);
  }
  const tmp = `${link}.tmp-${process.pid}`;
  fs.rmSync(tmp, { force: true });
  fs.symlinkSync(path.basename(dir), tmp);
  fs.renameSync(tmp, link);
}

export function readRunConfig(runDir: string): RunConfig | null {
  const f = runFiles(runDir).config;
  return fs.existsSync(f) ? readJson<RunConfig>(f) : null;
}

export function readRunSummary(runDir: string): RunSummary | null {
  const f = runFiles(runDir).summary;
  return fs.existsSync(f) ? readJson<RunSummary>(f) : null;
}

/** A finished run: its summary says completed and its final weights exist. */
export function isComplete(runDir: string): boolean {
  const s = readRunSummary(runDir);
  return Boolean(s?.completed) && fs.existsSync(runFiles(runDir).final.dir);
}

/** Save the trained weights of a ClipCap model (mapper; GPT-2 too when fine-tuned) into `dir`. */
export async function saveRunWeights(model: ClipCapModel, dir: string): Promise<void> {
  const f = weightFiles(dir);
  fs.mkdirSync(dir, { recursive: true });
  const sd = model.mapper.stateDict();
  try {
    saveSafetensorsFile(f.mapper, sd, { format: 'pt', kind: model.mapper.config.kind });
  } finally {
    for (const t of sd.values()) t.dispose();
  }
  if (model.finetuneLM) await saveGPT2(model.lm, f.lm);
}

/** Load weights saved by saveRunWeights into a model of the same configuration. */
export async function loadRunWeights(model: ClipCapModel, dir: string): Promise<void> {
  const f = weightFiles(dir);
  const sd = loadSafetensorsTensors(f.mapper);
  try {
    model.mapper.loadStateDict(sd);
  } finally {
    for (const t of sd.values()) t.dispose();
  }
  if (model.finetuneLM) {
    // Straight into the existing variables (no second GPT-2 on the heap); shapes checked against the model's config.
    const tuned = weightsFromSafetensors(new Uint8Array(fs.readFileSync(f.lmWeights)), model.lm.config, f.lmWeights);
    try {
      for (const [name, v] of model.lm.namedWeights()) v.assign(tuned.get(name)!);
    } finally {
      for (const t of tuned.values()) t.dispose();
    }
  }
}

/** The embedding set a run was trained on (refused when it was extracted again or re-centred since). */
export function openEmbeddingsOfRun(config: RunConfig): EmbeddingSet {
  const set = EmbeddingSet.open(fromRepo(config.encoder.embeddingsDir));
  if (config.encoder.fingerprint && set.fingerprint !== config.encoder.fingerprint) {
    throw new Error(
      `the run ${config.name} was trained on embeddings ${config.encoder.fingerprint} (${config.encoder.name}), but ${config.encoder.embeddingsDir} now holds ${set.fingerprint} ` +
        '(extracted again with other encoder settings, or re-centred): the mapper does not fit them. Retrain the run (rerun notebook 03 or 04), or restore those embeddings.',
    );
  }
  return set;
}

export interface LoadedRun {
  runDir: string;
  config: RunConfig;
  model: ClipCapModel;
  tokenizer: Tokenizer;
  summary: RunSummary | null;
  dispose(): void;
}

/** Load a trained run (its final weights, or its latest checkpoint with `checkpoint: true`). */
export async function loadRun(runDir: string, opts: { checkpoint?: boolean } = {}): Promise<LoadedRun> {
  const files = runFiles(runDir);
  if (!fs.existsSync(files.config)) throw new Error(`${runDir} is not a ClipCap run (no config.json); runs live under data/<profile>/runs/<name>`);
  const config = readJson<RunConfig>(files.config);
  if (config.format !== 'clipcap-run/1') throw new Error(`${files.config}: unknown run format ${String(config.format)}`);
  const weights = weightFiles(opts.checkpoint ? files.checkpoint.weights : files.final.dir);
  if (!fs.existsSync(weights.mapper)) {
    throw new Error(`${runDir} has no ${opts.checkpoint ? 'checkpoint' : 'final weights'} yet: finish its training first (notebook 03 or 04)`);
  }
  await ensureBackend({ quiet: true });
  const lm = await loadLanguageModel(fromRepo(config.lm.source));
  if (config.lm.fingerprint) {
    const now = weightsFingerprint(lm.model.namedWeights());
    if (now !== config.lm.fingerprint) {
      lm.model.dispose();
      throw new Error(
        `the run ${runDir} was trained on the language model ${config.lm.source} with weights ${config.lm.fingerprint}, but its weights are now ${now} ` +
          '(it was pretrained again or replaced): its prefixes do not fit the new model. Retrain the run (rerun notebook 03 or 04: a new run directory is made), or restore that language model.',
      );
    }
  }
  const mapper = createMapper(config.mapper, config.train.seed);
  const model = new ClipCapModel(lm.model, mapper, config.train.finetuneLM);
  await loadRunWeights(model, weights.dir);
  model.lm.setTrainable(false);
  return {
    runDir,
    config,
    model,
    tokenizer: lm.tokenizer,
    summary: readRunSummary(runDir),
    dispose: () => {
      mapper.dispose();
      lm.model.dispose();
    },
  };
}
