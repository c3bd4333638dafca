// COCO captions: the official annotation json (captions_{train,val}{2014,2017}.json) and the local
// mirror's coco-mini/captions.json.
import * as path from 'path';
import pl from 'nodejs-polars';
import { captionFrame, cleanCaption, emptyColumns, pushRow, type SourceName } from './schema';
import { DataFormatError, readJsonFile, requireArray, requireString, isObject, describe } from './read';

const COCO_HINT = 'expected the official COCO captions format {images: [{id, file_name}], annotations: [{image_id, caption}]}';

export interface CocoCaptionsOptions {
  /** Folder holding the photos named by `file_name` (e.g. .../train2014). */
  imagesDir: string;
  /** Split name for the rows (default: from the file name, e.g. captions_val2014.json -> val2014). */
  split?: string;
  /** Source name (default: coco2014 / coco2017 from the file name). */
  source?: SourceName;
}

/** train2014 from ".../captions_train2014.json"; null when the name says nothing. */
export function cocoSplitFromFileName(file: string): { split: string; year: string } | null {
  const m = /captions_(train|val|test)(\d{4})\.json$/.exec(path.basename(file));
  return m ? { split: `${m[1]}${m[2]}`, year: m[2] } : null;
}

/** The COCO numeric id of a COCO file name (COCO_val2014_000000391895.jpg, 000000391895.jpg), or null. */
export function cocoIdFromFileName(name: string): string | null {
  const m = /(?:^|_)(\d{12})\.(?:jpg|jpeg|png)$/i.exec(path.basename(name));
  return m ? String(Number(m[1])) : null;
}

/** The official COCO captions json: one row per annotation, images in file order, photos in `imagesDir`. */
export function loadCocoCaptions(file: string, opts: CocoCaptionsOptions): pl.DataFrame {
  const json = readJsonFile(file, COCO_HINT);
  const images = requireArray(file, json, 'images', '', COCO_HINT);
  const annotations = requireArray(file, json, 'annotations', '', COCO_HINT);
  const fromName = cocoSplitFromFileName(file);
  const split = opts.split ?? fromName?.split ?? 'all';
  const source: SourceName = opts.source ?? (fromName?.year === '2017' ? 'coco2017' : 'coco2014');
  const imagesDir = path.resolve(opts.imagesDir);

  const fileById = new Map<string, string>();
  const order: string[] = [];
  images.forEach((im, i) => {
    const loc = `images[${i}]`;
    const id = requireString(file, im, 'id', loc, COCO_HINT, true);
    const name = requireString(file, im, 'file_name', loc, COCO_HINT);
    if (fileById.has(id)) throw new DataFormatError(file, loc, `image id ${id} appears twice`, COCO_HINT);
    fileById.set(id, name);
    order.push(id);
  });
  const caps = new Map<string, string[]>();
  annotations.forEach((a, j) => {
    const loc = `annotations[${j}]`;
    const id = requireString(file, a, 'image_id', loc, COCO_HINT, true);
    if (!isObject(a) || typeof a.caption !== 'string') {
      throw new DataFormatError(file, loc, `"caption" is ${isObject(a) ? describe(a.caption) : describe(a)}, expected a string`, COCO_HINT);
    }
    if (!fileById.has(id)) throw new DataFormatError(file, loc, `image_id ${id} is not in "images"`, COCO_HINT);
    const c = cleanCaption(a.caption);
    if (!c) return; // an empty caption says nothing: skip it
    let list = caps.get(id);
    if (!list) caps.set(id, (list = []));
    list.push(c);
  });
  const cols = emptyColumns();
  for (const id of order) {
    const f = path.join(imagesDir, fileById.get(id)!);
    for (const c of caps.get(id) ?? []) pushRow(cols, { image_id: id, file: f, split, caption: c, source });
  }
  return captionFrame(cols);
}

const MINI_HINT = 'expected the coco-mini format {images: [{image_id, file_name, split, captions: [...]}]}';

/** The local mirror's coco-mini/captions.json; photos in <dir>/images. Source 'coco-mini'. */
export function loadCocoMini(dir: string, opts: { captionsFile?: string; imagesDir?: string } = {}): pl.DataFrame {
  const file = path.resolve(opts.captionsFile ?? path.join(dir, 'captions.json'));
  const imagesDir = path.resolve(opts.imagesDir ?? path.join(dir, 'images'));
  const json = readJsonFile(file, MINI_HINT);
  const images = requireArray(file, json, 'images', '', MINI_HINT);
  const cols = emptyColumns();
  const seen = new Set<string>();
  images.forEach((im, i) => {
    const loc = `images[${i}]`;
    const id = requireString(file, im, 'image_id', loc, MINI_HINT, true);
    const name = requireString(file, im, 'file_name', loc, MINI_HINT);
    const split = requireString(file, im, 'split', loc, MINI_HINT);
    const captions = requireArray(file, im, 'captions', loc, MINI_HINT);
    if (seen.has(id)) throw new DataFormatError(file, loc, `image_id ${id} appears twice`, MINI_HINT);
    seen.add(id);
    captions.forEach((c, k) => {
      if (typeof c !== 'string') throw new DataFormatError(file, `${loc}.captions[${k}]`, `is ${describe(c)}, expected a string`, MINI_HINT);
      const cap = cleanCaption(c);
      if (cap) pushRow(cols, { image_id: id, file: path.join(imagesDir, name), split, caption: cap, source: 'coco-mini' });
    });
  });
  return captionFrame(cols);
}
