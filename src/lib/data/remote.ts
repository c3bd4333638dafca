// The paper profile's data from its public URLs (with the local mirror first):
//  - the Karpathy split (caption_datasets.zip -> dataset_coco.json),
//  - the COCO 2014 caption annotations (annotations_trainval2014.zip -> captions_{train,val}2014.json),
//  - the photos of the chosen subsets, by id (<cocoImages>/<train2014|val2014>/<file_name>).
// Everything lands in the download cache (CLIPCAP_CACHE or data/cache) under coco2014/ and karpathy/.
import * as fs from 'fs';
import * as path from 'path';
import pl from 'nodejs-polars';
import type { ProfileConfig } from '../config';
import { cacheDir } from '../paths';
import type { Environment } from '../settings';
import { downloadFile, downloadFiles, type DownloadOptions, type DownloadItem } from './download';
import { loadKarpathySplit } from './karpathy';
import { mirrorImageIndex, mirrorPhoto } from './mirror';
import { SUBSET_SPLITS, captionFrame, frameColumns } from './schema';
import type { Subsets } from './subset';
import { extractZip } from './zip';

export interface RemoteOptions {
  env?: Environment;
  /** Download cache (default CLIPCAP_CACHE or data/cache). */
  cache?: string;
  /** Local mirror tried first (null: none). */
  mirror?: string | null;
  /** Progress lines (default: Progress's). */
  log?: (line: string) => void;
}

export interface CocoCachePaths {
  root: string;
  /** Photos: <images>/<train2014|val2014>/<file_name>. */
  images: string;
  annotations: string;
  karpathy: string;
}

export function cocoCachePaths(cache: string): CocoCachePaths {
  return {
    root: path.join(cache, 'coco2014'),
    images: path.join(cache, 'coco2014', 'images'),
    annotations: path.join(cache, 'coco2014', 'annotations'),
    karpathy: path.join(cache, 'karpathy'),
  };
}

function dlOpts(cfg: ProfileConfig, opts: RemoteOptions, label: string): DownloadOptions {
  const d = cfg.data.download;
  return { concurrency: d.concurrency, retries: d.retries, backoffMs: d.backoffMs, timeoutMs: d.timeoutMs, label, progress: opts.log ? (l) => opts.log!(l) : undefined };
}

function firstExisting(files: string[]): string | undefined {
  return files.find((f) => fs.existsSync(f) && fs.statSync(f).isFile() && fs.statSync(f).size > 0);
}

function baseName(url: string): string {
  return path.posix.basename(new URL(url).pathname);
}

/** dataset_coco.json of the Karpathy split: from the mirror, the cache, or downloaded and unzipped. */
export async function ensureKarpathySplit(cfg: ProfileConfig, opts: RemoteOptions = {}, dataset = 'dataset_coco.json'): Promise<string> {
  const cache = cocoCachePaths(opts.cache ?? cacheDir(opts.env));
  const m = opts.mirror;
  const found = firstExisting([
    ...(m ? [path.join(m, 'karpathy', dataset), path.join(m, 'caption_datasets', dataset), path.join(m, dataset)] : []),
    path.join(cache.karpathy, dataset),
  ]);
  if (found) return found;
  const url = cfg.data.urls.karpathySplits;
  const zipName = baseName(url);
  const zip = await downloadFile(
    { url, dest: path.join(cache.karpathy, zipName), mirror: m ? [path.join(m, zipName), path.join(m, 'karpathy', zipName)] : [], expect: 'zip' },
    dlOpts(cfg, opts, 'Karpathy split'),
  );
  const out = await extractZip(zip.path, cache.karpathy, { filter: (n) => path.posix.basename(n) === dataset, flat: true });
  if (out.length === 0) throw new Error(`${zip.path} holds no ${dataset}: delete it so that it is downloaded again (${url})`);
  return out[0];
}

