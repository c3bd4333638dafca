// A ClipCap training run: everything from the profile's artifacts (subsets, embeddings, language
// model) to a trained model under data/<profile>/runs/<name>/, and back (loadRun) for captioning.
//
// The run directory holds:
//   config.json   the full configuration (profile, encoder, language model, mapper, hyperparameters,
//                 backend, data sizes) -- enough to load the model again for captioning
//   steps.jsonl, epochs.jsonl, checkpoint/    written by the training loop (train.ts)
//   final/        mapper.safetensors, and lm/ (HF layout) when GPT-2 was fine-tuned
//   summary.json  final losses and timings
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { ensureBackend } from '../tfjs/backend';
import { ClipCapModel } from '../model/clipcap';
import { buildExamples, clipCapTask } from './examples';
import type { ProfileConfig, TrainConfig } from '../config';
import { loadSubsets } from '../data/build';
import { frameRows } from '../data/schema';
import { EmbeddingSet } from '../embed/embedding-set';
import { encoderName } from '../embed/encoders/index';
import { readJson, writeJsonAtomic } from '../util/files';
import { loadLanguageModel, saveGPT2, weightsFromSafetensors, type LanguageModel } from '../model/gpt2-hf';
import { type GPT2Config } from '../model/gpt2';
import { createMapper, defaultMapperConfig, type MapperConfig } from '../model/mapper';
import { artifactPaths, encoderDir, pretrainedLMDir, repoRoot, runDirectory } from '../paths';
import type { Tokenizer } from '../model/tokenizer';
import { runTraining, stepsPerEpoch, type LoopConfig, type RunOptions, type TrainSummary } from './loop';
import { loadSafetensorsTensors, saveSafetensorsFile, weightsFingerprint } from '../io/weights';
import { ConfigError, validateProfile, validateTrain } from '../validate';
import { chooseMicroBatch } from './memory';

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
  data: { trainExamples: number; valExamples: number; trainImages: number; valImages: number; skippedNoEmbedding: number; subsetsDir: string };
  backend: string;
  createdAt: string;
}

export interface RunSummary extends TrainSummary {
  name: string;
  finishedAt: string;
}

/** The language model of a profile: a hub id / directory, or the locally pretrained one. */
export function lmSource(profile: ProfileConfig): string {
  return profile.lm.source === 'hub' ? profile.lm.modelId : pretrainedLMDir(profile.name);
}

function rel(p: string): string {
  const r = path.relative(repoRoot(), p);
  return r.startsWith('..') || path.isAbsolute(r) ? p : r;
}

function abs(p: string): string {
  return path.isAbsolute(p) || !fs.existsSync(path.join(repoRoot(), p)) ? p : path.join(repoRoot(), p);
}

/** The embedding set of a profile's encoder (all its datasets). */
export function openEmbeddings(profile: ProfileConfig): EmbeddingSet {
  return EmbeddingSet.open(encoderDir(artifactPaths(profile.name).embeddings, encoderName(profile.encoder)));
}

/** The embedding set a run was trained on. */
export function openEmbeddingsOfRun(config: RunConfig): EmbeddingSet {
  const set = EmbeddingSet.open(abs(config.encoder.embeddingsDir));
  if (config.encoder.fingerprint && set.fingerprint !== config.encoder.fingerprint) {
    throw new Error(
      `the run ${config.name} was trained on embeddings ${config.encoder.fingerprint} (${config.encoder.name}), but ${config.encoder.embeddingsDir} now holds ${set.fingerprint} ` +
        '(extracted again with other encoder settings, or re-centred): the mapper does not fit them. Retrain the run (rerun notebook 03 or 04), or restore those embeddings.',
    );
  }
  return set;
}

