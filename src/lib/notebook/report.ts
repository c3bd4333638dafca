// REPORT.md, written from run artifacts only: the inputs are gathered once into a ReportContext,
// then each section (report-sections.ts, report-times.ts) writes its lines.
import * as fs from 'fs';
import * as path from 'path';
import { artifactPaths, pretrainedLMDir, runDirectory, type ArtifactOwner } from '../paths';
import { readRunConfig, readRunSummary } from '../run/run';
import { readJson, writeFileAtomic } from '../util/files';
import type { SubsetManifest } from '../data/subset';
import { convergenceStats, loadVariantLosses, seedFinding } from './convergence';
import {
  headerSection,
  hyperparametersSection,
  limitationsSection,
  metricsSection,
  recipeSection,
  samplesSection,
  setupSection,
  summarySection,
  trainingSection,
  type NotebookTimings,
  type ReportContext,
  type ReportInputs,
} from './report-sections';
import { wallTimesSection } from './report-times';

export type { ReportInputs } from './report-sections';

/** The run artifacts every section reads, gathered once. */
function reportContext(inp: ReportInputs): ReportContext {
  const { profile, evaluation } = inp;
  const paths = artifactPaths(profile);
  const runs = [profile.mlp, profile.transformer].map((t) => {
    const dir = runDirectory(profile, t.name);
    return { t, dir, cfg: readRunConfig(dir), sum: readRunSummary(dir) };
  });
  const stats = loadVariantLosses(profile).map((v) => convergenceStats(v));
  const manifest = readJson<Pick<SubsetManifest, 'sizes' | 'notes' | 'dataset'>>(path.join(paths.subsets, 'manifest.json'));
  if (!evaluation.sets[0]) throw new Error('the evaluation has no evaluation set: run notebook 06 on a profile with evaluation photos');
  return {
    ...inp,
    runs,
    sizes: manifest.sizes,
    notes: manifest.notes ?? [],
    ...(manifest.dataset ? { dataset: manifest.dataset } : {}),
    stats,
    finding: stats.length === 2 ? seedFinding(stats[0], stats[1]) : null,
    now: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
    artifactsRoot: paths.root,
    relToReport: (p) => path.relative(path.dirname(paths.report), p).split(path.sep).join('/'),
  };
}

/** The report's lines: the summary (what notebook 06 shows), then the rest. */
function reportParts(inp: ReportInputs): { summary: string[]; rest: string[] } {
  const ctx = reportContext(inp);
  return {
    summary: [...headerSection(ctx), ...summarySection(ctx)],
    rest: [
      ...setupSection(ctx),
      ...hyperparametersSection(ctx),
      ...wallTimesSection(ctx),
      ...trainingSection(ctx),
      ...recipeSection(ctx),
      ...metricsSection(ctx),
      ...samplesSection(ctx),
      ...limitationsSection(ctx),
    ],
  };
}

/** The full text of REPORT.md, from artifacts only. */
export function renderReport(inp: ReportInputs): string {
  const { summary, rest } = reportParts(inp);
  return [...summary, ...rest].join('\n');
}

/**
 * Write REPORT.md (smoke: data/smoke/REPORT.md) atomically. The notebook timings, the loss figure of
 * notebook 05 and the LM pretraining summary of notebook 02b are read from the profile's artifacts
 * unless given. Returns the file and the report's title and summary (Markdown), for notebook 06 to show.
 */
export function writeReport(inp: Omit<ReportInputs, 'timings' | 'lossFigure' | 'lmPretrain'> & Partial<ReportInputs>): { file: string; summary: string } {
  const paths = artifactPaths(inp.profile);
  const lossFigure = path.join(paths.figures, 'loss.png');
  const pretrainFile = path.join(pretrainedLMDir(inp.profile), 'pretrain.json');
  const full: ReportInputs = {
    timings: readTimings(inp.profile),
    lossFigure: fs.existsSync(lossFigure) ? lossFigure : undefined,
    lmPretrain: inp.profile.lm.source !== 'hub' && fs.existsSync(pretrainFile) ? readJson(pretrainFile) : null,
    ...inp,
  };
  const { summary, rest } = reportParts(full);
  writeFileAtomic(paths.report, [...summary, ...rest].join('\n'));
  return { file: paths.report, summary: summary.join('\n') };
}

/** Notebook wall times recorded by scripts/run-notebooks.ts, if any. */
export function readTimings(profile: ArtifactOwner): NotebookTimings | undefined {
  const f = path.join(artifactPaths(profile).executed, 'timings.json');
  return fs.existsSync(f) ? readJson(f) : undefined;
}
