// The Karpathy split files (dataset_coco.json, dataset_flickr30k.json, dataset_flickr8k.json from
// caption_datasets.zip): {dataset, images: [{filepath?, filename, imgid, split, cocoid?, sentences: [{raw}]}]}.
// split is train | restval | val | test (restval: the rest of COCO val2014, used for training).
import * as path from 'path';
import pl from 'nodejs-polars';
import { captionFrame, cleanCaption, emptyColumns, pushRow, type SourceName } from './schema';
import { DataFormatError, readJsonFile, requireArray, requireString, isObject, describe } from './read';

const HINT = 'expected a Karpathy split file {dataset, images: [{filepath, filename, split, cocoid, sentences: [{raw}]}]}';

const SOURCE_OF_DATASET: Record<string, SourceName> = { coco: 'coco2014', flickr30k: 'flickr30k', flickr8k: 'flickr8k' };

export interface KarpathyOptions {
  /** Root of the photos: a photo is at <imagesRoot>/<filepath>/<filename> (no filepath for Flickr). */
  imagesRoot: string;
  /** Source name (default from the file's "dataset" field: coco -> coco2014, flickr30k, flickr8k). */
  source?: SourceName;
}

export function loadKarpathySplit(file: string, opts: KarpathyOptions): pl.DataFrame {
  const json = readJsonFile(file, HINT);
  const images = requireArray(file, json, 'images', '', HINT);
  const dataset = isObject(json) && typeof json.dataset === 'string' ? json.dataset : undefined;
  const source = opts.source ?? (dataset ? SOURCE_OF_DATASET[dataset] : undefined);
  if (!source) {
    throw new DataFormatError(file, 'top level', `"dataset" is ${dataset === undefined ? 'missing' : JSON.stringify(dataset)}: cannot tell the source`, 'pass {source} or use coco / flickr8k / flickr30k');
  }
  const root = path.resolve(opts.imagesRoot);
  const cols = emptyColumns();
  const seen = new Set<string>();
  images.forEach((im, i) => {
    const loc = `images[${i}]`;
    const filename = requireString(file, im, 'filename', loc, HINT);
    const split = requireString(file, im, 'split', loc, HINT);
    const sentences = requireArray(file, im, 'sentences', loc, HINT);
    const o = im as Record<string, unknown>;
    let id: string;
    if (source === 'coco2014' || source === 'coco2017') id = requireString(file, im, 'cocoid', loc, HINT, true);
    else id = path.basename(filename).replace(/\.[^.]+$/, '');
    if (seen.has(id)) throw new DataFormatError(file, loc, `image ${id} appears twice`, HINT);
    seen.add(id);
    const filepath = typeof o.filepath === 'string' ? o.filepath : '';
    const photo = path.join(root, filepath, filename);
    sentences.forEach((s, k) => {
      if (!isObject(s) || typeof s.raw !== 'string') {
        throw new DataFormatError(file, `${loc}.sentences[${k}]`, `"raw" is ${isObject(s) ? describe(s.raw) : describe(s)}, expected a string`, HINT);
      }
      const cap = cleanCaption(s.raw);
      if (cap) pushRow(cols, { image_id: id, file: photo, split, caption: cap, source });
    });
  });
  return captionFrame(cols);
}
