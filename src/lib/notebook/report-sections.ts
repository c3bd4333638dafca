// The sections of REPORT.md, one function each, in the order report.ts assembles them. Each returns
// its lines; everything a section reads is in the ReportContext (the inputs of notebook 06 and what
// was read from the run artifacts once).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { variantLabel, type ProfileConfig, type TrainConfig } from '../config';
import { describeDecode } from '../eval/caption';
import type { Evaluation, ProfileEvaluation } from '../eval/evaluate';
import { METRIC_NAMES } from '../eval/metrics/index';
import type { RunConfig, RunSummary } from '../run/run';
import type { ConvergenceStats, SeedFinding } from './convergence';
import { escapeHtml, tableMarkdown } from './display';
import { PUBLISHED, publicPhotoUrls } from './published';
import { fmt, interval, seconds } from './report-format';
import { artifactPaths, repoRoot } from '../paths';
import { PROBLEM_SHORT, type CustomDatasetSummary, type ProblemKind } from '../data/custom';

/** Notebook wall times recorded by scripts/run-notebooks.ts (data/<profile>/notebooks/timings.json). */
export type NotebookTimings = Record<string, { seconds: number; ok: boolean; finishedAt: string; startedAt?: string }>;

/** The caption LM pretraining of notebook 02b (its pretrain.json). */
export interface LMPretrainRecord {
  summary: { finalTrainLoss: number | null; finalValLoss: number | null; trainSeconds: number; steps: number };
  corpus: { captions: number; tokens: number; vocabSize: number; trainSequences?: number; valSequences?: number };
  config: { nLayer: number; nEmbd: number; nHead: number; vocabSize: number };
  /** The settings it was made with (absent in files written before they were recorded). */
  settings?: { pretrain?: { captionsPerSequence?: number } };
}

/** What REPORT.md is written from: notebook 06's evaluation and settings, and the artifacts of 01-05. */
export interface ReportInputs {
  profile: ProfileConfig;
  /** The evaluation of notebook 06 (its `seconds` is the evaluation's wall time). */
  evaluation: ProfileEvaluation;
  /** Notebook wall times, if recorded. */
  timings?: NotebookTimings;
  lossFigure?: string;
  metricsFigure?: string;
  lmPretrain?: LMPretrainRecord | null;
  samples: number;
  backend: string;
}

/** A variant: its configured settings, and its run's configuration and summary where it has run. */
export interface ReportRun {
  t: TrainConfig;
  dir: string;
  cfg: RunConfig | null;
  sum: RunSummary | null;
}

/** Everything a section reads. */
export interface ReportContext extends ReportInputs {
  /** The MLP variant, then the transformer variant. */
  runs: ReportRun[];
  /** Images and captions per subset (the subsets' manifest). */
  sizes: Record<string, { images: number; captions: number } | undefined>;
  /** The data notes of the subsets' manifest (e.g. the flickr8k-mini fallback, a dataset's bad rows). */
  notes: string[];
  /** A dataset of your own (the subsets' manifest): what was read and left out. */
  dataset?: CustomDatasetSummary;
  stats: ConvergenceStats[];
  finding: SeedFinding | null;
  /** When the report is written, "YYYY-MM-DD HH:MM UTC". */
  now: string;
  /** data/<profile>/ */
  artifactsRoot: string;
  /** A path as a link relative to REPORT.md. */
  relToReport: (file: string) => string;
}

/** Where a profile's artifacts are, as the report names them: data/<profile>/ (a dataset of your own: data/<profile>/custom/<name>-<hash>/). */
function artifactsDir(ctx: ReportContext): string {
  return ctx.profile.data.source === 'custom' ? `${path.relative(repoRoot(), ctx.artifactsRoot).split(path.sep).join('/')}/` : `data/${ctx.profile.name}/`;
}

export function headerSection(ctx: ReportContext): string[] {
  const { profile, dataset } = ctx;
  if (profile.data.source === 'custom') {
    const name = dataset?.name ?? path.basename(profile.data.custom ?? 'custom');
    return [
      `# ClipCap in TypeScript: results on your dataset "${name}" (${profile.name} profile)`,
      '',
      `> Written by \`notebooks/06_evaluate\` from the run artifacts under \`${artifactsDir(ctx)}\` on ${ctx.now}. Do not edit by hand: rerun the notebooks (\`CLIPCAP_DATASET=${profile.data.custom} npm run main\`) to regenerate it.`,
      '',
    ];
  }
  return [
    `# ClipCap in TypeScript: results (${profile.name} profile)`,
    '',
    `> Written by \`notebooks/06_evaluate\` from the run artifacts under \`data/${profile.name}/\` on ${ctx.now}. Do not edit by hand: rerun the notebooks (\`npm run main\`) to regenerate it.`,
    '',
  ];
}

