// The local data mirror (../shared/data or CLIPCAP_DATA_DIR): its layout, a check that says what is
// missing and how to fix it, loaders for its datasets, and an index of the photos it holds (so that
// downloads use a photo already there in place).
import * as fs from 'fs';
import * as path from 'path';
import pl from 'nodejs-polars';
import { loadCocoMini, cocoIdFromFileName } from './coco';
import { loadFlickr8k } from './flickr';
import { captionFrame, frameColumns, emptyColumns, pushRow } from './schema';

export type MirrorDataset = 'coco-mini' | 'flickr8k' | 'flickr8k-mini';

export interface MirrorLayout {
  root: string;
  cocoMini: { dir: string; captions: string; val2017: string; images: string };
  /** The full Flickr8k (8,091 photos; the standard split files). */
  flickr8k: { dir: string; captions: string; images: string };
  /** 1,000 Flickr8k photos, downscaled, with the captions and split files of all 8,091. */
  flickr8kMini: { dir: string; captions: string; images: string };
  textCorpus: { dir: string; flickr30k: string[] };
}

export function mirrorLayout(root: string): MirrorLayout {
  const r = path.resolve(root);
  const cm = path.join(r, 'coco-mini');
  const fk = path.join(r, 'flickr8k-mini');
  const ff = path.join(r, 'flickr8k');
  const tc = path.join(r, 'text-corpus');
  return {
    root: r,
    cocoMini: { dir: cm, captions: path.join(cm, 'captions.json'), val2017: path.join(cm, 'captions_val2017.json'), images: path.join(cm, 'images') },
    flickr8k: { dir: ff, captions: path.join(ff, 'captions.txt'), images: path.join(ff, 'images') },
    flickr8kMini: { dir: fk, captions: path.join(fk, 'captions.txt'), images: path.join(fk, 'images') },
    textCorpus: { dir: tc, flickr30k: ['flickr30k_ann_test.json', 'flickr30k_ann_val.json'].map((f) => path.join(tc, f)) },
  };
}

const FIX = 'set CLIPCAP_DATA_DIR to the folder holding coco-mini/ and flickr8k/ (or flickr8k-mini/) (see data/README.md), or use the smoke profile (CLIPCAP_PROFILE=smoke) for generated data';

/** The mirror's layout after checking that the files `datasets` need are there; else one clear error. */
export function checkMirror(root: string, datasets: readonly MirrorDataset[]): MirrorLayout {
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) throw new Error(`the data mirror ${root} does not exist: ${FIX}`);
  const m = mirrorLayout(root);
  const need: string[] = [];
  if (datasets.includes('coco-mini')) need.push(m.cocoMini.captions, m.cocoMini.images);
  if (datasets.includes('flickr8k')) need.push(m.flickr8k.captions, m.flickr8k.images);
  if (datasets.includes('flickr8k-mini')) need.push(m.flickr8kMini.captions, m.flickr8kMini.images);
  const missing = need.filter((f) => !fs.existsSync(f));
  if (missing.length) throw new Error(`the data mirror ${m.root} lacks ${missing.map((f) => path.relative(m.root, f)).join(', ')}: ${FIX}`);
  return m;
}

function listDir(dir: string): Set<string> {
  return fs.existsSync(dir) ? new Set(fs.readdirSync(dir)) : new Set();
}

/** Keep the rows whose photo is on disk. */
export function withPhotosPresent(df: pl.DataFrame): pl.DataFrame {
  const cols = frameColumns(df);
  const dirs = new Map<string, Set<string>>();
  const out = emptyColumns();
  for (let i = 0; i < cols.file.length; i++) {
    const d = path.dirname(cols.file[i]);
    let names = dirs.get(d);
    if (!names) dirs.set(d, (names = listDir(d)));
    if (names.has(path.basename(cols.file[i]))) {
      pushRow(out, { image_id: cols.image_id[i], file: cols.file[i], split: cols.split[i], caption: cols.caption[i], source: cols.source[i] });
    }
  }
  return captionFrame(out);
}

/**
 * One mirror dataset as a caption table, restricted to the photos present: coco-mini (316 COCO 2017
 * photos, split train2017/val2017) or flickr8k-mini (the Flickr8k photos present, split from the
 * Flickr8k split files).
 */
export function loadMirrorDataset(layout: MirrorLayout, name: MirrorDataset): pl.DataFrame {
  if (name === 'coco-mini') return withPhotosPresent(loadCocoMini(layout.cocoMini.dir, { imagesDir: layout.cocoMini.images }));
  if (name === 'flickr8k') return withPhotosPresent(loadFlickr8k(layout.flickr8k.dir, { source: 'flickr8k', imagesDir: layout.flickr8k.images }));
  if (name === 'flickr8k-mini') {
    return withPhotosPresent(loadFlickr8k(layout.flickr8kMini.dir, { source: 'flickr8k-mini', imagesDir: layout.flickr8kMini.images }));
  }
  throw new Error(`unknown mirror dataset "${String(name)}": use coco-mini, flickr8k or flickr8k-mini`);
}

/**
 * The mirror datasets to read for `wanted`: 'flickr8k' falls back to 'flickr8k-mini' when the mirror
 * has only the mini set, with a note saying so (the mini set holds 1,000 of the 8,091 photos, so the
 * results are not the standard benchmark).
 */
export function resolveMirrorDatasets(root: string, wanted: readonly MirrorDataset[]): { datasets: MirrorDataset[]; notes: string[] } {
  const m = mirrorLayout(root);
  const notes: string[] = [];
  const datasets = wanted.map((d): MirrorDataset => {
    if (d === 'flickr8k' && !fs.existsSync(m.flickr8k.captions) && fs.existsSync(m.flickr8kMini.captions)) {
      notes.push(
        `the mirror has no full Flickr8k (${path.relative(m.root, m.flickr8k.dir)}/ with captions.txt and images/): using flickr8k-mini instead, ` +
          'whose photos cover only part of the standard train / dev / test lists, so its scores are NOT comparable with published Flickr8k results',
      );
      return 'flickr8k-mini';
    }
    return d;
  });
  return { datasets, notes };
}

/** Photos in the mirror by image id, COCO and Flickr apart (their ids could collide). */
export interface MirrorIndex {
  /** COCO numeric id -> photo (folders named coco*, files like 000000000139.jpg or COCO_val2014_000000000139.jpg). */
  coco: Map<string, string>;
  /** Flickr file stem -> photo (every other folder). */
  flickr: Map<string, string>;
}

export function mirrorImageIndex(root: string | null): MirrorIndex {
  const index: MirrorIndex = { coco: new Map(), flickr: new Map() };
  if (!root || !fs.existsSync(root)) return index;
  const walk = (dir: string, depth: number, coco: boolean) => {
    for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, ent.name);
      if (ent.isDirectory()) {
        if (depth < 3) walk(p, depth + 1, coco || /^coco/i.test(ent.name));
      } else if (/\.(jpe?g|png)$/i.test(ent.name)) {
        const id = coco ? cocoIdFromFileName(ent.name) : ent.name.replace(/\.[^.]+$/, '');
        const map = coco ? index.coco : index.flickr;
        if (id && !map.has(id)) map.set(id, p);
      }
    }
  };
  walk(path.resolve(root), 0, false);
  return index;
}

/** The mirror photo of a row (by its source's id namespace), or undefined. */
export function mirrorPhoto(index: MirrorIndex, source: string, imageId: string): string | undefined {
  if (source.startsWith('coco')) return index.coco.get(imageId);
  if (source.startsWith('flickr')) return index.flickr.get(imageId);
  return undefined;
}
