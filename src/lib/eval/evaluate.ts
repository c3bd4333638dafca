// Evaluation of a profile, per evaluation set (the evaluation photos grouped by their source: the
// offline profile has Flickr8k test and COCO val2017; a dataset of your own, its evaluation photos): captions for every evaluation photo from each
// trained variant (beam search by default), the baselines (nearest-neighbour caption retrieval with
// the same encoder, and the human leave-one-out row where photos have 5 references), all scored with
// the COCO caption toolkit's metrics (src/lib/eval/metrics), and the diversity of each system's
// captions. Files under data/<profile>/eval/<set>/:
//   annotations.json        the evaluation references in the COCO captions format
//   <system>.results.json   each system's captions in the COCO results format [{image_id, caption}]
//   <system>.meta.json      how they were made (run folder, photos, decoding, time): a rerun reuses the
//                           captions only when all of it is the same, else makes them again
// The retrieval baseline and the human row are computed afresh each time (from the current subsets).
// A run trained on another draw of the data than the current subsets is refused (run/run.ts
// dataDrawProblem).
//   scores.json             corpus and per-image scores of every system, bootstrap intervals of BLEU-4
//                           and CIDEr-D, and paired differences between the systems
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { ensureBackend } from '../tfjs/backend';
import { humanLeaveOneOut, retrievalCaptions } from './baselines';
import { captionWithRun, decodeForVariant, decodeOf, describeDecode, type DecodeConfig } from './caption';
import { variantLabel, type EvalConfig, type ProfileConfig, type TrainConfig } from '../config';
import { loadSubsets } from '../data/build';
import { frameColumns, groupImages, type ImageGroup } from '../data/schema';
import { readJson, writeJsonAtomic } from '../util/files';
import { differenceInterval, scoreCaptions, scoreInterval, METRIC_NAMES, type CaptionScores, type Interval, type MetricName, type MetricScores } from './metrics/index';
import { artifactPaths, runDirectory, safeName } from '../paths';
import { captionDiversity, type Diversity } from './diversity';
import type { EmbeddingSet } from '../embed/embedding-set';
import { Progress } from '../util/progress';
import { openEmbeddings } from '../embed/open';
import { dataDrawProblem, readRunConfig, readRunSummary } from '../run/run';
import { subsetIdentity } from '../data/subset';
import { ConfigError, evalProblems, validateProfile } from '../validate';

export type SystemKind = 'clipcap' | 'baseline' | 'human';

export interface SystemResult {
  /** File-safe key (run name, 'nn_retrieval', 'human'). */
  key: string;
  label: string;
  kind: SystemKind;
  /** Captions by image id (not for the human row, which has 5 rotations). */
  captions: Map<string, string>;
  scores: MetricScores;
  perImage: Map<string, MetricScores>;
  images: number;
  /** Seconds it took to produce the captions (when reused, the earlier run's time). */
  seconds: number;
  note: string;
  /** Bootstrap intervals over the evaluation photos (not for the human row). */
  intervals: Partial<Record<MetricName, Interval>>;
  /** Distinct captions and vocabulary (not for the human row). */
  diversity?: Diversity;
}

/** The metrics that get bootstrap intervals and paired comparisons. */
export const INTERVAL_METRICS: readonly MetricName[] = ['Bleu_4', 'CIDEr'];

/** A paired bootstrap comparison: system `a` minus system `b` on the same photos. */
export interface Comparison {
  a: string;
  b: string;
  metric: MetricName;
  interval: Interval;
}

export interface EvaluationOptions {
  decode: DecodeConfig;
  /** Decoding settings of one variant that differ from `decode` (EvalConfig.byVariant). */
  decodeByVariant?: EvalConfig['byVariant'];
  /** Neighbours pooled by the retrieval baseline. */
  retrievalK: number;
  /** Variants to caption (default: the profile's two). */
  variants?: TrainConfig[];
  /** Regenerate captions even when an earlier run's are still valid. */
  force?: boolean;
}

/** One evaluation set of a profile. */
export interface Evaluation {
  profile: string;
  /** File-safe key of the set (the folder under data/<profile>/eval/), e.g. 'flickr8k-test'. */
  key: string;
  /** Human name of the set, e.g. 'Flickr8k test'. */
  label: string;
  evalImages: ImageGroup[];
  refs: Map<string, string[]>;
  systems: SystemResult[];
  /** Each ClipCap variant against the other and against the retrieval baseline. */
  comparisons: Comparison[];
  dir: string;
}

/** Every evaluation set of a profile; the first is the main one (the benchmark). */
export interface ProfileEvaluation {
  profile: string;
  sets: Evaluation[];
  /** Wall seconds the evaluation took (captioning, baselines, scoring). */
  seconds: number;
}

