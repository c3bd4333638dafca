// REPORT.md's wall times: what each notebook and training loop took, and (with the flickr8k-mini
// fallback) the time projected for the full Flickr8k.
import * as fs from 'fs';
import * as path from 'path';
import { tableMarkdown } from './display';
import { seconds } from './report-format';
import type { ReportContext, ReportRun } from './report-sections';
import { repoRoot } from '../paths';
import { overlapGroups, wallClockSeconds } from './schedule';

/** The budget of the offline profile: notebooks 01-06 in at most 90 minutes. */
const BUDGET_SECONDS = 90 * 60;

/** The full benchmark: 6,000 / 1,000 / 1,000 Flickr8k photos (5 captions each) plus coco-mini's 130 train and 186 val2017 photos. */
const FULL_FLICKR8K = { trainImages: 6130, trainCaptions: 30650, evalImages: 1186, photos: 8316 };

/** The time each notebook and training loop took, as a table, and which loops ran before their notebook. */
export function wallTimesSection(ctx: ReportContext): string[] {
  const L: string[] = ['### Wall times', ''];
  const rows: Record<string, unknown>[] = [];
  const notebooks = new Set(fs.readdirSync(path.join(repoRoot(), 'notebooks')));
  const before06 = Object.entries(ctx.timings ?? {})
    .filter(([nb]) => !nb.startsWith('06') && notebooks.has(nb))
    .sort(([a], [b]) => a.localeCompare(b));
  for (const [nb, t] of before06) rows.push({ step: nb.replace(/\.ipynb$/, ''), 'wall time': seconds(t.seconds), finished: t.finishedAt.replace('T', ' ').slice(0, 16) });
  // Notebooks that ran at the same time (02 and 02b, 03 and 04 on two cores) count once.
  const notebookSeconds = wallClockSeconds(before06.map(([, t]) => t));
  const together = overlapGroups(Object.fromEntries(before06));
  for (const r of ctx.runs) if (r.sum) rows.push({ step: `training loop of ${r.t.name}`, 'wall time': seconds(r.sum.trainSeconds), finished: r.sum.finishedAt.replace('T', ' ').slice(0, 16) });
  rows.push({ step: '06_evaluate (captioning, baselines, scoring)', 'wall time': seconds(ctx.evaluation.seconds), finished: ctx.now });
  if (ctx.timings) rows.push({ step: 'all notebooks (01-05 as last run, plus this 06)', 'wall time': seconds(notebookSeconds + ctx.evaluation.seconds), finished: ctx.now });
  L.push(tableMarkdown(rows), '');
  if (!ctx.timings) L.push('(Notebook wall times are recorded when the notebooks run through `npm run main`.)', '');
  if (together.length) {
    const names = together.map((g) => g.map((nb) => nb.replace(/\.ipynb$/, '')).join(' with '));
    L.push(`Ran at the same time, one process each on the machine's cores (scripts/run-notebooks.ts): ${names.join('; ')}. The total counts that time once.`, '');
  }
  const reused = ctx.runs.filter((r) => {
    const nb = Object.entries(ctx.timings ?? {}).find(([k]) => k.startsWith(r.t.mapper === 'mlp' ? '03' : '04'))?.[1];
    return r.sum && nb && nb.seconds < r.sum.trainSeconds;
  });
  if (reused.length) {
    L.push(
      `The training loop of ${reused.map((r) => r.t.name).join(' and ')} ran before its notebook (a dev-split trial of \`scripts/tune.ts\` with the same settings), and the notebook reused the finished run; the notebook total above leaves those loops out.`,
      '',
    );
  }
  if (ctx.notes.length && ctx.profile.data.source === 'mirror') L.push(...fullFlickrProjection(ctx));
  return L;
}

/**
 * With the flickr8k-mini fallback: how long the same notebooks would take on the full Flickr8k, each
 * measured time scaled by its amount of data (extraction by photos, training by training captions,
 * evaluation by evaluation photos; the LM pretraining is capped by lmPretrain.maxCaptions and stays).
 */
export function fullFlickrProjection(ctx: ReportContext): string[] {
  const { sizes, runs } = ctx;
  const notebookSeconds = (prefix: string) => Object.entries(ctx.timings ?? {}).find(([k]) => k.startsWith(prefix))?.[1]?.seconds;
  const haveTrainCaptions = sizes.train?.captions ?? 0;
  const havePhotos = (sizes.train?.images ?? 0) + (sizes.val?.images ?? 0) + (sizes.eval?.images ?? 0);
  const haveEvalPhotos = sizes.eval?.images ?? 0;
  if (!haveTrainCaptions || !havePhotos || !haveEvalPhotos) return [];
  const trainingFactor = FULL_FLICKR8K.trainCaptions / haveTrainCaptions;
  const rows: { step: string; measured: number | undefined; factor: number }[] = [
    { step: '01_data_subset', measured: notebookSeconds('01'), factor: 1 },
    { step: '02_extract_embeddings', measured: notebookSeconds('02_'), factor: FULL_FLICKR8K.photos / havePhotos },
    { step: 'LM pretraining, 02b (capped at lmPretrain.maxCaptions)', measured: ctx.lmPretrain?.summary.trainSeconds ?? notebookSeconds('02b'), factor: 1 },
    ...runs.map((r) => ({ step: `training loop of ${r.t.name}`, measured: r.sum?.trainSeconds, factor: trainingFactor })),
    { step: '05_plot_losses', measured: notebookSeconds('05'), factor: 1 },
    { step: '06_evaluate', measured: ctx.evaluation.seconds, factor: FULL_FLICKR8K.evalImages / haveEvalPhotos },
  ];
  const total = rows.reduce((a, r) => a + (r.measured ?? 0) * r.factor, 0);
  return [
    '### Projected time on the full Flickr8k',
    '',
    `This run used flickr8k-mini (see the data note). Scaling each time measured in this run (on a machine that was also running other work, so on the high side) by its amount of data gives the time of the same notebooks, same recipe, on the full benchmark (${FULL_FLICKR8K.photos} photos, ${FULL_FLICKR8K.trainCaptions} training captions):`,
    '',
    tableMarkdown(rows.map((r) => ({ step: r.step, measured: r.measured !== undefined ? seconds(r.measured) : '?', 'x data': r.factor.toFixed(2), projected: r.measured !== undefined ? seconds(r.measured * r.factor) : '?' }))),
    '',
    `Projected total: ${seconds(total)}${total > BUDGET_SECONDS ? ` — over the 90-minute budget: ${epochsWithinBudget(runs, total, trainingFactor)} (a projection, not a measurement).` : '.'}`,
    '',
  ];
}

/**
 * How many epochs would fit the budget: the projected training loops scale with the epochs, the
 * other steps do not.
 */
function epochsWithinBudget(runs: ReportRun[], projectedTotal: number, trainingFactor: number): string {
  const training = runs.reduce((a, r) => a + (r.sum?.trainSeconds ?? 0) * trainingFactor, 0);
  const rest = projectedTotal - training;
  const epochs = runs[0]?.t.epochs ?? 1;
  const fit = Math.max(1, Math.floor((epochs * (BUDGET_SECONDS - rest)) / Math.max(1, training)));
  return `the recipe's epochs would have to shrink to about ${fit}`;
}