/** The dataset line of the setup table: a dataset of your own, its size, split and what was left out. */
export function datasetDescription(d: CustomDatasetSummary, data: ProfileConfig['data']): string {
  const split = d.splitFiles.length
    ? `split by its splits/${d.splitFiles.join(', ')}${d.splitFiles.length < 3 ? `, the rest a seeded draw by photo (seed ${data.seed})` : ''}`
    : `a seeded split by photo (seed ${data.seed}, valFraction ${data.valFraction}, evalImages ${data.evalImages === 0 ? '0: one photo in ten' : data.evalImages})`;
  const left = (Object.keys(PROBLEM_SHORT) as ProblemKind[]).filter((k) => d.problems[k]).map((k) => `${d.problems[k]!.count} ${PROBLEM_SHORT[k]}`);
  return `"${d.name}" (${d.folder}): ${d.photos} photos with ${d.captions} captions, from ${d.rows} rows of ${path.basename(d.captionsFile)}${d.format === 'coco-json' ? ' (COCO captions format)' : ''}; ${split}; ${left.length ? `left out: ${left.join(', ')} (see the data notes)` : 'no bad rows'}`;
}

/** Per evaluation set: the variants' BLEU-4 and CIDEr-D beside the baselines; the seed study's finding. */
export function summarySection(ctx: ReportContext): string[] {
  const { profile, evaluation, finding } = ctx;
  const L: string[] = ['## Summary', ''];
  for (const n of ctx.notes) L.push(`> **Data note:** ${n}.`, '');
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
        ? `These numbers come from the **${profile.name}** profile (${profile.description}): CLIP and GPT-2 124M as in the paper, but ${profile.data.source === 'custom' ? (ctx.sizes.train?.captions ?? '?') : profile.data.trainCaptions} training captions (the seed study: 33,841) and ${profile.mlp.epochs} epochs, so they are not comparable with the paper's or the seed study's (see Limitations).`
        : `These numbers come from the **${profile.name}** profile (${profile.description}); they are not comparable with the paper's or the seed study's, which used CLIP and the 124M-parameter GPT-2 on COCO (see Limitations).`,
    );
  }
  L.push('');
  return L;
}

