// Table rows the notebooks show: every notebook's configuration (configTable), sample photos of the
// subsets (01), the embedding stores and a nearest-neighbour sanity view (02), a trained run, its
// losses per epoch and captions (03, 04). Photos are thumbnails; a photo that cannot be read is shown
// as a note naming the file, never as a failed cell.
import * as path from 'path';
import { configRows, type ProfileConfig } from '../config';
import { estimateProfile, formatHours, speedsFor } from '../estimate';
import { loadSubsets } from '../data/build';
import { frameColumns, groupImages, SUBSET_SPLITS, type ImageGroup } from '../data/schema';
import type { Subsets } from '../data/subset';
import { EmbeddingStore } from '../embed/store';
import { type EmbeddingSet } from '../embed/embedding-set';
import type { ExtractResult } from '../embed/extract';
import { captionWithRun, decodeOf } from '../eval/caption';
import type { Evaluation } from '../eval/evaluate';
import { openEmbeddingsOfRun, readRunConfig, type RunConfig, type RunSummary } from '../run/run';
import { readEpochLog } from '../run/logs';
import { nearestNeighbours } from '../eval/knn';
import { escapeHtml, imgTag, thumbnailDataUri } from './display';

type Row = Record<string, unknown>;

/** How figures name a profile: "offline profile", or with your own dataset 'offline profile, dataset "my-photos"'. */
export function profileLabel(profile: Pick<ProfileConfig, 'name' | 'data'>): string {
  return profile.data.source === 'custom' && profile.data.custom ? `${profile.name} profile, dataset "${path.basename(profile.data.custom)}"` : `${profile.name} profile`;
}

/** An <img> of a photo, or a note naming the file and what is wrong with it. */
export async function photoCell(file: string, size: number): Promise<string> {
  try {
    return imgTag(await thumbnailDataUri(file, size), size);
  } catch (e) {
    return `<i>unreadable photo ${escapeHtml(path.basename(file))}: ${escapeHtml((e as Error).message.split('\n')[0])}</i>`;
  }
}

/** A few photos of each subset with their captions: one photo of each source first, then the next ones. */
export async function subsetSampleRows(subsets: Subsets, perSplit: number, size = 200): Promise<Row[]> {
  const rows: Row[] = [];
  for (const split of SUBSET_SPLITS) {
    const groups = groupImages(frameColumns(subsets[split]));
    const bySource = new Map<string, ImageGroup[]>();
    for (const g of groups) bySource.set(g.source, [...(bySource.get(g.source) ?? []), g]);
    const picks: ImageGroup[] = [];
    for (let i = 0; picks.length < perSplit && i < groups.length; i++) {
      for (const list of bySource.values()) if (list[i] && picks.length < perSplit) picks.push(list[i]);
    }
    for (const g of picks) {
      rows.push({
        split,
        photo: await photoCell(g.file, size),
        captions: g.captions.map((c) => escapeHtml(c)).join('<br/>'),
        source: `${g.source}<br/>${escapeHtml(g.image_id)}`,
      });
    }
  }
  return rows;
}

/** One row per embedding store: its size, rejects, and the speed of this and all extraction runs. */
export function storeRows(results: readonly ExtractResult[]): Row[] {
  return results.map((r) => {
    const store = EmbeddingStore.open(r.storeDir);
    const runs = store.meta.runs.filter((x) => x.embedded > 0);
    const secs = runs.reduce((a, x) => a + x.seconds, 0);
    const done = runs.reduce((a, x) => a + x.embedded + x.rejected, 0);
    return {
      dataset: r.dataset,
      photos: r.images,
      stored: store.size,
      rejected: store.rejects().length,
      'this run: embedded': r.embedded,
      'this run: s': Number(r.seconds.toFixed(1)),
      'extraction: s': Number(secs.toFixed(1)),
      'extraction: images/s': secs > 0 ? Number((done / secs).toFixed(2)) : '',
      workers: runs.length ? runs[runs.length - 1].workers : '',
      dim: store.dim,
    };
  });
}

/** The photos the stores rejected (unreadable files), with the reason. */
export function rejectRows(results: readonly ExtractResult[]): Row[] {
  return results.flatMap((r) => EmbeddingStore.open(r.storeDir).rejects().map((x) => ({ dataset: r.dataset, ...x })));
}

/**
 * A sanity view of the embeddings: `queries` photos (evaluation photos when there are enough),
 * each with its `neighbours` most cosine-similar photos among all embedded ones.
 */
export async function neighbourRows(
  set: EmbeddingSet,
  photos: readonly { image_id: string; file: string; split: string }[],
  queries: number,
  neighbours: number,
  size = 140,
): Promise<Row[]> {
  const all = photos.filter((x) => set.has(x.image_id));
  const fileOf = new Map(all.map((x) => [x.image_id, x.file]));
  const evalPhotos = all.filter((x) => x.split === 'eval');
  const pool = evalPhotos.length >= queries ? evalPhotos : all;
  const step = Math.max(1, Math.floor(pool.length / queries));
  const picks = Array.from({ length: Math.min(queries, pool.length) }, (_, i) => pool[i * step]);
  const candidates = new Map(all.map((x) => [x.image_id, set.get(x.image_id)]));
  const found = nearestNeighbours(candidates, new Map(picks.map((q) => [q.image_id, set.get(q.image_id)])), { k: neighbours });
  const rows: Row[] = [];
  for (const q of picks) {
    const cells: Row = { query: (await photoCell(q.file, size)) + `<br/>${escapeHtml(q.image_id)}` };
    for (const [i, n] of (found.get(q.image_id) ?? []).entries()) {
      cells[`#${i + 1}`] = (await photoCell(fileOf.get(n.id)!, size)) + `<br/>${escapeHtml(set.datasetOf(n.id) ?? '')} · cos ${n.similarity.toFixed(3)}`;
    }
    rows.push(cells);
  }
  return rows;
}