/** captions_{train,val}2014.json: from the mirror, the cache, or downloaded and unzipped. */
export async function ensureCocoAnnotations(cfg: ProfileConfig, opts: RemoteOptions = {}): Promise<{ train: string; val: string }> {
  const cache = cocoCachePaths(opts.cache ?? cacheDir(opts.env));
  const m = opts.mirror;
  const look = (split: string) =>
    firstExisting([
      ...(m ? [path.join(m, 'coco2014', 'annotations', `captions_${split}2014.json`), path.join(m, 'annotations', `captions_${split}2014.json`)] : []),
      path.join(cache.annotations, `captions_${split}2014.json`),
    ]);
  let train = look('train');
  let val = look('val');
  if (train && val) return { train, val };
  const url = cfg.data.urls.cocoAnnotations;
  const zipName = baseName(url);
  const zip = await downloadFile(
    { url, dest: path.join(cache.root, zipName), mirror: m ? [path.join(m, zipName), path.join(m, 'coco2014', zipName)] : [], expect: 'zip' },
    dlOpts(cfg, opts, 'COCO annotations'),
  );
  await extractZip(zip.path, cache.annotations, { filter: (n) => /(^|\/)captions_(train|val)2014\.json$/.test(n), flat: true });
  train = look('train');
  val = look('val');
  if (!train || !val) throw new Error(`${zip.path} holds no annotations/captions_{train,val}2014.json: delete it so that it is downloaded again (${url})`);
  return { train, val };
}

/**
 * The COCO 2014 Karpathy split as a caption table (source coco2014, split train/restval/val/test,
 * file = where the photo goes in the cache), after making sure the annotation files are present.
 */
export async function prepareKarpathyCoco(cfg: ProfileConfig, opts: RemoteOptions = {}): Promise<{ df: pl.DataFrame; inputs: string[] }> {
  const cache = cocoCachePaths(opts.cache ?? cacheDir(opts.env));
  const karpathy = await ensureKarpathySplit(cfg, opts);
  const ann = await ensureCocoAnnotations(cfg, opts);
  const df = loadKarpathySplit(karpathy, { imagesRoot: cache.images, source: 'coco2014' });
  return { df, inputs: [karpathy, ann.train, ann.val] };
}

/** The public URL of a cached COCO photo path (<images>/<split>/<file> -> <cocoImages>/<split>/<file>). */
export function cocoPhotoUrl(cfg: ProfileConfig, imagesRoot: string, file: string): string {
  const rel = path.relative(imagesRoot, file).split(path.sep).join('/');
  if (rel.startsWith('..')) throw new Error(`${file} is not under the COCO photo cache ${imagesRoot}`);
  return `${cfg.data.urls.cocoImages.replace(/\/+$/, '')}/${rel}`;
}

/**
 * Make sure every photo of the subsets is on disk: a photo in the local mirror is used in place,
 * the others are downloaded into the cache. Returns the subsets with `file` pointing at the photos.
 */
export async function fetchSubsetPhotos(cfg: ProfileConfig, subsets: Subsets, opts: RemoteOptions = {}): Promise<Subsets> {
  const cache = cocoCachePaths(opts.cache ?? cacheDir(opts.env));
  const index = mirrorImageIndex(opts.mirror ?? null);
  const items: DownloadItem[] = [];
  const seen = new Set<string>();
  for (const split of SUBSET_SPLITS) {
    const c = frameColumns(subsets[split]);
    for (let i = 0; i < c.file.length; i++) {
      if (seen.has(c.file[i])) continue;
      seen.add(c.file[i]);
      const inMirror = mirrorPhoto(index, c.source[i], c.image_id[i]);
      const rel = path.relative(cache.images, c.file[i]);
      const mirrorCopies = [...(inMirror ? [inMirror] : []), ...(opts.mirror ? [path.join(opts.mirror, 'coco2014', rel)] : [])];
      items.push({ url: cocoPhotoUrl(cfg, cache.images, c.file[i]), dest: c.file[i], mirror: mirrorCopies, expect: 'image' });
    }
  }
  const results = await downloadFiles(items, dlOpts(cfg, opts, 'COCO photos'));
  const where = new Map(results.map((r) => [r.dest, r.path]));
  const out = {} as Subsets;
  for (const split of SUBSET_SPLITS) {
    const c = frameColumns(subsets[split]);
    c.file = c.file.map((f) => where.get(f) ?? f);
    out[split] = captionFrame(c);
  }
  return out;
}
