// Caption text for pretraining the offline profile's small GPT-2: the captions of the training photos
// and the text-only caption corpora of the local mirror, never a caption of a validation (Flickr8k
// dev), test or evaluation photo. With a dataset of your own (data.source 'custom'): its training
// captions first, then the mirror's text where there is one (customCorpus).
//
// Sources (in this order; the first copy of a caption wins when deduplicating):
//   coco-val2017  coco-mini/captions_val2017.json (official COCO format, 4,903 val2017 images)
//   coco-mini     coco-mini/captions.json, its train2017 photos
//   flickr8k      flickr8k/captions.txt (else flickr8k-mini's copy): the photos of the standard train
//                 split only (6,000 photos, photos present or not)
//   flickr30k     text-corpus/flickr30k_ann_{test,val}.json (optional)
// Kept out: every caption of a validation or evaluation photo, by image id (COCO ids against the COCO
// files, Flickr photo ids against the Flickr files), and every caption whose normalised text equals
// one of their captions (normaliseCaption: lower case, letters and digits). Duplicates (same
// normalised text) are kept once.
import * as fs from 'fs';
import * as path from 'path';
import pl from 'nodejs-polars';
import type { ProfileConfig } from '../config';
import { mirrorDir, requireMirrorDir } from '../paths';
import type { Environment } from '../settings';
import { loadCocoCaptions, loadCocoMini } from './coco';
import { loadFlickr8k, loadFlickr30kCaptions } from './flickr';
import { checkMirror, resolveMirrorDatasets } from './mirror';
import { frameColumns, normaliseCaption, concatFrames } from './schema';
import { loadSubsets } from './build';

export interface CorpusRecord {
  text: string;
  source: string;
  /** The photo the caption describes ("<source>:<image_id>"): the LM pretraining can pack a photo's captions together. */
  group: string;
}

export interface CorpusSourceCount {
  source: string;
  /** Captions read. */
  read: number;
  /** Dropped: caption of an evaluation photo (by image id). */
  evalImage: number;
  /** Dropped: same normalised text as an evaluation caption. */
  evalText: number;
  /** Dropped: same normalised text as an earlier caption. */
  duplicate: number;
  kept: number;
}

export interface CorpusExclusions {
  /** Every evaluation photo ("<source>:<image_id>"), for the counts. */
  images: Set<string>;
  /** COCO numeric ids of the evaluation photos. */
  cocoIds: Set<string>;
  /** Flickr photo ids of the evaluation photos (the file stem before any "_": 1000268201_693b08cb0e -> 1000268201). */
  flickrIds: Set<string>;
  /** Normalised evaluation captions. */
  captions: Set<string>;
}

export interface CaptionCorpus {
  records: CorpusRecord[];
  counts: CorpusSourceCount[];
  /** Files read. */
  inputs: string[];
  /** How many evaluation photos and captions were kept out. */
  excluded: { images: number; captions: number };
}

/** The Flickr photo id of a Flickr image id (file stem). */
export function flickrPhotoId(imageId: string): string {
  return imageId.split('_')[0];
}

/** What to keep out, from the evaluation subset (or any caption table). */
export function exclusionsFrom(evalDf: pl.DataFrame): CorpusExclusions {
  const c = frameColumns(evalDf);
  const ex: CorpusExclusions = { images: new Set(), cocoIds: new Set(), flickrIds: new Set(), captions: new Set() };
  for (let i = 0; i < c.image_id.length; i++) {
    ex.images.add(`${c.source[i]}:${c.image_id[i]}`);
    if (c.source[i].startsWith('coco')) ex.cocoIds.add(c.image_id[i]);
    else if (c.source[i].startsWith('flickr')) ex.flickrIds.add(flickrPhotoId(c.image_id[i]));
    const k = normaliseCaption(c.caption[i]);
    if (k) ex.captions.add(k);
  }
  return ex;
}

/** A named caption table of the corpus, and how its ids are matched. */
interface CorpusPart {
  source: string;
  df: pl.DataFrame;
  ids: 'coco' | 'flickr' | 'none';
}

/** Filter and deduplicate caption tables into corpus records (see the file comment). */
export function assembleCorpus(parts: CorpusPart[], exclude: CorpusExclusions): { records: CorpusRecord[]; counts: CorpusSourceCount[] } {
  const seen = new Set<string>();
  const records: CorpusRecord[] = [];
  const counts: CorpusSourceCount[] = [];
  for (const part of parts) {
    const c = frameColumns(part.df);
    const n: CorpusSourceCount = { source: part.source, read: c.caption.length, evalImage: 0, evalText: 0, duplicate: 0, kept: 0 };
    for (let i = 0; i < c.caption.length; i++) {
      const id = c.image_id[i];
      if ((part.ids === 'coco' && exclude.cocoIds.has(id)) || (part.ids === 'flickr' && exclude.flickrIds.has(flickrPhotoId(id)))) {
        n.evalImage++;
        continue;
      }
      const key = normaliseCaption(c.caption[i]);
      if (exclude.captions.has(key)) {
        n.evalText++;
        continue;
      }
      if (!key || seen.has(key)) {
        n.duplicate++;
        continue;
      }
      seen.add(key);
      records.push({ text: c.caption[i], source: part.source, group: `${part.source}:${id}` });
      n.kept++;
    }
    counts.push(n);
  }
  return { records, counts };
}