/** The evaluation set of a photo, by its source: key, label, and order (the benchmark first); `dataset`: the name of a dataset of your own. */
export function evalSetOf(source: string, dataset?: string): { key: string; label: string; order: number } {
  switch (source) {
    case 'custom':
      return { key: 'custom-test', label: `${dataset ?? 'your dataset'} (your dataset)`, order: 0 };
    case 'flickr8k':
      return { key: 'flickr8k-test', label: 'Flickr8k test', order: 0 };
    case 'flickr8k-mini':
      return { key: 'flickr8k-mini-test', label: 'Flickr8k test (flickr8k-mini: the test photos it holds)', order: 0 };
    case 'coco-mini':
      return { key: 'coco-val2017', label: 'COCO val2017 (coco-mini)', order: 1 };
    case 'coco2014':
      return { key: 'coco-karpathy-test', label: 'COCO Karpathy test', order: 0 };
    default:
      return { key: safeName(source), label: source, order: 2 };
  }
}

/** The evaluation photos grouped into sets (see evalSetOf), the benchmark first. */
export function evalSets(groups: readonly ImageGroup[], dataset?: string): { key: string; label: string; groups: ImageGroup[] }[] {
  const sets = new Map<string, { key: string; label: string; order: number; groups: ImageGroup[] }>();
  for (const g of groups) {
    const s = evalSetOf(g.source, dataset);
    if (!sets.has(s.key)) sets.set(s.key, { ...s, groups: [] });
    sets.get(s.key)!.groups.push(g);
  }
  return [...sets.values()].sort((a, b) => a.order - b.order || (a.key < b.key ? -1 : 1)).map(({ key, label, groups: g }) => ({ key, label, groups: g }));
}

/** COCO's results format wants numeric ids where the dataset has them. */
function cocoId(id: string): string | number {
  return /^\d+$/.test(id) ? Number(id) : id;
}

function writeResults(file: string, captions: Map<string, string>): void {
  writeJsonAtomic(
    file,
    [...captions].map(([id, caption]) => ({ image_id: cocoId(id), caption })),
  );
}

function readResults(file: string): Map<string, string> {
  const arr = readJson<{ image_id: string | number; caption: string }[]>(file);
  return new Map(arr.map((r) => [String(r.image_id), r.caption]));
}

/** How a system's cached captions were made: they are reused only when all of it is the same. */
export interface CaptionMeta {
  run: string;
  /** The run folder (runs/<name>@<hash>, the latest link resolved): another run is another key. */
  runFolder: string;
  finishedAt: string;
  decode: DecodeConfig;
  images: number;
  /** A hash of the photos' ids in order (the same number of other photos is another key). */
  imageIds: string;
  seconds: number;
}

function idsHash(ids: Iterable<string>): string {
  const h = crypto.createHash('sha256');
  for (const id of ids) h.update(`${id}\n`);
  return h.digest('hex').slice(0, 16);
}

/** The cache key of a run's captions of these photos with this decoding (see cachedCaptions). */
export function captionMetaFor(o: { name: string; runDir: string; finishedAt: string; decode: DecodeConfig; imageIds: readonly string[] }): Omit<CaptionMeta, 'seconds'> {
  return { run: o.name, runFolder: path.basename(o.runDir), finishedAt: o.finishedAt, decode: decodeOf(o.decode), images: o.imageIds.length, imageIds: idsHash(o.imageIds) };
}

const META_KEYS = ['run', 'runFolder', 'finishedAt', 'decode', 'images', 'imageIds'] as const;

/**
 * The captions cached in `dir` as <key>.results.json and <key>.meta.json when they were made by the
 * same run folder, of the same photos, with the same decoding (`want`), and cover exactly those photos;
 * null otherwise (a meta file of an older format included), and they are made again.
 */
export function cachedCaptions(dir: string, key: string, want: Omit<CaptionMeta, 'seconds'>): { captions: Map<string, string>; meta: CaptionMeta } | null {
  const resultsFile = path.join(dir, `${key}.results.json`);
  const metaFile = path.join(dir, `${key}.meta.json`);
  if (!fs.existsSync(resultsFile) || !fs.existsSync(metaFile)) return null;
  try {
    const earlier = readJson<CaptionMeta>(metaFile);
    const pick = (m: Partial<CaptionMeta>) => JSON.stringify(META_KEYS.map((k) => (k === 'decode' && m.decode ? decodeOf(m.decode) : m[k]) ?? null));
    if (pick(earlier) !== pick(want)) return null;
    const captions = readResults(resultsFile);
    if (captions.size !== want.images || idsHash(captions.keys()) !== want.imageIds) return null;
    return { captions, meta: earlier };
  } catch {
    return null; // unreadable: made again
  }
}

