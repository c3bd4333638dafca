// Training a ClipCap variant: everything from the profile's artifacts (subsets, embeddings, language
// model) to a trained run under data/<profile>/runs/<name>@<hash>/ (written through src/lib/run/).
import * as fs from 'fs';
import * as path from 'path';
import { ensureBackend } from '../tfjs/backend';
import { ClipCapModel } from '../model/clipcap';
import { buildExamples, clipCapTask } from './examples';
import type { LoopConfig, ProfileConfig, TrainConfig } from '../config';
import { loadSubsets } from '../data/build';
import { subsetIdentity } from '../data/subset';
import { frameRows } from '../data/schema';
import { openEmbeddings } from '../embed/open';
import { writeJsonAtomic } from '../util/files';
import { loadLanguageModel, type LanguageModel } from '../model/gpt2-hf';
import { type GPT2Config } from '../model/gpt2';
import { createMapper, defaultMapperConfig, type MapperConfig } from '../model/mapper';
import { pretrainedLMDir, runDirectory } from '../paths';
import { runTraining, stepsPerEpoch, type RunOptions } from './loop';
import { weightsFingerprint } from '../io/weights';
import { ConfigError, validateProfile, validateTrain } from '../validate';
import { chooseMicroBatch } from './memory';
import { runFiles } from '../run/files';
import { hashedRunDir, isComplete, linkLatest, loadRunWeights, readRunConfig, readRunSummary, repoRelative, sameExperiment, saveRunWeights, type RunConfig, type RunSummary } from '../run/run';

/** The language model of a profile: a hub id / directory, or the locally pretrained one. */
export function lmSource(profile: ProfileConfig): string {
  return profile.lm.source === 'hub' ? profile.lm.modelId : pretrainedLMDir(profile);
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
    ...(train.shards !== undefined && train.shards !== 1 ? { shards: train.shards } : {}),
    lr: train.lr,
    warmupSteps: train.warmupFraction > 0 ? Math.round(train.warmupFraction * train.epochs * stepsPerEpoch(numTrain, train.batchSize, true)) : train.warmupSteps,
    weightDecay: train.weightDecay,
    eps: train.adamEps,
    gradClip: train.gradClip,
    seed: train.seed,
    checkpointEverySteps: train.checkpointEverySteps,
    maxSteps: train.maxSteps,
    divergenceFactor: train.divergenceFactor,
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
  const latest = runDirectory(profile, train.name);

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
    if (trainRows.length === 0) throw new Error(`no training examples: the training subset in ${subsets.dir} is empty; rerun notebook 01 with fewer evaluation photos (data.evalImages) or more data`);
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
      encoder: { name: emb.encoder, embeddingsDir: repoRelative(emb.dir), dim: emb.dim, config: profile.encoder, fingerprint: emb.fingerprint },
      lm: {
        source: repoRelative(lmSource(profile)),
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
        subsetsDir: repoRelative(subsets.dir),
        identity: subsetIdentity(subsets),
        ...(profile.data.source === 'custom' && profile.data.custom ? { dataset: { name: path.basename(profile.data.custom), folder: profile.data.custom } } : {}),
      },
      backend: backend.name,
      createdAt: new Date().toISOString(),
    };
    const runDir = hashedRunDir(profile, config);
    const files = runFiles(runDir);
    fs.mkdirSync(runDir, { recursive: true });
    const old = readRunConfig(runDir);
    if (old) {
      if (!sameExperiment(old, config)) {
        throw new Error(`run directory ${runDir} holds a run with a different configuration (a hash collision?); delete that directory`);
      }
      if (isComplete(runDir)) {
        linkLatest(latest, runDir);
        return { runDir, config: old, summary: readRunSummary(runDir)! };
      }
      config.createdAt = old.createdAt;
    }
    writeJsonAtomic(files.config, config);

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
      await saveRunWeights(m, files.final.dir);
      writeJsonAtomic(files.summary, result);
      linkLatest(latest, runDir);
    }
    return { runDir, config, summary: result };
  } finally {
    if (model) model.mapper.dispose();
    lm.model.dispose();
  }
}