/** The models, data, backend and machine. */
export function setupSection(ctx: ReportContext): string[] {
  const { profile, sizes } = ctx;
  const anyCfg = ctx.runs.find((r) => r.cfg)?.cfg;
  const lm = ctx.lmPretrain;
  const setup: Record<string, unknown>[] = [
    { item: 'profile', value: `${profile.name}: ${profile.description}` },
    { item: 'image encoder', value: anyCfg ? `${anyCfg.encoder.name} (${anyCfg.encoder.dim}-d, frozen)` : profile.encoder.kind },
    {
      item: 'language model',
      value: anyCfg
        ? `${anyCfg.lm.source}: GPT-2 with ${anyCfg.lm.config.nLayer} layers, d=${anyCfg.lm.config.nEmbd}, ${anyCfg.lm.config.nHead} heads, vocabulary ${anyCfg.lm.vocabSize}${anyCfg.lm.restrictedVocab ? ' (GPT-2 BPE restricted to the corpus tokens)' : ''}`
        : profile.lm.modelId,
    },
    ...(lm
      ? [
          {
            item: 'LM pretraining (notebook 02b)',
            value: `${lm.corpus.captions} captions (${lm.corpus.tokens} tokens; no caption of a validation, test or evaluation photo), ${lm.summary.steps} steps, final train / val loss ${fmt(lm.summary.finalTrainLoss)} / ${fmt(lm.summary.finalValLoss)}, ${seconds(lm.summary.trainSeconds)}`,
          },
        ]
      : []),
    ...(ctx.dataset ? [{ item: 'dataset', value: datasetDescription(ctx.dataset, profile.data) }] : []),
    { item: 'data (images / captions)', value: ['train', 'val', 'eval'].map((s) => `${s} ${sizes[s]?.images ?? '?'} / ${sizes[s]?.captions ?? '?'}`).join('; ') },
    { item: 'TensorFlow.js backend', value: ctx.backend },
    { item: 'machine', value: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}` },
  ];
  return ['## Setup', '', tableMarkdown(setup), ''];
}

const HYPERPARAMETERS: (keyof TrainConfig)[] = ['prefixLength', 'clipLength', 'numLayers', 'numHeads', 'batchSize', 'microBatchSize', 'lr', 'lmLrScale', 'warmupSteps', 'warmupFraction', 'epochs', 'weightDecay', 'adamEps', 'gradClip', 'maxCaptionTokens', 'seed'];
const TRANSFORMER_ONLY = new Set<keyof TrainConfig>(['clipLength', 'numLayers', 'numHeads']);

/** A hyperparameter of a variant as its run used it ('-' where it does not apply). */
function hyperparameter(run: ReportRun, k: keyof TrainConfig): string {
  const t = run.cfg?.train ?? run.t;
  if (t.mapper === 'mlp' && TRANSFORMER_ONLY.has(k)) return '-';
  if (k === 'lmLrScale' && !t.finetuneLM) return '-';
  if (k === 'warmupSteps' && t.warmupFraction > 0) return `${run.cfg?.loop.warmupSteps ?? '?'} (from warmupFraction)`;
  if (k === 'microBatchSize') {
    const used = run.cfg?.loop.microBatchSize;
    return `${String(t[k])}${used !== undefined ? ` (${used === 0 ? 'the whole batch' : used} per pass)` : ''}`;
  }
  return String(t[k]);
}

/** Both variants' training hyperparameters side by side, and the optimizer explained. */
export function hyperparametersSection(ctx: ReportContext): string[] {
  const { profile, runs } = ctx;
  const table = tableMarkdown(
    HYPERPARAMETERS.map((k) => ({
      parameter: k,
      [variantLabel(profile.mlp)]: hyperparameter(runs[0], k),
      [variantLabel(profile.transformer)]: hyperparameter(runs[1], k),
    })),
  );
  const optimizer =
    `The optimizer is AdamW with eps ${String(runs[0].cfg?.train.adamEps ?? runs[0].t.adamEps)} and weight decay ${String(runs[0].cfg?.train.weightDecay ?? runs[0].t.weightDecay)} (the original's \`transformers.AdamW(lr=2e-5)\`: eps 1e-6 and no weight decay; torch.optim.AdamW's defaults, eps 1e-8 and weight decay 0.01, are not the original's), with a linear warm-up then linear decay.` +
    ' The original warms up for 5,000 of its 141,680 steps (3.5%); with `warmupFraction` > 0 the warm-up is that fraction of this run\'s steps (the paper profile keeps the original\'s 3.5%, where the literal 5,000 steps would put the peak learning rate at 59% of the seed\'s 8,460 steps), with 0 it is `warmupSteps` literally. `microBatchSize`: examples per forward/backward pass, gradients accumulated over the batch (\'auto\': the largest pass the backend\'s memory holds).';
  return ['### Hyperparameters', '', table, '', optimizer, ''];
}

/** The loss figure, the convergence table, the image-use gap and the seed study's finding. */
export function trainingSection(ctx: ReportContext): string[] {
  const { stats, finding } = ctx;
  const L: string[] = ['## Training loss', ''];
  if (ctx.lossFigure) L.push(`![training loss](${ctx.relToReport(ctx.lossFigure)})`, '');
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
  return L;
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

/** How the LM pretraining packed its captions, for the limitations' sentence ('' for a caption a sequence). */
export function lmPacking(lm: LMPretrainRecord): string {
  const k = lm.settings?.pretrain?.captionsPerSequence ?? 1;
  if (k <= 1) return '';
  const seqs = (lm.corpus.trainSequences ?? 0) + (lm.corpus.valSequences ?? 0);
  return `; the captions of a photo packed into one sequence, up to ${k}${seqs ? `, ${seqs} sequences` : ''}`;
}

/** The dev-split trials of scripts/tune.ts, if any. */
export function recipeSection(ctx: ReportContext): string[] {
  const tuningFile = artifactPaths(ctx.profile).tuningResults;
  if (!fs.existsSync(tuningFile)) return [];
  const trials = fs
    .readFileSync(tuningFile, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as TuningRecord);
  const alternatives = trials.filter((t) => t.changes && Object.keys(t.changes).length > 0).length;
  const devPhotos = [...new Set(trials.filter((t) => t.dev).map((t) => t.dev!.photos))].join(' or ') || '?';
  return [
    '## Recipe: what was tried on the validation split',
    '',
    `Trials on the validation (dev) split, with \`scripts/tune.ts\` (one line per trial in \`${artifactsDir(ctx)}tuning/results.jsonl\`); the test photos were not looked at. Losses in nats per token; the image-use gap is the val loss with shuffled images minus the val loss; dev scores on ${devPhotos} validation photos (a seeded sample where fewer than all; the share of distinct captions falls as photos are added, so compare it between rows of the same number of photos).` +
      (alternatives === 0
        ? ' Only the configured recipe was measured here (no alternative trials yet): it was set before these measurements, not selected by them; run `scripts/tune.ts --set ...` to compare others.'
        : ` ${alternatives} alternative trial(s) against the configured recipe.`),
    '',
    tableMarkdown(
      trials.map((t) => ({
        system: t.system,
        'changes from the kept recipe at the time': t.changes ? (Object.keys(t.changes).length ? Object.entries(t.changes).map(([k, v]) => `${k}=${v}`).join(', ') : '(as configured)') : '',
        'val loss': fmt(t.valLoss),
        'val loss, shuffled images': fmt(t.valLossShuffled),
        'image-use gap': fmt(t.imageGap),
        decoding: t.decode ? describeDecode(t.decode) : '',
        // the distinct share falls as photos are added: compare rows of the same number of photos
        'dev photos': t.dev?.photos ?? '',
        'dev BLEU-4': fmt(t.dev?.Bleu_4),
        'dev CIDEr-D': fmt(t.dev?.CIDEr),
        'distinct captions': t.dev ? `${(100 * t.dev.distinctShare).toFixed(0)}%` : '',
        vocabulary: t.dev?.vocabulary ?? '',
        'train time': t.trainSeconds ? seconds(t.trainSeconds) : '',
      })),
    ),
    '',
  ];
}

/** The metrics table, the paired comparisons and the diversity of one evaluation set. */
function evaluationSetSection(set: Evaluation): string[] {
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

/** Every evaluation set's scores, the metrics figure, and the published numbers for scale. */
export function metricsSection(ctx: ReportContext): string[] {
  const { profile, evaluation } = ctx;
  const L: string[] = ['## Caption metrics', ''];
  L.push(
    'BLEU-1..4, ROUGE-L and CIDEr-D computed as the COCO caption toolkit (pycocoevalcap) does, after its PTB tokenization; CIDEr on the toolkit\'s scale (papers print it ×100). Distinct captions: different captions (lower-cased, punctuation stripped) / photos; vocabulary: distinct words over all of a system\'s captions.',
    '',
  );
  if (profile.name !== 'smoke') L.push('The test photos were scored once for the configuration kept here; every choice of recipe was made on the validation (dev) split (see the recipe section).', '');
  for (const set of evaluation.sets) L.push(...evaluationSetSection(set));
  if (ctx.metricsFigure) L.push(`![BLEU-4 and CIDEr](${ctx.relToReport(ctx.metricsFigure)})`, '');
  L.push(...publishedSection(ctx));
  return L;
}

/** Their numbers (other data, other models), labelled as theirs. */
function publishedSection(ctx: ReportContext): string[] {
  const flickr = ctx.evaluation.sets.some((s) => s.key.startsWith('flickr8k'));
  const published = [
    ...(flickr ? PUBLISHED.flickr8k.rows.map((r) => ({ source: 'Flickr8k test (1,000 photos, 5 references)', system: r.system, 'BLEU-4': r.Bleu_4.toFixed(3), CIDEr: '' })) : []),
    ...PUBLISHED.seed.rows.map((r) => ({ source: PUBLISHED.seed.source, system: r.system, 'BLEU-4': r.Bleu_4.toFixed(3), CIDEr: '' })),
    ...PUBLISHED.paper.rows.map((r) => ({ source: PUBLISHED.paper.source, system: r.system, 'BLEU-4': r.Bleu_4.toFixed(4), CIDEr: r.CIDEr.toFixed(4) })),
  ];
  const L = ['### Their numbers (not ours; other data, other models)', '', tableMarkdown(published), ''];
  if (flickr) {
    L.push(
      'The published Flickr8k rows use ImageNet-trained VGG features (ours: the CenterNet stand-in, 1,640-d) and their own BLEU scripts (Karpathy & Fei-Fei: their own implementation; Xu et al.: the COCO toolkit\'s BLEU, without the brevity-penalty details always stated), on the original 500 x 375 photos (ours: whatever the mirror holds). Their numbers are theirs, printed for scale only.',
      '',
    );
  }
  return L;
}

/** The first photos of each evaluation set with a reference and every system's caption. */
export function samplesSection(ctx: ReportContext): string[] {
  const L: string[] = ['## Samples', ''];
  for (const set of ctx.evaluation.sets) {
    const clip = set.systems.filter((s) => s.kind === 'clipcap');
    const nn = set.systems.find((s) => s.key === 'nn_retrieval');
    const urls = publicPhotoUrls(set.evalImages);
    const rows = set.evalImages.slice(0, ctx.samples).map((g) => {
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
  return L;
}

/** How this run differs from the paper's, and what the numbers do not cover. */
export function limitationsSection(ctx: ReportContext): string[] {
  const { profile, evaluation, sizes } = ctx;
  const lim: string[] = [];
  if (profile.name !== 'paper') {
    if (profile.encoder.kind === 'centernet') {
      lim.push(
        'The image encoder is a stand-in, not CLIP: the CenterNet object detector shipped in `@vladmandic/human` (MobileNetV3 backbone trained on COCO\'s 80 classes), embedding = 80 class-heatmap maxima, 120 pooled backbone features and the 720-channel pools of the last two backbone blocks, each part centred on the training images and L2-normalised (1,640-d). It knows which COCO objects are present, not what CLIP\'s image-text training gives (scenes, attributes, actions), so captions describe objects better than anything else.',
      );
    }
    if (profile.lm.source !== 'hub') {
      lim.push(
        `The language model is not GPT-2 124M: no real GPT-2 weights exist offline, so a ${profile.lm.arch.nLayer}-layer, ${profile.lm.arch.nEmbd}-wide GPT-2 was pretrained here on ${ctx.lmPretrain ? `${ctx.lmPretrain.corpus.captions} captions (${ctx.lmPretrain.corpus.tokens} tokens${lmPacking(ctx.lmPretrain)})` : 'caption text'} (notebook 02b). It knows caption language only, so "fine-tuned vs frozen GPT-2" compares a small in-domain LM, not a general one: the frozen variant starts from a model that already writes captions.`,
      );
    }
    const subset = (k: string) => `${sizes[k]?.images ?? '?'} photos / ${sizes[k]?.captions ?? '?'} captions`;
    lim.push(
      `Data: train ${subset('train')}, validation ${subset('val')}, evaluation ${evaluation.sets.map((s) => `${s.label} ${s.evalImages.length} photos`).join(', ')}. ${ctx.notes.length && profile.data.source === 'mirror' ? 'The mirror lacked the full Flickr8k, so these are not the standard benchmark\'s numbers (see the data note above). ' : ''}${profile.data.source === 'custom' ? 'This is your own dataset, not a published benchmark: the numbers compare the two variants and the baselines with each other on it, not with published results. ' : ''}With few evaluation photos the metrics have wide confidence intervals (see the bootstrap intervals above).`,
    );
    lim.push(`Hyperparameters are scaled to the budget (all notebooks in ${profile.lm.source === 'hub' ? 'about two hours' : 'at most 90 minutes'} on two CPU cores): larger learning rates (the mapper at ${profile.mlp.lr.toExponential()}, a fine-tuned GPT-2 at ${profile.mlp.lmLrScale} times that), fewer epochs, a shorter warm-up, a shorter prefix and clip length for the transformer mapper; the optimizer is the original's (AdamW, eps 1e-6, no weight decay). See the table above, the recipe section and \`src/lib/config.ts\`.`);
  }
  lim.push('One training seed per variant: the intervals above cover the choice of evaluation photos, not training noise. Training runs on TensorFlow.js (wasm on CPU here), not PyTorch; numerics agree with float64 references in the tests, but the optimisation path is not bit-identical to the original code.');
  lim.push('METEOR and SPICE (Java tools in the COCO toolkit) are not computed.');
  return ['## Limitations', '', ...lim.map((l) => `- ${l}`), ''];
}