/** Caption the evaluation photos with one trained variant (reusing valid earlier captions). */
async function captionVariant(profile: ProfileConfig, t: TrainConfig, groups: ImageGroup[], emb: Map<string, Float32Array>, opts: EvaluationOptions, dir: string, dataIdentity: string): Promise<SystemResult | null> {
  const runDir = runDirectory(profile, t.name);
  const summary = readRunSummary(runDir);
  const config = readRunConfig(runDir);
  if (!summary || !config) return null;
  const problem = dataDrawProblem(config, dataIdentity);
  if (problem) throw new Error(problem);
  if (!config.data.identity) console.warn(`[eval] ${t.name}: the run does not record which data it was trained on (made by an older version); rerun notebook ${t.mapper === 'mlp' ? '03' : '04'} if notebook 01 ran again since`);
  const resultsFile = path.join(dir, `${t.name}.results.json`);
  const metaFile = path.join(dir, `${t.name}.meta.json`);
  const ids = groups.map((g) => g.image_id);
  const decode = decodeForVariant({ ...opts.decode, byVariant: opts.decodeByVariant }, t.mapper);
  const want = captionMetaFor({ name: t.name, runDir: fs.realpathSync(runDir), finishedAt: summary.finishedAt, decode, imageIds: ids });
  const hit = opts.force ? null : cachedCaptions(dir, t.name, want);
  let captions: Map<string, string>;
  let meta: CaptionMeta;
  if (hit) ({ captions, meta } = hit);
  else {
    const t0 = Date.now();
    const bar = new Progress({ total: groups.length, label: `captioning (${t.name})`, unit: 'img' });
    captions = await captionWithRun(runDir, ids, decode, { embeddings: (id) => emb.get(id)!, onChunk: (n) => bar.tick(n) });
    meta = { ...want, seconds: (Date.now() - t0) / 1000 };
    writeResults(resultsFile, captions);
    writeJsonAtomic(metaFile, meta);
  }
  return {
    key: t.name,
    label: variantLabel(t),
    kind: 'clipcap',
    captions,
    scores: {} as MetricScores,
    perImage: new Map(),
    intervals: {},
    images: captions.size,
    seconds: meta.seconds,
    note: describeDecode(decode),
  };
}

/** Evaluate every trained variant of a profile and the baselines on each evaluation set. */
export async function evaluateProfile(profile: ProfileConfig, opts: EvaluationOptions): Promise<ProfileEvaluation> {
  const started = Date.now();
  validateProfile(profile);
  const problems = evalProblems({ ...profile.eval, ...decodeOf(opts.decode), byVariant: opts.decodeByVariant, retrievalK: opts.retrievalK } as EvalConfig);
  if (problems.length) throw new ConfigError(problems);
  await ensureBackend();
  const subsets = loadSubsets(profile);
  const embSet = openEmbeddings(profile);
  const allEval = groupImages(frameColumns(subsets.eval), 'eval subset');
  const missing = allEval.filter((g) => !embSet.has(g.image_id));
  if (missing.length) throw new Error(`${missing.length} evaluation photos have no embedding (e.g. ${missing[0].image_id}): run notebook 02 first`);
  const trainGroups = groupImages(frameColumns(subsets.train), 'train subset').filter((g) => embSet.has(g.image_id));
  const dataIdentity = subsetIdentity(subsets);
  const sets: Evaluation[] = [];
  for (const set of evalSets(allEval, profile.data.custom ? path.basename(profile.data.custom) : undefined)) {
    console.log(`[eval] ${set.label}: ${set.groups.length} photos`);
    sets.push(await evaluateSet(profile, set, trainGroups, embSet, opts, dataIdentity));
  }
  return { profile: profile.name, sets, seconds: (Date.now() - started) / 1000 };
}

