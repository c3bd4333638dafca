// Build a profile's train / val / eval subsets from its data source and write them under
// artifactPaths(profile).subsets:
//   paper    COCO 2014, Karpathy split (downloaded; the local mirror first): train captions from
//            train + restval, val captions from val, eval images from test.
//   coco-cpu the same COCO sources as paper, fewer captions and evaluation photos.
//   offline  the local mirror: the Flickr8k standard split (flickr8k-mini where the mirror has only
//            that) and coco-mini: train from Flickr8k train and coco-mini's train2017 photos, val from
//            Flickr8k dev, eval from Flickr8k test and coco-mini's val2017 photos.
//   smoke    synthetic fixtures generated under data/smoke/synthetic.
//   custom   your own dataset folder (CLIPCAP_DATASET, any profile; data/custom.ts): its split files,
//            else a seeded draw by photo; its artifacts under data/<profile>/custom/<name>-<hash>/.
import * as path from 'path';
import pl from 'nodejs-polars';
import { CUSTOM_EVAL_SHARE, profileConfig, type DataConfig, type ProfileConfig } from '../config';
import { artifactPaths, mirrorDir, requireMirrorDir } from '../paths';
import type { Environment } from '../settings';
import { checkMirror, loadMirrorDataset, resolveMirrorDatasets } from './mirror';
import { generateSynthetic } from './synthetic';
import { splitByImage, writeSubsets, readSubsets, type SplitSpec, type Subsets, type SubsetManifest } from './subset';
import { concatFrames, frameColumns, groupImages, type ImageGroup } from './schema';
import { datasetNotes, loadCustomDataset, type CustomDatasetSummary } from './custom';
import { prepareKarpathyCoco, fetchSubsetPhotos } from './remote';
import { validateProfile } from '../validate';

export interface BuildOptions {
  /** Repository root for artifactPaths (tests use a temporary one). */
  root?: string;
  /** Environment (CLIPCAP_DATA_DIR, CLIPCAP_CACHE). */
  env?: Environment;
  /** Data mirror folder (default: CLIPCAP_DATA_DIR or ../shared/data; null: no mirror). */
  mirror?: string | null;
  /** Download cache (default: CLIPCAP_CACHE or data/cache). */
  cache?: string;
  /** Where progress lines go (default: Progress's own). */
  log?: (line: string) => void;
}

export interface BuildResult extends Subsets {
  dir: string;
  manifest: SubsetManifest;
  seconds: number;
}

/** The mirror a build may use: the option (null = none), else CLIPCAP_DATA_DIR or ../shared/data. */
function mirrorFor(opts: BuildOptions, env: Environment | undefined): string | null {
  return opts.mirror === undefined ? mirrorDir(env) : opts.mirror;
}

function resolveCfg(cfg: ProfileConfig | string): ProfileConfig {
  return typeof cfg === 'string' ? profileConfig(cfg) : cfg;
}

/** The caption rows a profile's subsets are drawn from, the files they came from, and (a dataset of your own) what was read. */
export async function loadProfileSource(cfg: ProfileConfig, opts: BuildOptions = {}): Promise<{ df: pl.DataFrame; inputs: string[]; notes: string[]; dataset?: CustomDatasetSummary }> {
  const env = opts.env;
  const d = cfg.data;
  if (d.source === 'custom') {
    if (!d.custom) throw new Error('data.source "custom" needs data.custom, the folder of your dataset: set CLIPCAP_DATASET=/path/to/folder');
    const { df, summary } = await loadCustomDataset(d.custom);
    return { df, inputs: [summary.captionsFile, ...summary.splitFiles.map((f) => path.join(summary.folder, 'splits', f))], notes: datasetNotes(summary), dataset: summary };
  }
  if (d.source === 'synthetic') {
    const dir = path.join(artifactPaths(cfg, opts.root).root, 'synthetic');
    const df = await generateSynthetic({ dir, images: d.synthetic.images, size: d.synthetic.size, seed: d.seed });
    return { df, inputs: [path.join(dir, 'captions.json')], notes: [] };
  }
  if (d.source === 'mirror') {
    if (opts.mirror === null) throw new Error('the offline profile needs a local data mirror: set CLIPCAP_DATA_DIR (see data/README.md)');
    const root = opts.mirror ?? requireMirrorDir(env);
    if (d.datasets.length === 0) throw new Error('data.datasets is empty: list the mirror datasets to use (flickr8k, coco-mini)');
    const { datasets, notes } = resolveMirrorDatasets(root, d.datasets);
    const layout = checkMirror(root, datasets);
    const frames = datasets.map((n) => loadMirrorDataset(layout, n));
    const inputs = datasets.map((n) => (n === 'coco-mini' ? layout.cocoMini.captions : n === 'flickr8k' ? layout.flickr8k.captions : layout.flickr8kMini.captions));
    return { df: concatFrames(frames), inputs, notes };
  }
  if (d.source === 'coco-karpathy') {
    const { df, inputs } = await prepareKarpathyCoco(cfg, { env, cache: opts.cache, mirror: mirrorFor(opts, env), log: opts.log });
    return { df, inputs, notes: [] };
  }
  throw new Error(`unknown data.source "${String(d.source)}": use coco-karpathy, mirror, synthetic or custom (CLIPCAP_DATASET)`);
}

/**
 * Split rows by the rules of the profile's source (see the file comment). A dataset of your own:
 * `splitFiles` are the split files it has (CustomDatasetSummary.splitFiles; default: read from the
 * split column).
 */
