// REPORT.md and the tables the notebooks show, written from run artifacts only.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { variantLabel, type ProfileConfig } from '../config';
import type { ImageGroup } from '../data/schema';
import { escapeHtml, tableMarkdown } from './display';
import type { Evaluation, ProfileEvaluation } from '../eval/evaluate';
import { describeDecode } from '../eval/caption';
import { readJson, writeFileAtomic } from '../util/files';
import { METRIC_NAMES, type Interval } from '../eval/metrics/index';
import { artifactPaths, mirrorDir, pretrainedLMDir, runDirectory } from '../paths';
import { smooth, type EpochLoss, type StepLoss } from './plots';
import { readRunConfig, readRunSummary, type RunConfig, type RunSummary } from '../run/run';
import { readEpochLog, readStepLog } from '../run/logs';

/** Rows describing a finished (or interrupted) run. */
export function describeRun(config: RunConfig, summary: RunSummary): Record<string, unknown>[] {
  const t = config.train;
  return [
    { item: 'variant', value: `${t.mapper} mapper + ${t.finetuneLM ? 'fine-tuned' : 'frozen'} GPT-2` },
    { item: 'language model', value: `${config.lm.source} (${config.lm.config.nLayer} layers, d=${config.lm.config.nEmbd}, vocabulary ${config.lm.vocabSize})` },
    { item: 'encoder', value: `${config.encoder.name} (${config.encoder.dim}-d)` },
    { item: 'train / val examples', value: `${config.data.trainExamples} / ${config.data.valExamples} captions of ${config.data.trainImages} / ${config.data.valImages} images` },
    { item: 'steps', value: `${summary.steps}${summary.completed ? '' : ' (not finished)'}${summary.resumedFromStep ? `, resumed from step ${summary.resumedFromStep}` : ''}` },
    { item: 'final train loss', value: summary.finalTrainLoss ?? '' },
    { item: 'final val loss', value: summary.finalValLoss ?? '' },
    ...(summary.finalValLossShuffled != null && summary.finalValLoss != null
      ? [{ item: 'final val loss, shuffled images (gap)', value: `${summary.finalValLossShuffled.toFixed(4)} (+${(summary.finalValLossShuffled - summary.finalValLoss).toFixed(4)} nats/token)` }]
      : []),
    { item: 'training time (s)', value: summary.trainSeconds },
    { item: 'tokens/s', value: summary.tokensPerSecond },
    { item: 'backend', value: config.backend },
  ];
}

export interface VariantLosses {
  name: string;
  label: string;
  runDir: string;
  steps: StepLoss[];
  epochs: EpochLoss[];
}

/** The loss logs of both variants of a profile (variants without a run are left out). */
export function loadVariantLosses(profile: ProfileConfig): VariantLosses[] {
  const out: VariantLosses[] = [];
  for (const t of [profile.mlp, profile.transformer]) {
    const runDir = runDirectory(profile.name, t.name);
    if (readStepLog(runDir).length === 0) continue;
    const label = variantLabel(t);
    out.push({
      name: t.name,
      label,
      runDir,
      steps: readStepLog(runDir).map((s) => ({ variant: label, step: s.step, epoch: s.epoch, loss: s.loss })),
      epochs: readEpochLog(runDir).flatMap((e) => [
        { variant: label, epoch: e.epoch + 1, split: 'train' as const, loss: e.trainLoss },
        ...(e.valLoss === null ? [] : [{ variant: label, epoch: e.epoch + 1, split: 'val' as const, loss: e.valLoss }]),
        ...(e.valLossShuffled == null ? [] : [{ variant: label, epoch: e.epoch + 1, split: 'val shuffled' as const, loss: e.valLossShuffled }]),
      ]),
    });
  }
  return out;
}

export interface ConvergenceStats {
  variant: string;
  steps: number;
  /** Smoothed train loss at 10%, 25%, 50% of the steps and at the end. */
  at10: number;
  at25: number;
  at50: number;
  final: number;
  /** First step at which the smoothed train loss is within 10% of the run's final smoothed loss. */
  stepsToWithin10pct: number;
  firstEpochVal: number | null;
  finalVal: number | null;
  /** The last epoch's val loss with shuffled images, and the gap to the true images (nats per token). */
  finalValShuffled: number | null;
  imageGap: number | null;
}