/** The mapper configuration of a variant for an encoder and language model. */
export function mapperConfigFor(train: TrainConfig, inputDim: number, lmConfig: GPT2Config): MapperConfig {
  return defaultMapperConfig({
    kind: train.mapper,
    inputDim,
    embedDim: lmConfig.nEmbd,
    prefixLength: train.prefixLength,
    clipLength: train.clipLength,
    numLayers: train.numLayers,
    numHeads: train.numHeads,
  });
}

/** Fields whose change makes an existing run directory a different experiment. */
/** What makes two runs the same experiment (the run name aside): hyperparameters, model, LM weights, data. */
function experimentKey(c: RunConfig): string {
  return JSON.stringify({
    // the examples per pass actually used ('auto' resolved): they change the sums' rounding
    train: { ...c.train, name: '', maxSteps: 0, checkpointEverySteps: 0, microBatchSize: c.loop.microBatchSize },
    mapper: c.mapper,
    encoder: c.encoder.name,
    lm: c.lm.source,
    lmFingerprint: c.lm.fingerprint ?? null,
    data: c.data.trainExamples,
  });
}

/**
 * The directory of a run: runs/<name>@<8 hex digits of its experiment key>, so that a run with other
 * hyperparameters (or another language model) is a new run, and rerunning the same one resumes or
 * reuses it. runs/<name> is a link to the latest of them that training reached (see linkLatest).
 */
function hashedRunDir(profile: string, c: RunConfig): string {
  const h = crypto.createHash('sha256').update(experimentKey(c)).digest('hex').slice(0, 8);
  return `${runDirectory(profile, c.name)}@${h}`;
}

/** Point runs/<name> at `dir` (a relative symbolic link, replaced atomically). */
function linkLatest(link: string, dir: string): void {
  if (fs.existsSync(link) && !fs.lstatSync(link).isSymbolicLink()) {
    // a run directory of an earlier version of this code: keep it, under a name of its own
    fs.renameSync(link, `${link}@earlier-${fs.statSync(link).mtimeMs.toFixed(0)}`);
  }
  const tmp = `${link}.tmp-${process.pid}`;
  fs.rmSync(tmp, { force: true });
  fs.symlinkSync(path.basename(dir), tmp);
  fs.renameSync(tmp, link);
}

export interface TrainVariantOptions {
  profile: ProfileConfig;
  train: TrainConfig;
  /** Examples per forward/backward pass (0 = the whole batch, 'auto' = what the backend's memory holds); default: train.microBatchSize. */
  microBatchSize?: number | 'auto';
  run?: RunOptions;
}

export interface TrainVariantResult {
  runDir: string;
  config: RunConfig;
  summary: RunSummary;
}

async function loadLM(profile: ProfileConfig): Promise<LanguageModel> {
  const src = lmSource(profile);
  if (profile.lm.source !== 'hub' && !fs.existsSync(path.join(src, 'config.json'))) {
    throw new Error(`no pretrained language model at ${src}: run notebook 02b_pretrain_lm first`);
  }
  return loadLanguageModel(src, { progress: true });
}

/**
 * The training loop's settings of a variant: the warm-up as a fraction of all steps when
 * warmupFraction > 0, parameter groups for a fine-tuned GPT-2, the examples per pass decided by
 * chooseMicroBatch (train/memory.ts).
 */
export function loopConfigFor(train: TrainConfig, numTrain: number, microBatchSize: number): LoopConfig {
  return {
    epochs: train.epochs,
    batchSize: train.batchSize,
    microBatchSize,
    lr: train.lr,
    warmupSteps: train.warmupFraction > 0 ? Math.round(train.warmupFraction * train.epochs * stepsPerEpoch(numTrain, train.batchSize, true)) : train.warmupSteps,
    weightDecay: train.weightDecay,
    eps: train.adamEps,
    gradClip: train.gradClip,
    seed: train.seed,
    checkpointEverySteps: train.checkpointEverySteps,
    maxSteps: train.maxSteps,
    dropLast: true,
    bucketByLength: true,
    ...(train.finetuneLM && train.lmLrScale !== 1 ? { lrScales: { 'lm.': train.lmLrScale } } : {}),
  };
}

