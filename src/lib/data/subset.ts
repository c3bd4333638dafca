// Seeded, reproducible subsetting by image into train / val / eval, and the subset files on disk.
//
// An image goes to one split only, with all its captions (the last training / validation image may
// lose some captions so that the caption counts hit their targets exactly). The choice depends on the
// seed and the set of input rows only, not on their order. The subsets are written as parquet files
// ({train,val,eval}.parquet, the caption schema with split = train | val | eval) plus manifest.json,
// all into a fresh directory that replaces the old one when complete.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import pl from 'nodejs-polars';
import type { DataConfig } from '../config';
import type { CustomDatasetSummary } from './custom';
import { buildDirAtomic, writeJsonAtomic } from '../util/files';
import { rngFor, shuffled } from '../util/rng';
import {
  SUBSET_SPLITS,
  assertCaptionFrame,
  captionFrame,
  concatFrames,
  countBySplitSource,
  frameColumns,
  groupImages,
  groupsToColumns,
  type CountRow,
  type ImageGroup,
  type SubsetSplit,
} from './schema';

export interface SplitSpec {
  seed: number;
  /** Number of evaluation images. */
  evalImages: number;
  /** Evaluation images need at least this many captions (references). */
  evalMinCaptions: number;
  /** Which images may be evaluation images (default: all). */
  evalPool?: (g: ImageGroup) => boolean;
  /** Which images may be training (or, with valFraction, validation) images (default: all). */
  trainPool?: (g: ImageGroup) => boolean;
  /** Validation images: a fixed pool (Karpathy val), or this fraction of the non-eval pool, per source. */
  val: { pool: (g: ImageGroup) => boolean } | { fraction: number };
  /** Caption targets (0 = every caption of the chosen images). */
  trainCaptions: number;
  valCaptions: number;
}

export interface Subsets {
  train: pl.DataFrame;
  val: pl.DataFrame;
  eval: pl.DataFrame;
}

function byKey(a: ImageGroup, b: ImageGroup): number {
  return a.source < b.source ? -1 : a.source > b.source ? 1 : a.image_id < b.image_id ? -1 : a.image_id > b.image_id ? 1 : 0;
}

/** The first images of `groups` whose captions add up to `target` (the last one cut); 0 = all. */
export function takeCaptions(groups: ImageGroup[], target: number, what: string): ImageGroup[] {
  if (target <= 0) return groups;
  const out: ImageGroup[] = [];
  let n = 0;
  for (const g of groups) {
    if (n >= target) break;
    const take = Math.min(g.captions.length, target - n);
    out.push(take === g.captions.length ? g : { ...g, captions: g.captions.slice(0, take) });
    n += take;
  }
  if (n < target) throw new Error(`${what}: only ${n} captions are available, the config asks for ${target}; lower it (data.${what}Captions)`);
  return out;
}

/** Split caption rows by image into train / val / eval (see SplitSpec). */
export function splitByImage(df: pl.DataFrame, spec: SplitSpec): Subsets {
  const groups = groupImages(frameColumns(df)).sort(byKey);
  const evalPool = spec.evalPool ?? (() => true);
  const candidates = groups.filter((g) => evalPool(g) && g.captions.length >= spec.evalMinCaptions);
  if (!(Number.isInteger(spec.evalImages) && spec.evalImages >= 0)) throw new Error(`data.evalImages must be a whole number >= 0 (0 = every photo of the evaluation pool), got ${spec.evalImages}`);
  if (candidates.length < spec.evalImages) {
    throw new Error(
      `only ${candidates.length} images can be evaluation images (with >= ${spec.evalMinCaptions} captions), the config asks for ${spec.evalImages}; lower data.evalImages`,
    );
  }
  const drawn = shuffled(candidates, rngFor(spec.seed, 'eval'));
  const evalSet = spec.evalImages > 0 ? drawn.slice(0, spec.evalImages) : drawn;
  const taken = new Set(evalSet.map((g) => g.image_id));
  const rest = groups.filter((g) => !taken.has(g.image_id));
  const trainPool = spec.trainPool ?? (() => true);
  let trainImgs: ImageGroup[] = [];
  let valImgs: ImageGroup[] = [];
  if ('pool' in spec.val) {
    const valPool = spec.val.pool;
    valImgs = rest.filter((g) => valPool(g));
    trainImgs = rest.filter((g) => !valPool(g) && trainPool(g));
  } else {
    const f = spec.val.fraction;
    if (!(f >= 0 && f < 1)) throw new Error(`data.valFraction must be in [0, 1), got ${f}`);
    const pool = rest.filter((g) => trainPool(g));
    const sources = [...new Set(pool.map((g) => g.source))].sort();
    for (const s of sources) {
      const mine = shuffled(
        pool.filter((g) => g.source === s),
        rngFor(spec.seed, `val:${s}`),
      );
      const nVal = Math.round(mine.length * f);
      valImgs.push(...mine.slice(0, nVal));
      trainImgs.push(...mine.slice(nVal));
    }
  }
  // An empty training (or, with a validation fraction, validation) subset is said here, when the
  // subsets are made (notebook 01), naming the fields to change, not later by training.
  const evalNote = `${evalSet.length} of the ${groups.length} photos go to evaluation (data.evalImages = ${spec.evalImages}${spec.evalImages === 0 ? ': all of the evaluation pool' : ''})`;
  if (trainImgs.length === 0) {
    throw new Error(`the split leaves no training photos: ${evalNote}; lower data.evalImages, or give the source more photos (data.synthetic.images, data.datasets)`);
  }
  if (valImgs.length === 0 && 'fraction' in spec.val && spec.val.fraction > 0) {
    throw new Error(
      `the split leaves no validation photos: ${evalNote}, and data.valFraction = ${spec.val.fraction} of the ${trainImgs.length} left rounds to none; raise data.valFraction or lower data.evalImages (data.valFraction = 0 trains without validation)`,
    );
  }
  trainImgs = takeCaptions(shuffled(trainImgs.sort(byKey), rngFor(spec.seed, 'train')), spec.trainCaptions, 'train');
  valImgs = takeCaptions(shuffled(valImgs.sort(byKey), rngFor(spec.seed, 'val')), spec.valCaptions, 'val');
  const result = {
    train: captionFrame(groupsToColumns(trainImgs, 'train')),
    val: captionFrame(groupsToColumns(valImgs, 'val')),
    eval: captionFrame(groupsToColumns(evalSet, 'eval')),
  };
  assertDisjoint(result);
  return result;
}

