// Offline language model: a small GPT-2 trained here on caption text, because no real GPT-2 weights
// exist on machines without the hub. Same model code and training loop as ClipCap, the real GPT-2
// tokenizer, and (optionally) a vocabulary restricted to the token ids seen in the corpus so that
// the LM head is small.
//
// Each caption becomes one sequence: <|endoftext|> caption <|endoftext|>; the first token plays the
// part of a beginning-of-text marker and the loss covers every caption token and the final EOS. With
// lmPretrain.captionsPerSequence above 1, the captions of one photo are packed into one sequence
// (<|endoftext|> caption <|endoftext|> caption ... <|endoftext|>, packCaptionGroups), so that the LM
// learns to continue text that precedes a caption, as GPT-2 does within a document.
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import type { GPT2Arch, LMPretrainConfig } from '../config';
import { writeJsonAtomic, readJson } from '../util/files';
import { GPT2, type GPT2Config } from '../model/gpt2';
import { loadLanguageModel, saveLanguageModel, type LanguageModel } from '../model/gpt2-hf';
import { padBatch } from './examples';
import { formatCaption } from '../model/text';
import { loadTokenizer, restrictTokenizer, RestrictedVocab, type Tokenizer } from '../model/tokenizer';
import { epochPermutation, runTraining, type RunOptions } from './loop';
import { REPLICA_WEIGHT_IO, type TrainTask } from './task';
import { DEFAULT_DIVERGENCE_FACTOR, type LoopConfig } from '../config';
import type { TrainSummary } from '../run/logs';
import { runFiles } from '../run/files';
import { saveSafetensorsFile, loadSafetensorsInto } from '../io/weights';
import { ConfigError, lmPretrainProblems } from '../validate';

export interface PretrainResult {
  /** Directory of the trained model (HF layout + tokenizer files + vocab_map.json). */
  modelDir: string;
  runDir: string;
  summary: TrainSummary;
  corpus: { corpusCaptions: number; captions: number; trainSequences: number; valSequences: number; tokens: number; vocabSize: number; droppedEmpty: number; droppedRareTokens: number };
  config: GPT2Config;
}

/**
 * Pack token sequences into training sequences: the captions of one group (a photo) in their order,
 * at most `perSequence` of them and at most `maxLength` tokens a sequence, EOS between two captions;
 * groups in the order of their first caption. perSequence 1 gives the captions unchanged.
 */
export function packCaptionGroups(seqs: number[][], groups: string[], opts: { perSequence: number; maxLength: number; eosId: number }): number[][] {
  if (groups.length !== seqs.length) throw new Error(`packCaptionGroups: ${seqs.length} captions but ${groups.length} groups`);
  if (opts.perSequence <= 1) return seqs;
  const byGroup = new Map<string, number[][]>();
  seqs.forEach((s, i) => {
    if (s.length > opts.maxLength) throw new Error(`packCaptionGroups: a caption of ${s.length} tokens exceeds the longest sequence, ${opts.maxLength}`);
    const g = byGroup.get(groups[i]);
    if (g) g.push(s);
    else byGroup.set(groups[i], [s]);
  });
  const out: number[][] = [];
  for (const captions of byGroup.values()) {
    let cur: number[] = [];
    let n = 0;
    for (const c of captions) {
      if (n > 0 && (n === opts.perSequence || cur.length + 1 + c.length > opts.maxLength)) {
        out.push(cur);
        cur = [];
        n = 0;
      }
      cur = n === 0 ? [...c] : [...cur, opts.eosId, ...c];
      n++;
    }
    if (n > 0) out.push(cur);
  }
  return out;
}

/** Split indices 0..n-1 into train / val by a seeded permutation. */
export function splitIndices(n: number, valFraction: number, seed: number): { train: number[]; val: number[] } {
  const p = epochPermutation(n, seed, 1_000_000);
  const nVal = Math.min(n - 1, Math.round(n * valFraction));
  return { val: p.slice(0, nVal).sort((a, b) => a - b), train: p.slice(nVal).sort((a, b) => a - b) };
}

/** A TrainTask for next-token prediction on token sequences (each starts with EOS as BOS). */
export function lmTask(model: GPT2, train: number[][], val: number[][], eosId: number, io: Pick<TrainTask, 'saveWeights' | 'loadWeights'>): TrainTask {
  const pick = (split: 'train' | 'val', idx: number[]) => idx.map((i) => (split === 'train' ? train : val)[i]);
  return {
    replica: () => ({ module: __filename, exportName: 'lmTaskReplica', data: { config: model.config, train, val, eosId } satisfies LMReplicaData }),
    numTrain: train.length,
    numVal: val.length,
    trainable: () => [...model.namedWeights()].map(([name, variable]) => ({ name, variable })),
    lengthOf: (i) => train[i].length,
    // targets: the caption's tokens and the final EOS
    tokenCount: (split, idx) => pick(split, idx).reduce((n, s) => n + s.length + 1, 0),
    lossSum: (split, idx, opts) => {
      const seqs = pick(split, idx);
      // input: EOS then the caption; target: the caption then EOS (same length, padded alike)
      const inp = padBatch(seqs.map((s) => [eosId, ...s]));
      inp.mask.dispose();
      const tgt = padBatch(seqs.map((s) => [...s, eosId]));
      const hidden = model.hidden({ inputIds: inp.ids, training: opts.training, dropoutSeed: opts.seed });
      const [B, T, d] = hidden.shape;
      return tf.mul(model.headLoss(hidden.reshape([B * T, d]), tgt.ids.reshape([B * T]), tgt.mask.reshape([B * T])), tgt.tokens) as tf.Scalar;
    },
    saveWeights: io.saveWeights,
    loadWeights: io.loadWeights,
  };
}