/** Train one ClipCap variant (or resume it, or return the finished run). */
export async function trainVariant(opts: TrainVariantOptions): Promise<TrainVariantResult> {
  const { profile, train } = opts;
  validateProfile(profile);
  validateTrain(train, train.mapper === 'transformer' ? 'transformer' : 'mlp');
  if (opts.microBatchSize !== undefined && opts.microBatchSize !== 'auto' && !(Number.isInteger(opts.microBatchSize) && opts.microBatchSize >= 0)) {
    throw new ConfigError([`microBatchSize = ${opts.microBatchSize}: must be 'auto' or a whole number >= 0 (0 = the whole batch in one pass)`]);
  }
  const backend = await ensureBackend();
  const latest = runDirectory(profile.name, train.name);

  const subsets = loadSubsets(profile);
  const emb = openEmbeddings(profile);
  const lm = await loadLM(profile);
  const { tokenizer } = lm;
  let model: ClipCapModel | null = null;
  try {
    const trainRows = frameRows(subsets.train);
    const valRows = frameRows(subsets.val);
    const tr = buildExamples(trainRows, emb, tokenizer, train.maxCaptionTokens);
    const va = buildExamples(valRows, emb, tokenizer, train.maxCaptionTokens);
    if (tr.examples.length === 0) throw new Error(`no training examples: none of the ${trainRows.length} training captions has an image embedding (run notebook 02)`);
    const mapperCfg = mapperConfigFor(train, emb.dim, lm.model.config);
    if (train.prefixLength + train.maxCaptionTokens > lm.model.config.nPositions) {
      throw new Error(`prefix ${train.prefixLength} + caption ${train.maxCaptionTokens} tokens exceed the language model's ${lm.model.config.nPositions} positions`);
    }
    const passes = chooseMicroBatch({ ...train, microBatchSize: opts.microBatchSize ?? train.microBatchSize }, lm.model.config, emb.dim, backend.name);
    console.log(`[clipcap] examples per pass: ${passes.why}`);
    const loop = loopConfigFor(train, tr.examples.length, passes.microBatchSize);
    const config: RunConfig = {
      format: 'clipcap-run/1',
      profile: profile.name,
      name: train.name,
      train,
      loop,
      mapper: mapperCfg,
      encoder: { name: emb.encoder, embeddingsDir: rel(emb.dir), dim: emb.dim, config: profile.encoder, fingerprint: emb.fingerprint },
      lm: {
        source: rel(lmSource(profile)),
        config: lm.model.config,
        vocabSize: tokenizer.vocabSize,
        restrictedVocab: profile.lm.source !== 'hub' && profile.lm.restrictVocab,
        fingerprint: weightsFingerprint(lm.model.namedWeights()),
      },
      data: {
        trainExamples: tr.examples.length,
        valExamples: va.examples.length,
        trainImages: new Set(tr.examples.map((e) => e.imageId)).size,
        valImages: new Set(va.examples.map((e) => e.imageId)).size,
        skippedNoEmbedding: tr.skipped + va.skipped,
        subsetsDir: rel(subsets.dir),
      },
      backend: backend.name,
      createdAt: new Date().toISOString(),
    };
    const runDir = hashedRunDir(profile.name, config);
    const finalDir = path.join(runDir, 'final');
    const summaryFile = path.join(runDir, 'summary.json');
    fs.mkdirSync(runDir, { recursive: true });
    const cfgFile = path.join(runDir, 'config.json');
    if (fs.existsSync(cfgFile)) {
      const old = readJson<RunConfig>(cfgFile);
      if (experimentKey(old) !== experimentKey(config)) {
        throw new Error(`run directory ${runDir} holds a run with a different configuration (a hash collision?); delete that directory`);
      }
      if (fs.existsSync(summaryFile) && fs.existsSync(finalDir) && readJson<RunSummary>(summaryFile).completed) {
        linkLatest(latest, runDir);
        return { runDir, config: old, summary: readJson<RunSummary>(summaryFile) };
      }
      config.createdAt = old.createdAt;
    }
    writeJsonAtomic(cfgFile, config);

    const mapper = createMapper(mapperCfg, train.seed);
    model = new ClipCapModel(lm.model, mapper, train.finetuneLM);
    const m = model;
    const task = clipCapTask(m, tr.examples, va.examples, {
      saveWeights: async (dir) => saveRunWeights(m, dir),
      loadWeights: async (dir) => loadRunWeights(m, dir),
    });
    const label = `${train.name} (${train.mapper}${train.finetuneLM ? ' + fine-tuned' : ' + frozen'} GPT-2)`;
    const summary = await runTraining(task, loop, runDir, { label, ...opts.run });
    const result: RunSummary = { ...summary, name: train.name, finishedAt: new Date().toISOString() };
    if (summary.completed || train.maxSteps > 0) {
      await saveRunWeights(m, finalDir);
      writeJsonAtomic(summaryFile, result);
      linkLatest(latest, runDir);
    }
    return { runDir, config, summary: result };
  } finally {
    if (model) model.mapper.dispose();
    lm.model.dispose();
  }
}