/** A few photos of a split with their references and this run's captions (HTML rows for a table). */
export async function captionSampleRows(
  profile: ProfileConfig,
  runDir: string,
  opts: { split: 'train' | 'val' | 'eval'; count: number; beam?: number },
): Promise<Row[]> {
  const config = readRunConfig(runDir);
  if (!config) throw new Error(`${runDir} is not a ClipCap run (no config.json)`);
  const emb = openEmbeddingsOfRun(config);
  const groups = groupImages(frameColumns(loadSubsets(profile)[opts.split]))
    .filter((g) => emb.has(g.image_id))
    .slice(0, opts.count);
  const caps = await captionWithRun(runDir, groups.map((g) => g.image_id), { ...decodeOf(profile.eval), beam: opts.beam ?? profile.eval.beam }, { embeddings: (id) => emb.get(id) });
  const rows: Row[] = [];
  for (const g of groups) {
    rows.push({ photo: await photoCell(g.file, 160), 'generated caption': caps.get(g.image_id)!, 'a reference': g.captions[0] ?? '', image: escapeHtml(g.image_id) });
  }
  return rows;
}

/** The first `count` evaluation photos: photo, a reference, and each system's caption (humans left out). */
export async function evalSampleRows(evaluation: Evaluation, count: number, size = 160): Promise<Row[]> {
  const rows: Row[] = [];
  for (const g of evaluation.evalImages.slice(0, count)) {
    const row: Row = { photo: await photoCell(g.file, size), 'ground truth': g.captions[0] };
    for (const s of evaluation.systems) if (s.kind !== 'human') row[s.label] = s.captions.get(g.image_id) ?? '';
    rows.push(row);
  }
  return rows;
}

/**
 * A configuration cell's table, the same in every notebook: each parameter with the profile's value
 * and the value used here (edited ones marked), so that a notebook shows its profile's defaults, not
 * the paper's; then `context` (e.g. the backend), as rows with a value used only.
 */
export function configTable(profileValues: object, used: object, context: Record<string, unknown> = {}): Row[] {
  const base = new Map(configRows(profileValues));
  return [
    ...configRows(used).map(([parameter, value]) => ({
      parameter,
      profile: base.get(parameter) ?? '',
      used: value,
      edited: base.has(parameter) && base.get(parameter) !== value ? '✎' : '',
    })),
    ...Object.entries(context).map(([parameter, value]) => ({ parameter, profile: '', used: String(value), edited: '' })),
  ];
}

/** Rows describing a finished (or interrupted) run (notebooks 03, 04). */
export function describeRun(config: RunConfig, summary: RunSummary): Row[] {
  const t = config.train;
  return [
    { item: 'variant', value: `${t.mapper} mapper + ${t.finetuneLM ? 'fine-tuned' : 'frozen'} GPT-2` },
    { item: 'language model', value: `${config.lm.source} (${config.lm.config.nLayer} layers, d=${config.lm.config.nEmbd}, vocabulary ${config.lm.vocabSize})` },
    { item: 'encoder', value: `${config.encoder.name} (${config.encoder.dim}-d)` },
    ...(config.data.dataset ? [{ item: 'dataset', value: `your dataset "${config.data.dataset.name}" (${config.data.dataset.folder})` }] : []),
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

/** A run's losses per epoch, with the image-use gap (notebooks 03, 04), and the table's caption. */
export function epochTable(runDir: string): { rows: Row[]; caption: string } {
  return {
    rows: readEpochLog(runDir).map((e) => ({
      epoch: e.epoch + 1,
      'train loss': e.trainLoss,
      'val loss': e.valLoss ?? '',
      'val loss, shuffled images': e.valLossShuffled ?? '',
      'image-use gap': e.valLossShuffled != null && e.valLoss != null ? e.valLossShuffled - e.valLoss : '',
      steps: e.steps,
      'time (s)': e.seconds,
    })),
    caption: 'mean token cross-entropy per epoch (nats); shuffled images: every val caption conditioned on another photo, so the gap is how much the model uses the image',
  };
}

/**
 * For the hub profiles (paper, coco-cpu) on a CPU backend: the estimated time of notebooks 01-06, a
 * row per stage, from the dry-run speeds (bench/dryrun.ts); null for the other profiles.
 */
export function estimateRows(profile: ProfileConfig, backend: string): { rows: Row[]; caption: string } | null {
  if (backend === 'tfjs-node-gpu') return null;
  const est = estimateProfile(profile, speedsFor(backend === 'tfjs-node' ? 'tfjs-node' : 'wasm'));
  if (!est) return null;
  return {
    rows: est.stages.map((s) => ({ notebook: s.notebook, what: s.what, time: formatHours(s.seconds) })),
    caption: `estimated time of notebooks 01-06 on this kind of CPU machine: about ${formatHours(est.totalSeconds)} (speeds: ${est.basis}; random weights never stop a caption early, so beam search is an upper bound)`,
  };
}