/** How fast each variant converges and where it ends (from the step and epoch logs). */
export function convergenceStats(v: VariantLosses, smoothing = 0.9): ConvergenceStats {
  const losses = smooth(
    v.steps.map((s) => s.loss),
    smoothing,
  );
  const n = losses.length;
  const at = (f: number) => (n ? losses[Math.min(n - 1, Math.max(0, Math.round(f * n) - 1))] : NaN);
  const final = n ? losses[n - 1] : NaN;
  const within = losses.findIndex((l) => l <= final * 1.1);
  const vals = v.epochs.filter((e) => e.split === 'val');
  const shuffled = v.epochs.filter((e) => e.split === 'val shuffled');
  const lastShuffled = shuffled.length ? shuffled[shuffled.length - 1] : null;
  const lastVal = vals.length ? vals[vals.length - 1] : null;
  return {
    variant: v.label,
    steps: n,
    at10: at(0.1),
    at25: at(0.25),
    at50: at(0.5),
    final,
    stepsToWithin10pct: within < 0 ? n : within + 1,
    firstEpochVal: vals.length ? vals[0].loss : null,
    finalVal: lastVal ? lastVal.loss : null,
    finalValShuffled: lastShuffled ? lastShuffled.loss : null,
    imageGap: lastShuffled && lastVal && lastShuffled.epoch === lastVal.epoch ? lastShuffled.loss - lastVal.loss : null,
  };
}

/**
 * The seed study's finding, checked on our runs: the transformer + frozen variant converges faster
 * (lower smoothed loss at 25% of training), the MLP + fine-tuned variant ends lower (final val loss,
 * else final train loss).
 */
export function seedFinding(mlp: ConvergenceStats, tr: ConvergenceStats): { fasterHolds: boolean; lowerHolds: boolean; text: string } {
  const fasterHolds = tr.at25 < mlp.at25;
  const endM = mlp.finalVal ?? mlp.final;
  const endT = tr.finalVal ?? tr.final;
  const lowerHolds = endM < endT;
  const f = (x: number) => x.toFixed(3);
  const text =
    `Converges faster: ${fasterHolds ? 'holds' : 'does not hold'} (smoothed train loss at 25% of training: transformer ${f(tr.at25)} vs MLP ${f(mlp.at25)}). ` +
    `Ends lower: ${lowerHolds ? 'holds' : 'does not hold'} (final ${mlp.finalVal !== null && tr.finalVal !== null ? 'val' : 'train'} loss: MLP ${f(endM)} vs transformer ${f(endT)}).`;
  return { fasterHolds, lowerHolds, text };
}

// ---------------------------------------------------------------------------------------------
// REPORT.md

/** Their numbers, for the table beside ours (labelled as theirs). */
export const PUBLISHED = {
  seed: {
    source: 'seed study (the reproduction this project follows): 193 COCO images',
    rows: [
      { system: 'MLP + fine-tuned GPT-2', Bleu_4: 0.287 },
      { system: 'Transformer + frozen GPT-2', Bleu_4: 0.274 },
    ],
  },
  paper: {
    source: 'Mokady et al. 2021, Table 1: COCO Karpathy test split (5,000 images), CLIP ViT-B/32 + GPT-2',
    rows: [
      { system: 'ClipCap, MLP + GPT-2 tuning', Bleu_4: 0.3215, CIDEr: 1.0835, METEOR: 0.271, SPICE: 0.2012 },
      { system: 'ClipCap, Transformer (frozen GPT-2)', Bleu_4: 0.3353, CIDEr: 1.1308, METEOR: 0.2745, SPICE: 0.2105 },
    ],
  },
  flickr8k: {
    source: 'published Flickr8k test results (their encoders and BLEU scripts, see below)',
    rows: [
      { system: 'Karpathy & Fei-Fei 2015 (CVPR), multimodal RNN, VGG CNN', Bleu_4: 0.16 },
      { system: 'Xu et al. 2015 (ICML), Show, Attend and Tell, soft attention, VGG CNN', Bleu_4: 0.195 },
      { system: 'Xu et al. 2015 (ICML), Show, Attend and Tell, hard attention, VGG CNN', Bleu_4: 0.213 },
    ],
  },
} as const;

/** A public URL of an evaluation photo when it has one (COCO photos), for the report's sample table. */
export function publicPhotoUrls(groups: ImageGroup[]): Map<string, string> {
  const out = new Map<string, string>();
  let cocoMini: Map<string, string> | null = null;
  for (const g of groups) {
    const base = path.basename(g.file);
    const m = /^COCO_(train|val)2014_/.exec(base);
    if (m) {
      out.set(g.image_id, `http://images.cocodataset.org/${m[1]}2014/${base}`);
      continue;
    }
    if (g.source === 'coco-mini') {
      if (!cocoMini) {
        cocoMini = new Map();
        const dir = mirrorDir();
        const file = dir ? path.join(dir, 'coco-mini', 'captions.json') : '';
        if (file && fs.existsSync(file)) {
          for (const im of readJson<{ images: { file_name: string; coco_url?: string }[] }>(file).images) if (im.coco_url) cocoMini.set(im.file_name, im.coco_url);
        }
      }
      const url = cocoMini.get(base);
      if (url) out.set(g.image_id, url);
    }
  }
  return out;
}