/** The offline corpus from a mirror folder, keeping `exclude` out. */
export function buildCaptionCorpus(opts: { mirror: string; exclude: CorpusExclusions }): CaptionCorpus {
  const { parts, exclude, inputs } = mirrorCorpusParts(opts);
  const { records, counts } = assembleCorpus(parts, exclude);
  return { records, counts, inputs, excluded: { images: exclude.images.size, captions: exclude.captions.size } };
}

/** The mirror's caption tables of the corpus (see the file comment), and `exclude` with the Flickr8k dev and test photos added. */
function mirrorCorpusParts(opts: { mirror: string; exclude: CorpusExclusions }): { parts: CorpusPart[]; exclude: CorpusExclusions; inputs: string[] } {
  const { datasets } = resolveMirrorDatasets(opts.mirror, ['coco-mini', 'flickr8k']);
  const m = checkMirror(opts.mirror, datasets);
  const f8k = datasets.includes('flickr8k') ? m.flickr8k : m.flickr8kMini;
  const onlySplit = (df: pl.DataFrame, split: string) => df.filter(pl.col('split').eq(pl.lit(split)));
  const parts: CorpusPart[] = [];
  const inputs: string[] = [];
  if (fs.existsSync(m.cocoMini.val2017)) {
    parts.push({ source: 'coco-val2017', df: loadCocoCaptions(m.cocoMini.val2017, { imagesDir: m.cocoMini.images, source: 'coco2017' }), ids: 'coco' });
    inputs.push(m.cocoMini.val2017);
  }
  parts.push({ source: 'coco-mini', df: onlySplit(loadCocoMini(m.cocoMini.dir, { imagesDir: m.cocoMini.images }), 'train2017'), ids: 'coco' });
  inputs.push(m.cocoMini.captions);
  const flickr8k = loadFlickr8k(f8k.dir, { source: datasets.includes('flickr8k') ? 'flickr8k' : 'flickr8k-mini', imagesDir: f8k.images });
  // Every dev and test photo of the standard split is kept out, its photo on disk or not.
  const heldOut = exclusionsFrom(flickr8k.filter(pl.col('split').eq(pl.lit('val')).or(pl.col('split').eq(pl.lit('test')))));
  const exclude: CorpusExclusions = {
    images: new Set([...opts.exclude.images, ...heldOut.images]),
    cocoIds: opts.exclude.cocoIds,
    flickrIds: new Set([...opts.exclude.flickrIds, ...heldOut.flickrIds]),
    captions: new Set([...opts.exclude.captions, ...heldOut.captions]),
  };
  parts.push({ source: 'flickr8k', df: onlySplit(flickr8k, 'train'), ids: 'flickr' });
  inputs.push(f8k.captions);
  const f30 = m.textCorpus.flickr30k.filter((f) => fs.existsSync(f));
  if (f30.length) {
    parts.push({ source: 'flickr30k', df: concatFrames(f30.map((f) => loadFlickr30kCaptions(f, { imagesDir: path.join(m.textCorpus.dir, 'images') }))), ids: 'flickr' });
    inputs.push(...f30);
  }
  return { parts, exclude, inputs };
}

/**
 * The language-model corpus of a profile, with its validation and evaluation subsets (from notebook
 * 01) kept out: offline: the mirror's caption text (buildCaptionCorpus); smoke and paper: the train
 * captions of the subsets.
 */
export function captionCorpusForProfile(cfg: ProfileConfig, opts: { root?: string; env?: Environment; mirror?: string } = {}): CaptionCorpus {
  const subsets = loadSubsets(cfg, opts.root);
  const exclude = exclusionsFrom(concatFrames([subsets.eval, subsets.val]));
  if (cfg.data.source === 'mirror') {
    const env = opts.env;
    return buildCaptionCorpus({ mirror: opts.mirror ?? mirrorDir(env) ?? requireMirrorDir(env), exclude });
  }
  if (cfg.data.source === 'custom') return customCorpus(cfg, subsets, exclude, opts);
  const parts: CorpusPart[] = [{ source: `${cfg.name}-train`, df: subsets.train, ids: 'none' }];
  const { records, counts } = assembleCorpus(parts, exclude);
  return { records, counts, inputs: [subsets.dir], excluded: { images: exclude.images.size, captions: exclude.captions.size } };
}

/**
 * A dataset of your own: its training captions, then (except on the smoke profile, whose tiny model
 * learns from the dataset alone) the mirror's caption text where a complete mirror is present, with the
 * same exclusions: no caption of a validation or evaluation photo, nor any caption of the same text.
 */
function customCorpus(cfg: ProfileConfig, subsets: { train: pl.DataFrame; dir: string }, exclude: CorpusExclusions, opts: { env?: Environment; mirror?: string }): CaptionCorpus {
  const name = cfg.data.custom ? path.basename(cfg.data.custom) : 'custom';
  let parts: CorpusPart[] = [{ source: `${name} (train)`, df: subsets.train, ids: 'none' }];
  let inputs = [subsets.dir];
  let ex = exclude;
  const mirror = cfg.name === 'smoke' ? null : (opts.mirror ?? mirrorDir(opts.env));
  if (mirror) {
    try {
      const m = mirrorCorpusParts({ mirror, exclude });
      parts = [...parts, ...m.parts];
      inputs = [...inputs, ...m.inputs];
      ex = m.exclude;
    } catch (e) {
      console.warn(`[corpus] the mirror's caption text is not used (${(e as Error).message.split('\n')[0]}): the language model learns from your training captions alone`);
    }
  }
  const { records, counts } = assembleCorpus(parts, ex);
  return { records, counts, inputs, excluded: { images: ex.images.size, captions: ex.captions.size } };
}