interface LMReplicaData {
  config: GPT2Config;
  train: number[][];
  val: number[][];
  eosId: number;
}

/** lmTask in a worker thread of data-parallel training (TaskReplica): the sequences, weights from the training thread. */
export function lmTaskReplica(data: LMReplicaData): TrainTask {
  const model = new GPT2(data.config, undefined, { seed: 0 });
  return lmTask(model, data.train, data.val, data.eosId, REPLICA_WEIGHT_IO);
}

export interface PretrainOptions {
  arch: GPT2Arch;
  cfg: LMPretrainConfig;
  /** Caption texts (already free of the evaluation images' captions). */
  texts: string[];
  /** The photo of each text (CorpusRecord.group): needed when cfg.captionsPerSequence is above 1. */
  groups?: string[];
  restrictVocab: boolean;
  /** Final model directory. */
  modelDir: string;
  /** Training run directory (logs, checkpoints). */
  runDir: string;
  /** Tokenizer to start from (default: GPT-2's BPE). */
  tokenizer?: Tokenizer;
  /** Micro-batch size for memory (0 = whole batch). */
  microBatchSize?: number;
  /** Stop after this many steps (0 = all epochs). */
  maxSteps?: number;
  run?: RunOptions;
}

const DONE = 'pretrain.json';

/**
 * Pretrain (or resume, or reuse) the small caption language model. A finished model directory is
 * reused as it is; a killed run resumes from its checkpoint.
 */