function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '';
  const t = x.toFixed(digits);
  return /^-0\.?0*$/.test(t) ? t.slice(1) : t; // no "-0.000" for a value that rounds to zero
}

function interval(iv: Interval | undefined): string {
  return iv ? `[${fmt(iv.lo)}, ${fmt(iv.hi)}]` : '';
}

function seconds(s: number): string {
  if (!Number.isFinite(s)) return '';
  return s >= 90 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`;
}

export interface ReportInputs {
  profile: ProfileConfig;
  evaluation: ProfileEvaluation;
  /** Notebook wall times (data/<profile>/notebooks/timings.json), if recorded. */
  timings?: Record<string, { seconds: number; ok: boolean; finishedAt: string }>;
  lossFigure?: string;
  metricsFigure?: string;
  lmPretrain?: { summary: { finalTrainLoss: number | null; finalValLoss: number | null; trainSeconds: number; steps: number }; corpus: { captions: number; tokens: number; vocabSize: number }; config: { nLayer: number; nEmbd: number; nHead: number; vocabSize: number } } | null;
  samples: number;
  backend: string;
  /** Seconds this evaluation took (notebook 06 so far). */
  evalSeconds: number;
}

/**
 * With the flickr8k-mini fallback: how long the same notebooks would take on the full Flickr8k, each
 * measured time scaled by its amount of data (extraction by photos, training by training captions,
 * evaluation by evaluation photos; the LM pretraining is capped by lmPretrain.maxCaptions and stays).
 */
function fullFlickrProjection(
  inp: ReportInputs,
  runs: { t: ProfileConfig['mlp']; sum: RunSummary | null }[],
  sizes: Record<string, { images: number; captions: number } | undefined>,
): string[] {
  const t = inp.timings ?? {};
  const get = (prefix: string) => Object.entries(t).find(([k]) => k.startsWith(prefix))?.[1]?.seconds;
  // the full benchmark: 6,000 / 1,000 / 1,000 Flickr8k photos (5 captions each) plus coco-mini's 130 train and 186 val2017 photos
  const full = { train: { images: 6130, captions: 30650 }, eval: { images: 1186 }, photos: 8316 };
  const have = { train: sizes.train?.captions ?? 0, photos: (sizes.train?.images ?? 0) + (sizes.val?.images ?? 0) + (sizes.eval?.images ?? 0), eval: sizes.eval?.images ?? 0 };
  if (!have.train || !have.photos || !have.eval) return [];
  const rows: { step: string; measured: number | undefined; factor: number }[] = [
    { step: '01_data_subset', measured: get('01'), factor: 1 },
    { step: '02_extract_embeddings', measured: get('02_'), factor: full.photos / have.photos },
    { step: 'LM pretraining, 02b (capped at lmPretrain.maxCaptions)', measured: inp.lmPretrain?.summary.trainSeconds ?? get('02b'), factor: 1 },
    ...runs.map((r) => ({ step: `training loop of ${r.t.name}`, measured: r.sum?.trainSeconds, factor: full.train.captions / have.train })),
    { step: '05_plot_losses', measured: get('05'), factor: 1 },
    { step: '06_evaluate', measured: inp.evalSeconds, factor: full.eval.images / have.eval },
  ];
  const total = rows.reduce((a, r) => a + (r.measured ?? 0) * r.factor, 0);
  return [
    '### Projected time on the full Flickr8k',
    '',
    `This run used flickr8k-mini (see the data note). Scaling each time measured in this run (on a machine that was also running other work, so on the high side) by its amount of data gives the time of the same notebooks, same recipe, on the full benchmark (${full.photos} photos, ${full.train.captions} training captions):`,
    '',
    tableMarkdown(rows.map((r) => ({ step: r.step, measured: r.measured !== undefined ? seconds(r.measured) : '?', 'x data': r.factor.toFixed(2), projected: r.measured !== undefined ? seconds(r.measured * r.factor) : '?' }))),
    '',
    `Projected total: ${seconds(total)}${total > 90 * 60 ? ` — over the 90-minute budget: the recipe's epochs would have to shrink to about ${Math.max(1, Math.floor((runs[0]?.t.epochs ?? 1) * (90 * 60 - (total - runs.reduce((a, r) => a + (r.sum?.trainSeconds ?? 0) * (full.train.captions / have.train), 0))) / Math.max(1, runs.reduce((a, r) => a + (r.sum?.trainSeconds ?? 0) * (full.train.captions / have.train), 0))))} (a projection, not a measurement).` : '.'}`,
    '',
  ];
}

/** One line of data/<profile>/tuning/results.jsonl (scripts/tune.ts). */
interface TuningRecord {
  system: string;
  changes?: Record<string, unknown>;
  valLoss?: number;
  valLossShuffled?: number | null;
  imageGap?: number | null;
  trainSeconds?: number;
  /** The decoding the dev captions were made with (DecodeConfig). */
  decode?: { beam: number; maxNewTokens: number; noRepeatNgram?: number; lengthPenalty?: number };
  dev?: { photos: number; Bleu_4: number; CIDEr: number; distinctShare: number; vocabulary: number };
}

/** The metrics table, the paired comparisons and the diversity of one evaluation set. */
function metricsSection(set: Evaluation): string[] {
  const L: string[] = [];
  const sys = set.systems;
  L.push(`### ${set.label} (${set.evalImages.length} photos)`, '');
  L.push(
    tableMarkdown(
      sys.map((s) => {
        const row: Record<string, unknown> = { system: s.label };
        for (const m of METRIC_NAMES) row[m.replace('_', '-')] = fmt(s.scores[m]);
        row['Bleu-4 95% CI'] = interval(s.intervals?.Bleu_4);
        row['CIDEr 95% CI'] = interval(s.intervals?.CIDEr);
        row['distinct captions'] = s.diversity ? `${(100 * s.diversity.share).toFixed(0)}% (${s.diversity.distinct})` : '';
        row.vocabulary = s.diversity?.vocabulary ?? '';
        row.note = s.note;
        return row;
      }),
    ),
    '',
  );
  const cmp = set.comparisons ?? [];
  if (cmp.length) {
    const label = (k: string) => sys.find((s) => s.key === k)?.label ?? k;
    const n = cmp[0].interval.samples;
    L.push(
      `Intervals: percentile bootstrap over the evaluation photos (${n} resamples; CIDEr-D keeps the full set's document frequencies). Paired differences on the same resampled photos; an interval that excludes 0 means the gap is not an accident of which photos were drawn:`,
      '',
    );
    L.push(
      tableMarkdown(
        cmp.map((c) => ({
          comparison: `${label(c.a)} − ${label(c.b)}`,
          metric: c.metric === 'Bleu_4' ? 'BLEU-4' : 'CIDEr-D',
          difference: fmt(c.interval.estimate),
          '95% CI': interval(c.interval),
          verdict: c.interval.lo > 0 ? 'higher' : c.interval.hi < 0 ? 'lower' : 'no clear difference',
        })),
      ),
      '',
    );
  }
  return L;
}