/** One evaluation set: caption, score, compare (see the file comment). */
async function evaluateSet(
  profile: ProfileConfig,
  set: { key: string; label: string; groups: ImageGroup[] },
  trainGroups: ImageGroup[],
  embSet: EmbeddingSet,
  opts: EvaluationOptions,
  dataIdentity: string,
): Promise<Evaluation> {
  const dir = path.join(artifactPaths(profile).eval, set.key);
  fs.mkdirSync(dir, { recursive: true });
  const evalGroups = set.groups;
  const refs = new Map(evalGroups.map((g) => [g.image_id, g.captions]));
  writeJsonAtomic(path.join(dir, 'annotations.json'), {
    images: evalGroups.map((g) => ({ id: cocoId(g.image_id), file_name: path.basename(g.file) })),
    annotations: evalGroups.flatMap((g) => g.captions.map((caption) => ({ image_id: cocoId(g.image_id), caption }))),
  });
  const evalEmb = new Map(evalGroups.map((g) => [g.image_id, embSet.get(g.image_id)]));

  const systems: SystemResult[] = [];
  for (const t of opts.variants ?? [profile.mlp, profile.transformer]) {
    const r = await captionVariant(profile, t, evalGroups, evalEmb, opts, dir, dataIdentity);
    if (r) systems.push(r);
  }

  // Nearest-neighbour retrieval with the same encoder: the consensus caption of the k nearest training photos.
  const t0 = Date.now();
  const nn = retrievalCaptions(trainGroups, (id) => embSet.get(id), evalEmb, opts.retrievalK);
  writeResults(path.join(dir, 'nn_retrieval.results.json'), nn);
  systems.push({
    key: 'nn_retrieval',
    label: `Nearest-neighbour retrieval (k=${opts.retrievalK})`,
    kind: 'baseline',
    captions: nn,
    scores: {} as MetricScores,
    perImage: new Map(),
    intervals: {},
    images: nn.size,
    seconds: (Date.now() - t0) / 1000,
    note: `consensus caption (CIDEr-D) of the ${opts.retrievalK} nearest of ${trainGroups.length} training photos, same encoder`,
  });

  const scored = new Map<string, CaptionScores<string>>();
  for (const s of systems) {
    const sc = scoreCaptions(refs, s.captions);
    scored.set(s.key, sc);
    s.scores = sc.scores;
    s.perImage = sc.perImage;
    for (const m of INTERVAL_METRICS) s.intervals[m] = scoreInterval(sc, m, { seed: 1 });
    s.diversity = captionDiversity(s.captions.values());
  }
  const comparisons: Comparison[] = [];
  const variants = systems.filter((s) => s.kind === 'clipcap');
  const pairs: [SystemResult, SystemResult][] = [];
  for (let i = 0; i < variants.length; i++) for (let j = i + 1; j < variants.length; j++) pairs.push([variants[i], variants[j]]);
  const baseline = systems.find((s) => s.key === 'nn_retrieval');
  if (baseline) for (const v of variants) pairs.push([v, baseline]);
  for (const [a, b] of pairs) {
    for (const m of INTERVAL_METRICS) {
      comparisons.push({ a: a.key, b: b.key, metric: m, interval: differenceInterval(scored.get(a.key)!, scored.get(b.key)!, m, { seed: 2 }) });
    }
  }

  // Human leave-one-out (photos with 5 references).
  const five = new Map([...refs].filter(([, r]) => r.length >= 5));
  if (five.size > 0) {
    const h = humanLeaveOneOut(five);
    systems.push({
      key: 'human',
      label: 'Human (leave-one-out)',
      kind: 'human',
      captions: new Map(),
      scores: h.scores,
      perImage: new Map(),
      intervals: {},
      images: h.count,
      seconds: 0,
      note: 'each reference scored against the other four, mean of the 5 rotations',
    });
  }

  writeJsonAtomic(path.join(dir, 'scores.json'), {
    profile: profile.name,
    set: set.key,
    label: set.label,
    images: evalGroups.length,
    systems: systems.map((s) => ({
      key: s.key,
      label: s.label,
      kind: s.kind,
      images: s.images,
      note: s.note,
      seconds: s.seconds,
      scores: s.scores,
      intervals: s.intervals,
      ...(s.diversity ? { diversity: s.diversity } : {}),
      perImage: Object.fromEntries(s.perImage),
    })),
    comparisons,
  });
  return { profile: profile.name, key: set.key, label: set.label, evalImages: evalGroups, refs, systems, comparisons, dir };
}

/** The metrics table: one row per system, toolkit keys as columns. */
export function metricsRows(systems: SystemResult[]): Record<string, unknown>[] {
  return systems.map((s) => {
    const row: Record<string, unknown> = { system: s.label, images: s.images };
    for (const m of METRIC_NAMES) row[m] = s.scores[m];
    for (const m of INTERVAL_METRICS) {
      const iv = s.intervals[m];
      row[`${m} 95% CI`] = iv ? `[${iv.lo.toFixed(3)}, ${iv.hi.toFixed(3)}]` : '';
    }
    row['distinct captions'] = s.diversity ? `${(100 * s.diversity.share).toFixed(0)}%` : '';
    row.vocabulary = s.diversity?.vocabulary ?? '';
    return row;
  });
}