export async function pretrainLM(opts: PretrainOptions): Promise<PretrainResult> {
  const problems = lmPretrainProblems(opts.cfg);
  if (problems.length) throw new ConfigError(problems);
  const settings = { arch: opts.arch, pretrain: opts.cfg, restrictVocab: opts.restrictVocab };
  const sameSettings = (old: { arch?: unknown; pretrain?: unknown; restrictVocab?: unknown }, file: string, what: string) => {
    const was = { arch: old.arch, pretrain: old.pretrain, restrictVocab: old.restrictVocab };
    if (JSON.stringify(was) !== JSON.stringify(settings)) {
      throw new Error(
        `${what} was made with other settings (${file}: ${JSON.stringify(was)}; asked now: ${JSON.stringify(settings)}). ` +
          `To pretrain again with the new settings, delete ${opts.modelDir} and ${opts.runDir} (ClipCap runs trained on the old model are then refused when loaded, and retrained when their notebook runs again); to keep the old model, restore its settings.`,
      );
    }
  };
  const doneFile = path.join(opts.modelDir, DONE);
  if (fs.existsSync(doneFile)) {
    const done = readJson<PretrainResult & { settings?: typeof settings }>(doneFile);
    if (done.settings) sameSettings(done.settings, doneFile, `the pretrained language model in ${opts.modelDir}`);
    return done;
  }
  // A killed run resumes only with the settings it started with.
  if (fs.existsSync(runFiles(opts.runDir).config)) {
    const file = runFiles(opts.runDir).config;
    sameSettings(readJson(file), file, `the interrupted LM pretraining in ${opts.runDir}`);
  }

  const base = opts.tokenizer ?? (await loadTokenizer());
  if (opts.cfg.maxTokens + 1 > opts.arch.nPositions) {
    throw new Error(`maxTokens ${opts.cfg.maxTokens} + 1 exceeds the model's n_positions ${opts.arch.nPositions}`);
  }
  const perSequence = opts.cfg.captionsPerSequence ?? 1;
  if (perSequence > 1 && opts.groups?.length !== opts.texts.length) {
    throw new Error(`lmPretrain.captionsPerSequence ${perSequence} packs the captions of a photo together: pass the photo of each caption (groups, ${opts.groups?.length ?? 0} given for ${opts.texts.length} captions), or set it to 1`);
  }
  // Every caption is tokenized (the vocabulary comes from the whole corpus); training uses a seeded
  // sample of them when the corpus is larger than the budget allows (maxCaptions).
  const all = opts.texts.map((t, i) => {
    const f = formatCaption(t);
    return { tokens: f ? base.encode(f).slice(0, opts.cfg.maxTokens) : [], group: opts.groups?.[i] ?? String(i) };
  });
  const nonEmptyAll = all.filter((s) => s.tokens.length > 0);
  const droppedEmpty = all.length - nonEmptyAll.length;
  if (nonEmptyAll.length < 2) throw new Error(`the caption corpus has ${nonEmptyAll.length} usable captions; at least 2 are needed`);
  let vocab: RestrictedVocab | null = null;
  let droppedTokens = 0;
  if (opts.restrictVocab) {
    const counts = new Map<number, number>();
    for (const s of nonEmptyAll) for (const id of s.tokens) counts.set(id, (counts.get(id) ?? 0) + 1);
    const keep = [...counts].filter(([, c]) => c >= Math.max(1, opts.cfg.minTokenCount)).map(([id]) => id);
    vocab = RestrictedVocab.fromCorpus([keep], [base.eosId]);
  }
  const nonEmpty =
    opts.cfg.maxCaptions > 0 && nonEmptyAll.length > opts.cfg.maxCaptions
      ? epochPermutation(nonEmptyAll.length, opts.cfg.seed, 2_000_000)
          .slice(0, opts.cfg.maxCaptions)
          .sort((a, b) => a - b)
          .map((i) => nonEmptyAll[i])
      : nonEmptyAll;
  const v = vocab;
  const tokenizer = v ? restrictTokenizer(base, v) : base;
  const captions = (v ? nonEmpty.map((s) => ({ ...s, tokens: v.toCompact(s.tokens, () => droppedTokens++) })) : nonEmpty).filter((s) => s.tokens.length > 0);
  const seqs = packCaptionGroups(
    captions.map((c) => c.tokens),
    captions.map((c) => c.group),
    { perSequence, maxLength: opts.arch.nPositions - 1, eosId: tokenizer.eosId },
  );
  const { train, val } = splitIndices(seqs.length, opts.cfg.valFraction, opts.cfg.seed);
  const config: GPT2Config = {
    vocabSize: tokenizer.vocabSize,
    nPositions: opts.arch.nPositions,
    nEmbd: opts.arch.nEmbd,
    nLayer: opts.arch.nLayer,
    nHead: opts.arch.nHead,
    layerNormEpsilon: 1e-5,
    activation: 'gelu_new',
    embdPdrop: 0.1,
    residPdrop: 0.1,
    attnPdrop: 0.1,
  };
  const model = new GPT2(config, undefined, { seed: opts.cfg.seed });
  try {
    const task = lmTask(
      model,
      train.map((i) => seqs[i]),
      val.map((i) => seqs[i]),
      tokenizer.eosId,
      {
        saveWeights: async (dir) => saveSafetensorsFile(path.join(dir, 'model.safetensors'), model.namedWeights()),
        loadWeights: async (dir) => loadSafetensorsInto(path.join(dir, 'model.safetensors'), model.namedWeights()),
      },
    );
    const loop: LoopConfig = {
      epochs: opts.cfg.epochs,
      batchSize: opts.cfg.batchSize,
      microBatchSize: opts.microBatchSize ?? 0,
      ...(opts.cfg.shards !== undefined && opts.cfg.shards !== 1 ? { shards: opts.cfg.shards } : {}),
      lr: opts.cfg.lr,
      warmupSteps: opts.cfg.warmupSteps,
      weightDecay: opts.cfg.weightDecay,
      gradClip: 1.0,
      seed: opts.cfg.seed,
      checkpointEverySteps: 200,
      maxSteps: opts.maxSteps ?? 0,
      divergenceFactor: DEFAULT_DIVERGENCE_FACTOR,
      dropLast: false,
      bucketByLength: true,
    };
    writeJsonAtomic(runFiles(opts.runDir).config, { kind: 'lm-pretrain', arch: opts.arch, pretrain: opts.cfg, gpt2: config, loop, restrictVocab: opts.restrictVocab });
    const summary = await runTraining(task, loop, opts.runDir, { label: 'LM pretraining', ...opts.run });
    const result: PretrainResult & { settings: typeof settings } = {
      settings,
      modelDir: opts.modelDir,
      runDir: opts.runDir,
      summary,
      corpus: {
        corpusCaptions: opts.texts.length,
        captions: captions.length,
        trainSequences: train.length,
        valSequences: val.length,
        tokens: seqs.reduce((n, s) => n + s.length + 1, 0),
        vocabSize: tokenizer.vocabSize,
        droppedEmpty,
        droppedRareTokens: droppedTokens,
      },
      config,
    };
    if (!summary.completed && (opts.maxSteps ?? 0) === 0) return result;
    const lm: LanguageModel = { model, tokenizer };
    await saveLanguageModel(lm, opts.modelDir, { [DONE]: JSON.stringify(result, null, 2) + '\n' });
    return result;
  } finally {
    model.dispose();
  }
}

/** Load the pretrained caption LM (model + restricted tokenizer). */
export function loadPretrainedLM(modelDir: string): Promise<LanguageModel> {
  if (!fs.existsSync(path.join(modelDir, DONE))) {
    throw new Error(`no pretrained language model in ${modelDir}: run the LM pretraining notebook (02b_pretrain_lm) first`);
  }
  return loadLanguageModel(modelDir);
}