/** The full text of REPORT.md, from artifacts only. */
export function renderReport(inp: ReportInputs): string {
  const { profile, evaluation } = inp;
  const paths = artifactPaths(profile.name);
  const relToReport = (p: string) => path.relative(path.dirname(paths.report), p).split(path.sep).join('/');
  const runs = [profile.mlp, profile.transformer].map((t) => {
    const dir = runDirectory(profile.name, t.name);
    const cfg = readRunConfig(dir);
    const sum = readRunSummary(dir);
    return { t, dir, cfg, sum };
  });
  const losses = loadVariantLosses(profile);
  const stats = losses.map((v) => convergenceStats(v));
  const finding = stats.length === 2 ? seedFinding(stats[0], stats[1]) : null;
  const manifest = readJson<{ sizes: Record<string, { images: number; captions: number }> }>(path.join(paths.subsets, 'manifest.json'));
  const main = evaluation.sets[0];
  if (!main) throw new Error('the evaluation has no evaluation set: run notebook 06 on a profile with evaluation photos');
  const notes = (readJson<{ notes?: string[] }>(path.join(paths.subsets, 'manifest.json')).notes ?? []);
  const L: string[] = [];
  const now = new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
  L.push(`# ClipCap in TypeScript: results (${profile.name} profile)`, '');
  L.push(`> Written by \`notebooks/06_evaluate\` from the run artifacts under \`data/${profile.name}/\` on ${now}. Do not edit by hand: rerun the notebooks (\`npm run main\`) to regenerate it.`, '');

  // Summary
  L.push('## Summary', '');
  for (const n of notes) L.push(`> **Data note:** ${n}.`, '');
  for (const set of evaluation.sets) {
    const clip = set.systems.filter((s) => s.kind === 'clipcap');
    const nn = set.systems.find((s) => s.key === 'nn_retrieval');
    const human = set.systems.find((s) => s.kind === 'human');
    const best = (k: 'Bleu_4' | 'CIDEr') => clip.map((s) => `${s.label} ${fmt(s.scores[k])}`).join(', ');
    const beats = clip.map((s) => {
      const c = set.comparisons.find((x) => x.a === s.key && x.b === 'nn_retrieval' && x.metric === 'CIDEr');
      return c ? `${s.label} ${c.interval.lo > 0 ? 'beats' : c.interval.hi < 0 ? 'is below' : 'is not clearly different from'} retrieval on CIDEr-D (paired difference ${fmt(c.interval.estimate)}, 95% CI ${interval(c.interval)})` : '';
    }).filter(Boolean);
    L.push(
      `**${set.label}** (${set.evalImages.length} photos): BLEU-4 ${best('Bleu_4')}${nn ? `; nearest-neighbour retrieval ${fmt(nn.scores.Bleu_4)}` : ''}${human ? `; human leave-one-out ${fmt(human.scores.Bleu_4)}` : ''}. ` +
        `CIDEr-D: ${best('CIDEr')}${nn ? `; retrieval ${fmt(nn.scores.CIDEr)}` : ''}${human ? `; human ${fmt(human.scores.CIDEr)}` : ''}.` +
        (beats.length ? ` ${beats.join('; ')}.` : ''),
      '',
    );
  }
  if (finding) L.push(`Seed study's finding (transformer + frozen converges faster, MLP + fine-tuned ends lower), checked on these runs: ${finding.text}`);
  if (profile.name !== 'paper') {
    L.push(
      '',
      profile.lm.source === 'hub'
        ? `These numbers come from the **${profile.name}** profile (${profile.description}): CLIP and GPT-2 124M as in the paper, but ${profile.data.trainCaptions} training captions (the seed study: 33,841) and ${profile.mlp.epochs} epochs, so they are not comparable with the paper's or the seed study's (see Limitations).`
        : `These numbers come from the **${profile.name}** profile (${profile.description}); they are not comparable with the paper's or the seed study's, which used CLIP and the 124M-parameter GPT-2 on COCO (see Limitations).`,
    );
  }
  L.push('');

  // Setup
  L.push('## Setup', '');
  const anyCfg = runs.find((r) => r.cfg)?.cfg;
  const setup: Record<string, unknown>[] = [
    { item: 'profile', value: `${profile.name}: ${profile.description}` },
    { item: 'image encoder', value: anyCfg ? `${anyCfg.encoder.name} (${anyCfg.encoder.dim}-d, frozen)` : profile.encoder.kind },
    {
      item: 'language model',
      value: anyCfg
        ? `${anyCfg.lm.source}: GPT-2 with ${anyCfg.lm.config.nLayer} layers, d=${anyCfg.lm.config.nEmbd}, ${anyCfg.lm.config.nHead} heads, vocabulary ${anyCfg.lm.vocabSize}${anyCfg.lm.restrictedVocab ? ' (GPT-2 BPE restricted to the corpus tokens)' : ''}`
        : profile.lm.modelId,
    },
    ...(inp.lmPretrain
      ? [
          {
            item: 'LM pretraining (notebook 02b)',
            value: `${inp.lmPretrain.corpus.captions} captions (${inp.lmPretrain.corpus.tokens} tokens; no caption of a validation, test or evaluation photo), ${inp.lmPretrain.summary.steps} steps, final train / val loss ${fmt(inp.lmPretrain.summary.finalTrainLoss)} / ${fmt(inp.lmPretrain.summary.finalValLoss)}, ${seconds(inp.lmPretrain.summary.trainSeconds)}`,
          },
        ]
      : []),
    { item: 'data (images / captions)', value: ['train', 'val', 'eval'].map((s) => `${s} ${manifest.sizes[s]?.images ?? '?'} / ${manifest.sizes[s]?.captions ?? '?'}`).join('; ') },
    { item: 'TensorFlow.js backend', value: inp.backend },
    { item: 'machine', value: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}` },
  ];
  L.push(tableMarkdown(setup), '');
  L.push('### Hyperparameters', '');
  const keys: (keyof ProfileConfig['mlp'])[] = ['prefixLength', 'clipLength', 'numLayers', 'numHeads', 'batchSize', 'microBatchSize', 'lr', 'lmLrScale', 'warmupSteps', 'warmupFraction', 'epochs', 'weightDecay', 'adamEps', 'gradClip', 'maxCaptionTokens', 'seed'];
  const transformerOnly = new Set(['clipLength', 'numLayers', 'numHeads']);
  const hp = (i: 0 | 1, k: keyof ProfileConfig['mlp']) => {
    const t = runs[i].cfg?.train ?? runs[i].t;
    if (t.mapper === 'mlp' && transformerOnly.has(k)) return '-';
    if (k === 'lmLrScale' && !t.finetuneLM) return '-';
    if (k === 'warmupSteps' && t.warmupFraction > 0) return `${runs[i].cfg?.loop.warmupSteps ?? '?'} (from warmupFraction)`;
    if (k === 'microBatchSize') {
      const used = runs[i].cfg?.loop.microBatchSize;
      return `${String(t[k])}${used !== undefined ? ` (${used === 0 ? 'the whole batch' : used} per pass)` : ''}`;
    }
    return String(t[k]);
  };
  L.push(
    tableMarkdown(
      keys.map((k) => ({
        parameter: k,
        [variantLabel(profile.mlp)]: hp(0, k),
        [variantLabel(profile.transformer)]: hp(1, k),
      })),
    ),
    '',
  );
  L.push(
    `The optimizer is AdamW with eps ${String(runs[0].cfg?.train.adamEps ?? runs[0].t.adamEps)} and weight decay ${String(runs[0].cfg?.train.weightDecay ?? runs[0].t.weightDecay)} (the original's \`transformers.AdamW(lr=2e-5)\`: eps 1e-6 and no weight decay; torch.optim.AdamW's defaults, eps 1e-8 and weight decay 0.01, are not the original's), with a linear warm-up then linear decay.` +
    ' The original warms up for 5,000 of its 141,680 steps (3.5%); with `warmupFraction` > 0 the warm-up is that fraction of this run\'s steps (the paper profile keeps the original\'s 3.5%, where the literal 5,000 steps would put the peak learning rate at 59% of the seed\'s 8,460 steps), with 0 it is `warmupSteps` literally. `microBatchSize`: examples per forward/backward pass, gradients accumulated over the batch (\'auto\': the largest pass the backend\'s memory holds).',
    '',
  );
  L.push('### Wall times', '');
  const timeRows: Record<string, unknown>[] = [];
  const notebooks = new Set(fs.readdirSync(path.join(paths.root, '..', '..', 'notebooks')));
  let notebookSeconds = 0;
  for (const [nb, t] of Object.entries(inp.timings ?? {}).sort()) {
    if (nb.startsWith('06') || !notebooks.has(nb)) continue;
    notebookSeconds += t.seconds;
    timeRows.push({ step: nb.replace(/\.ipynb$/, ''), 'wall time': seconds(t.seconds), finished: t.finishedAt.replace('T', ' ').slice(0, 16) });
  }
  for (const r of runs) if (r.sum) timeRows.push({ step: `training loop of ${r.t.name}`, 'wall time': seconds(r.sum.trainSeconds), finished: r.sum.finishedAt.replace('T', ' ').slice(0, 16) });
  timeRows.push({ step: '06_evaluate (captioning, baselines, scoring, this report)', 'wall time': seconds(inp.evalSeconds), finished: now });
  if (inp.timings) timeRows.push({ step: 'all notebooks (01-05 as last run, plus this 06)', 'wall time': seconds(notebookSeconds + inp.evalSeconds), finished: now });
  L.push(tableMarkdown(timeRows), '');
  if (!inp.timings) L.push('(Notebook wall times are recorded when the notebooks run through `npm run main`.)', '');
  const reused = runs.filter((r) => {
    const nb = Object.entries(inp.timings ?? {}).find(([k]) => k.startsWith(r.t.mapper === 'mlp' ? '03' : '04'))?.[1];
    return r.sum && nb && nb.seconds < r.sum.trainSeconds;
  });
  if (reused.length) {
    L.push(
      `The training loop of ${reused.map((r) => r.t.name).join(' and ')} ran before its notebook (a dev-split trial of \`scripts/tune.ts\` with the same settings), and the notebook reused the finished run; the notebook total above leaves those loops out.`,
      '',
    );
  }
  if (notes.length && profile.data.source === 'mirror') L.push(...fullFlickrProjection(inp, runs, manifest.sizes));

  // Training
  L.push('## Training loss', '');
  if (inp.lossFigure) L.push(`![training loss](${relToReport(inp.lossFigure)})`, '');
  if (stats.length) {
    L.push(
      tableMarkdown(
        stats.map((s) => ({
          variant: s.variant,
          steps: s.steps,
          'loss @25% (smoothed)': fmt(s.at25),
          'final train loss (smoothed)': fmt(s.final),
          'steps to within 10% of final': s.stepsToWithin10pct,
          'val loss, epoch 1': fmt(s.firstEpochVal),
          'val loss, last epoch': fmt(s.finalVal),
          'val loss, shuffled images': fmt(s.finalValShuffled),
          'image-use gap': fmt(s.imageGap),
        })),
      ),
      '',
    );
    if (stats.some((s) => s.imageGap !== null)) {
      L.push(
        '**Does the model use the image?** The image-use gap is the validation loss (nats per token) with every caption conditioned on another photo\'s embedding (a seeded derangement over the validation photos, same captions) minus the loss with its own photo. A captioner that ignores the image has a gap of 0; the gap per epoch is in the right panel of the figure.',
        '',
      );
    }
  }
  if (finding) L.push(finding.text, '');

  // Recipe: the dev-split trials of scripts/tune.ts
  const tuningFile = path.join(paths.root, 'tuning', 'results.jsonl');
  if (fs.existsSync(tuningFile)) {
    const trials = fs
      .readFileSync(tuningFile, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as TuningRecord);
    L.push('## Recipe: what was tried on the validation split', '');
    const alternatives = trials.filter((t) => t.changes && Object.keys(t.changes).length > 0).length;
    L.push(
      `Trials on the validation (dev) split, with \`scripts/tune.ts\` (one line per trial in \`data/${profile.name}/tuning/results.jsonl\`); the test photos were not looked at. Losses in nats per token; the image-use gap is the val loss with shuffled images minus the val loss; dev scores on ${[...new Set(trials.filter((t) => t.dev).map((t) => t.dev!.photos))].join(' or ') || '?'} validation photos (a seeded sample where fewer than all).` +
        (alternatives === 0
          ? ' Only the configured recipe was measured here (no alternative trials yet): it was set before these measurements, not selected by them; run `scripts/tune.ts --set ...` to compare others.'
          : ` ${alternatives} alternative trial(s) against the configured recipe.`),
      '',
    );
    L.push(
      tableMarkdown(
        trials.map((t) => ({
          system: t.system,
          'changes from the kept recipe at the time': t.changes ? (Object.keys(t.changes).length ? Object.entries(t.changes).map(([k, v]) => `${k}=${v}`).join(', ') : '(as configured)') : '',
          'val loss': fmt(t.valLoss),
          'val loss, shuffled images': fmt(t.valLossShuffled),
          'image-use gap': fmt(t.imageGap),
          decoding: t.decode ? describeDecode(t.decode) : '',
          'dev BLEU-4': fmt(t.dev?.Bleu_4),
          'dev CIDEr-D': fmt(t.dev?.CIDEr),
          'distinct captions': t.dev ? `${(100 * t.dev.distinctShare).toFixed(0)}%` : '',
          vocabulary: t.dev?.vocabulary ?? '',
          'train time': t.trainSeconds ? seconds(t.trainSeconds) : '',
        })),
      ),
      '',
    );
  }

  // Metrics, per evaluation set
  L.push('## Caption metrics', '');
  L.push(
    'BLEU-1..4, ROUGE-L and CIDEr-D computed as the COCO caption toolkit (pycocoevalcap) does, after its PTB tokenization; CIDEr on the toolkit\'s scale (papers print it ×100). Distinct captions: different captions (lower-cased, punctuation stripped) / photos; vocabulary: distinct words over all of a system\'s captions.',
    '',
  );
  if (profile.name !== 'smoke') L.push('The test photos were scored once for the configuration kept here; every choice of recipe was made on the validation (dev) split (see the recipe section).', '');
  for (const set of evaluation.sets) L.push(...metricsSection(set));
  if (inp.metricsFigure) L.push(`![BLEU-4 and CIDEr](${relToReport(inp.metricsFigure)})`, '');
  L.push('### Their numbers (not ours; other data, other models)', '');
  const published = [
    ...(evaluation.sets.some((s) => s.key.startsWith('flickr8k')) ? PUBLISHED.flickr8k.rows.map((r) => ({ source: 'Flickr8k test (1,000 photos, 5 references)', system: r.system, 'BLEU-4': r.Bleu_4.toFixed(3), CIDEr: '' })) : []),
    ...PUBLISHED.seed.rows.map((r) => ({ source: PUBLISHED.seed.source, system: r.system, 'BLEU-4': r.Bleu_4.toFixed(3), CIDEr: '' })),
    ...PUBLISHED.paper.rows.map((r) => ({ source: PUBLISHED.paper.source, system: r.system, 'BLEU-4': r.Bleu_4.toFixed(4), CIDEr: r.CIDEr.toFixed(4) })),
  ];
  L.push(tableMarkdown(published), '');
  if (evaluation.sets.some((s) => s.key.startsWith('flickr8k'))) {
    L.push(
      'The published Flickr8k rows use ImageNet-trained VGG features (ours: the CenterNet stand-in, 200-d) and their own BLEU scripts (Karpathy & Fei-Fei: their own implementation; Xu et al.: the COCO toolkit\'s BLEU, without the brevity-penalty details always stated), on the original 500 x 375 photos (ours: whatever the mirror holds). Their numbers are theirs, printed for scale only.',
      '',
    );
  }

  // Samples
  L.push('## Samples', '');
  for (const set of evaluation.sets) {
    const clip = set.systems.filter((s) => s.kind === 'clipcap');
    const nn = set.systems.find((s) => s.key === 'nn_retrieval');
    const urls = publicPhotoUrls(set.evalImages);
    const rows = set.evalImages.slice(0, inp.samples).map((g) => {
      const r: Record<string, unknown> = {
        photo: urls.has(g.image_id) ? `<img src="${urls.get(g.image_id)}" width="160">` : escapeHtml(g.image_id),
        'ground truth (first reference)': g.captions[0] ?? '',
      };
      for (const s of clip) r[s.label] = s.captions.get(g.image_id) ?? '';
      if (nn) r[nn.label] = nn.captions.get(g.image_id) ?? '';
      return r;
    });
    L.push(`### ${set.label}`, '');
    L.push(tableMarkdown(rows).replace(/&lt;img src=&quot;(.*?)&quot; width=&quot;160&quot;&gt;/g, '<img src="$1" width="160">'), '');
    if (urls.size) L.push('Photos are shown from their public COCO URLs; the project does not carry them.', '');
    else if (set.key.startsWith('flickr8k')) L.push('Flickr8k photos are named by their file (the dataset has no public per-photo URL); the project does not carry them.', '');
  }

  // Limitations
  L.push('## Limitations', '');
  const lim: string[] = [];
  if (profile.name !== 'paper') {
    if (profile.encoder.kind === 'centernet') {
      lim.push(
        'The image encoder is a stand-in, not CLIP: the CenterNet object detector shipped in `@vladmandic/human` (MobileNetV3 backbone trained on COCO\'s 80 classes), embedding = 80 class-heatmap maxima + 120 pooled backbone features, centred on the training images and L2-normalised (200-d). It knows which COCO objects are present, not what CLIP\'s image-text training gives (scenes, attributes, actions), so captions describe objects better than anything else.',
      );
    }
    if (profile.lm.source !== 'hub') {
      lim.push(
        `The language model is not GPT-2 124M: no real GPT-2 weights exist offline, so a ${profile.lm.arch.nLayer}-layer, ${profile.lm.arch.nEmbd}-wide GPT-2 was pretrained here on ${inp.lmPretrain ? `${inp.lmPretrain.corpus.captions} captions (${inp.lmPretrain.corpus.tokens} tokens)` : 'caption text'} (notebook 02b). It knows caption language only, so "fine-tuned vs frozen GPT-2" compares a small in-domain LM, not a general one: the frozen variant starts from a model that already writes captions.`,
      );
    }
    const sizes = (k: string) => `${manifest.sizes[k]?.images ?? '?'} photos / ${manifest.sizes[k]?.captions ?? '?'} captions`;
    lim.push(
      `Data: train ${sizes('train')}, validation ${sizes('val')}, evaluation ${evaluation.sets.map((s) => `${s.label} ${s.evalImages.length} photos`).join(', ')}. ${notes.length ? 'The mirror lacked the full Flickr8k, so these are not the standard benchmark\'s numbers (see the data note above). ' : ''}With few evaluation photos the metrics have wide confidence intervals (see the bootstrap intervals above).`,
    );
    lim.push(`Hyperparameters are scaled to the budget (all notebooks in ${profile.lm.source === 'hub' ? 'about two hours' : 'at most 90 minutes'} on two CPU cores): larger learning rates (the mapper at 1e-3, a fine-tuned GPT-2 at a tenth of it), fewer epochs, a shorter warm-up, a shorter prefix and clip length for the transformer mapper; the optimizer is the original's (AdamW, eps 1e-6, no weight decay). See the table above, the recipe section and \`src/lib/config.ts\`.`);
  }
  lim.push('One training seed per variant: the intervals above cover the choice of evaluation photos, not training noise. Training runs on TensorFlow.js (wasm on CPU here), not PyTorch; numerics agree with float64 references in the tests, but the optimisation path is not bit-identical to the original code.');
  lim.push('METEOR and SPICE (Java tools in the COCO toolkit) are not computed.');
  for (const l of lim) L.push(`- ${l}`);
  L.push('');
  return L.join('\n');
}

/** Write REPORT.md (or data/smoke/REPORT.md) atomically; returns its path. */
/**
 * Write REPORT.md (smoke: data/smoke/REPORT.md). The notebook timings, the loss figure of notebook 05
 * and the LM pretraining summary of notebook 02b are read from the profile's artifacts unless given.
 */
export function writeReport(inp: Omit<ReportInputs, 'timings' | 'lossFigure' | 'lmPretrain'> & Partial<ReportInputs>): string {
  const paths = artifactPaths(inp.profile.name);
  const lossFigure = path.join(paths.figures, 'loss.png');
  const pretrainFile = path.join(pretrainedLMDir(inp.profile.name), 'pretrain.json');
  const full: ReportInputs = {
    timings: readTimings(inp.profile.name),
    lossFigure: fs.existsSync(lossFigure) ? lossFigure : undefined,
    lmPretrain: inp.profile.lm.source !== 'hub' && fs.existsSync(pretrainFile) ? readJson(pretrainFile) : null,
    ...inp,
  };
  writeFileAtomic(paths.report, renderReport(full));
  return paths.report;
}

/** Notebook wall times recorded by scripts/run-notebooks.ts, if any. */
export function readTimings(profile: string): ReportInputs['timings'] {
  const f = path.join(artifactPaths(profile).executed, 'timings.json');
  return fs.existsSync(f) ? readJson(f) : undefined;
}