/** Save the trained weights of a ClipCap model (mapper; GPT-2 too when fine-tuned). */
export async function saveRunWeights(model: ClipCapModel, dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const sd = model.mapper.stateDict();
  try {
    saveSafetensorsFile(path.join(dir, 'mapper.safetensors'), sd, { format: 'pt', kind: model.mapper.config.kind });
  } finally {
    for (const t of sd.values()) t.dispose();
  }
  if (model.finetuneLM) await saveGPT2(model.lm, path.join(dir, 'lm'));
}

/** Load weights saved by saveRunWeights into a model of the same configuration. */
export async function loadRunWeights(model: ClipCapModel, dir: string): Promise<void> {
  const sd = loadSafetensorsTensors(path.join(dir, 'mapper.safetensors'));
  try {
    model.mapper.loadStateDict(sd);
  } finally {
    for (const t of sd.values()) t.dispose();
  }
  if (model.finetuneLM) {
    // Straight into the existing variables (no second GPT-2 on the heap); shapes checked against the model's config.
    const file = path.join(dir, 'lm', 'model.safetensors');
    const tuned = weightsFromSafetensors(new Uint8Array(fs.readFileSync(file)), model.lm.config, file);
    try {
      for (const [name, v] of model.lm.namedWeights()) v.assign(tuned.get(name)!);
    } finally {
      for (const t of tuned.values()) t.dispose();
    }
  }
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
  const cfgFile = path.join(runDir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new Error(`${runDir} is not a ClipCap run (no config.json); runs live under data/<profile>/runs/<name>`);
  const config = readJson<RunConfig>(cfgFile);
  if (config.format !== 'clipcap-run/1') throw new Error(`${cfgFile}: unknown run format ${String(config.format)}`);
  const weightsDir = opts.checkpoint ? path.join(runDir, 'checkpoint', 'weights') : path.join(runDir, 'final');
  if (!fs.existsSync(path.join(weightsDir, 'mapper.safetensors'))) {
    throw new Error(`${runDir} has no ${opts.checkpoint ? 'checkpoint' : 'final weights'} yet: finish its training first (notebook 03 or 04)`);
  }
  await ensureBackend({ quiet: true });
  const lm = await loadLanguageModel(abs(config.lm.source));
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
  await loadRunWeights(model, weightsDir);
  model.lm.setTrainable(false);
  const summaryFile = path.join(runDir, 'summary.json');
  return {
    runDir,
    config,
    model,
    tokenizer: lm.tokenizer,
    summary: fs.existsSync(summaryFile) ? readJson<RunSummary>(summaryFile) : null,
    dispose: () => {
      mapper.dispose();
      lm.model.dispose();
    },
  };
}