export function splitForProfile(cfg: ProfileConfig, df: pl.DataFrame, splitFiles?: readonly string[]): Subsets {
  const d = cfg.data;
  if (d.source === 'custom') {
    const files = splitFiles ?? [...new Set(df.getColumn('split').toArray() as string[])].filter((s) => s !== 'none').map((s) => `${s}.txt`);
    return splitByImage(df, customSplitSpec(df, d, files));
  }
  const base = { seed: d.seed, evalImages: d.evalImages, evalMinCaptions: d.evalMinCaptions, trainCaptions: d.trainCaptions, valCaptions: d.valCaptions };
  if (d.source === 'coco-karpathy') {
    return splitByImage(df, {
      ...base,
      evalPool: (g) => g.split === 'test',
      trainPool: (g) => g.split === 'train' || g.split === 'restval',
      val: { pool: (g) => g.split === 'val' },
    });
  }
  if (d.source === 'mirror') {
    // The Flickr8k benchmark: train on the standard train photos (and coco-mini's train2017 photos),
    // validate on dev, evaluate on test and, as a second set, on coco-mini's val2017 photos.
    const flickr = (g: { source: string }) => g.source === 'flickr8k' || g.source === 'flickr8k-mini';
    return splitByImage(df, {
      ...base,
      evalPool: (g) => (flickr(g) && g.split === 'test') || (g.source === 'coco-mini' && g.split === 'val2017'),
      trainPool: (g) => (flickr(g) && g.split === 'train') || (g.source === 'coco-mini' && g.split === 'train2017'),
      val: { pool: (g) => flickr(g) && g.split === 'val' },
    });
  }
  return splitByImage(df, { ...base, val: { fraction: d.valFraction } });
}

/**
 * Build and write the subsets of a profile (a config, or a profile name). Rerunning with the same
 * config and inputs gives byte-identical files. On any error the previous subsets stay as they were.
 */
export async function buildSubsets(cfgOrName: ProfileConfig | string, opts: BuildOptions = {}): Promise<BuildResult> {
  const t0 = Date.now();
  const cfg = validateProfile(resolveCfg(cfgOrName));
  const { df, inputs, notes, dataset } = await loadProfileSource(cfg, opts);
  for (const n of notes) console.warn(`[data] NOTE: ${n}`);
  let subsets = splitForProfile(cfg, df, dataset?.splitFiles);
  if (cfg.data.source === 'coco-karpathy') {
    subsets = await fetchSubsetPhotos(cfg, subsets, { env: opts.env, cache: opts.cache, mirror: mirrorFor(opts, opts.env), log: opts.log });
  }
  const dir = artifactPaths(cfg, opts.root).subsets;
  const manifest = await writeSubsets(dir, subsets, { profile: cfg.name, config: cfg.data, inputs, notes, ...(dataset ? { dataset } : {}) });
  return { ...subsets, dir, manifest, seconds: (Date.now() - t0) / 1000 };
}

/** The subsets of a profile as written by buildSubsets (a clear error when there are none). */
export function loadSubsets(cfgOrName: ProfileConfig | string, root?: string): Subsets & { manifest: SubsetManifest; dir: string } {
  const cfg = resolveCfg(cfgOrName);
  const dir = artifactPaths(cfg, root).subsets;
  return { ...readSubsets(dir, cfg.name), dir };
}

/**
 * How the photos of a dataset of your own are split (see the file comment): a split file present fixes
 * its split; the rest is a seeded draw by photo. evalImages 0: every photo of splits/test.txt, or
 * without it one photo in ten of the evaluation pool (at least one).
 */
export function customSplitSpec(df: pl.DataFrame, d: Pick<DataConfig, 'seed' | 'evalImages' | 'evalMinCaptions' | 'trainCaptions' | 'valCaptions' | 'valFraction'>, splitFiles: readonly string[]): SplitSpec {
  const has = (s: string) => splitFiles.includes(`${s}.txt`);
  const evalPool = (g: ImageGroup) => (has('test') ? g.split === 'test' : g.split === 'none');
  const trainPool = (g: ImageGroup) => (has('train') ? g.split === 'train' : g.split === 'none');
  const groups = groupImages(frameColumns(df), 'your dataset');
  const pool = groups.filter((g) => evalPool(g) && g.captions.length >= d.evalMinCaptions);
  if (pool.length === 0) {
    throw new Error(
      has('test')
        ? `no evaluation photos: none of the photos of splits/test.txt is usable with at least ${d.evalMinCaptions} caption(s) (see the data notes); fix splits/test.txt, or remove it to draw evaluation photos`
        : `no evaluation photos: ${has('train') ? 'every photo is in splits/train.txt or val.txt, so none is left to evaluate on; add splits/test.txt' : `no photo has at least data.evalMinCaptions = ${d.evalMinCaptions} captions`}`,
    );
  }
  const evalImages = d.evalImages > 0 ? d.evalImages : has('test') ? 0 : Math.max(1, Math.round(CUSTOM_EVAL_SHARE * pool.length));
  return {
    seed: d.seed,
    evalImages,
    evalMinCaptions: d.evalMinCaptions,
    evalPool,
    trainPool,
    val: has('val') ? { pool: (g) => g.split === 'val' } : { fraction: d.valFraction },
    trainCaptions: d.trainCaptions,
    valCaptions: d.valCaptions,
  };
}