/** No image in two splits (a guard: splitByImage never does it, hand-made subsets might). */
export function assertDisjoint(s: Subsets): void {
  const owner = new Map<string, SubsetSplit>();
  for (const split of SUBSET_SPLITS) {
    for (const id of new Set(s[split].getColumn('image_id').toArray() as string[])) {
      const prev = owner.get(id);
      if (prev && prev !== split) throw new Error(`image ${id} is in both the ${prev} and the ${split} subset`);
      owner.set(id, split);
    }
  }
}

export interface SplitSize {
  images: number;
  captions: number;
}

export interface SubsetManifest {
  version: 1;
  profile: string;
  source: DataConfig['source'];
  seed: number;
  /** Images and captions per split. */
  sizes: Record<SubsetSplit, SplitSize>;
  /** Images and captions per split and source. */
  counts: CountRow[];
  /** The data config the subsets were built with. */
  config: DataConfig;
  /** Input files read (captions, annotations). */
  inputs: string[];
  /** What the reader of the results must know about the data (e.g. a fallback to a smaller set). */
  notes?: string[];
  /** A dataset of your own (data.source 'custom'): what was read, and every kind of bad input with its first examples. */
  dataset?: CustomDatasetSummary;
  files: Record<SubsetSplit, { file: string; rows: number; sha256: string }>;
}

export function sizesOf(s: Subsets): Record<SubsetSplit, SplitSize> {
  const out = {} as Record<SubsetSplit, SplitSize>;
  for (const split of SUBSET_SPLITS) {
    const df = s[split];
    out[split] = { images: new Set(df.getColumn('image_id').toArray() as string[]).size, captions: df.height };
  }
  return out;
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/**
 * Write the subsets into `dir` atomically: a fresh temporary directory gets the three parquet files
 * and manifest.json, then replaces `dir`. A failure leaves the previous subsets as they were.
 */
export async function writeSubsets(
  dir: string,
  subsets: Subsets,
  meta: { profile: string; config: DataConfig; inputs: string[]; notes?: string[]; dataset?: CustomDatasetSummary },
): Promise<SubsetManifest> {
  assertDisjoint(subsets);
  let manifest: SubsetManifest | null = null;
  await buildDirAtomic(dir, (tmp) => {
    const files = {} as SubsetManifest['files'];
    for (const split of SUBSET_SPLITS) {
      const f = path.join(tmp, `${split}.parquet`);
      subsets[split].writeParquet(f, { compression: 'zstd' });
      files[split] = { file: `${split}.parquet`, rows: subsets[split].height, sha256: sha256(f) };
    }
    manifest = {
      version: 1,
      profile: meta.profile,
      source: meta.config.source,
      seed: meta.config.seed,
      sizes: sizesOf(subsets),
      counts: countBySplitSource(concatFrames(SUBSET_SPLITS.map((s) => subsets[s]))),
      config: meta.config,
      inputs: meta.inputs,
      ...(meta.notes?.length ? { notes: meta.notes } : {}),
      ...(meta.dataset ? { dataset: meta.dataset } : {}),
      files,
    };
    writeJsonAtomic(path.join(tmp, 'manifest.json'), manifest);
  });
  return manifest!;
}

/** Read the subsets written by writeSubsets; a clear error when they are missing. */
export function readSubsets(dir: string, profile = path.basename(path.dirname(dir))): Subsets & { manifest: SubsetManifest } {
  const mf = path.join(dir, 'manifest.json');
  if (!fs.existsSync(mf)) {
    throw new Error(`no subsets in ${dir}: run notebook 01_data_subset first (npx tsx scripts/run-notebooks.ts --profile ${profile} --only 01)`);
  }
  const manifest = JSON.parse(fs.readFileSync(mf, 'utf8')) as SubsetManifest;
  const out = {} as Subsets;
  for (const split of SUBSET_SPLITS) {
    const f = path.join(dir, `${split}.parquet`);
    const df = pl.readParquet(f);
    assertCaptionFrame(df, f);
    out[split] = df;
  }
  return { ...out, manifest };
}

/**
 * The identity of the data a model is trained on: a hash of the training and validation captions
 * (split, image id and caption, in order), 16 hex digits. Another draw (notebook 01 with another seed
 * or sizes) gives another identity even when the counts are the same; the same draw, the same one.
 */
export function subsetIdentity(s: Pick<Subsets, 'train' | 'val'>): string {
  const h = crypto.createHash('sha256');
  for (const split of ['train', 'val'] as const) {
    const c = frameColumns(s[split]);
    h.update(`${split}:${c.image_id.length}\n`);
    for (let i = 0; i < c.image_id.length; i++) h.update(`${c.image_id[i]}\t${c.caption[i]}\n`);
  }
  return h.digest('hex').slice(0, 16);
}

/** One table of all three subsets (split column = train | val | eval). */
export function allSubsets(s: Subsets): pl.DataFrame {
  return concatFrames(SUBSET_SPLITS.map((k) => s[k]));
}
