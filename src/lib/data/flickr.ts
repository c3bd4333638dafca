// Flickr captions: Flickr8k's captions.txt (`image,caption` CSV) with its split files
// Flickr_8k.{train,dev,test}Images.txt, and Flickr30k caption json {file_name: {comments: [...]}}.
import * as fs from 'fs';
import * as path from 'path';
import pl from 'nodejs-polars';
import { captionFrame, cleanCaption, emptyColumns, pushRow, type SourceName } from './schema';
import { DataFormatError, readJsonFile, readText, isObject, describe } from './read';

const CSV_HINT = 'expected Flickr8k captions.txt: a header line "image,caption", then one "<file>.jpg,<caption>" per line (quote captions holding commas)';

/**
 * Split one CSV line into fields (RFC 4180 quoting: "a, b" and "" inside quotes). Throws a message
 * (without location) on a stray or unterminated quote.
 */
/**
 * The quoted CSV field opening at `line[start]` (a `"`; `""` inside is one quote): its value and the
 * index just after its closing quote. Throws "unterminated quoted <what>" when the line ends first.
 */
export function readQuotedField(line: string, start: number, what: string): { value: string; next: number } {
  let value = '';
  let i = start + 1;
  for (;;) {
    if (i >= line.length) throw new Error(`unterminated quoted ${what}`);
    if (line[i] === '"') {
      if (line[i + 1] === '"') {
        value += '"';
        i += 2;
        continue;
      }
      return { value, next: i + 1 };
    }
    value += line[i++];
  }
}

export function parseCsvLine(line: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      const q = readQuotedField(line, i, 'field');
      const v = q.value;
      i = q.next;
      if (i < line.length && line[i] !== ',') throw new Error(`unexpected character ${JSON.stringify(line[i])} after a closing quote at column ${i + 1}`);
      fields.push(v);
    } else {
      const j = line.indexOf(',', i);
      const v = j < 0 ? line.slice(i) : line.slice(i, j);
      if (v.includes('"')) throw new Error(`stray quote in an unquoted field at column ${i + v.indexOf('"') + 1}`);
      fields.push(v);
      i = j < 0 ? line.length : j;
    }
    if (i >= line.length) return fields;
    i++; // the comma
    if (i === line.length) {
      fields.push('');
      return fields;
    }
  }
}

const IMAGE_NAME = /^[^/\\]+\.(jpe?g|png)$/i;

/** Read a split file (one image file name a line); returns the names in order. */
export function readSplitFile(file: string): string[] {
  const lines = readText(file, 'expected one image file name a line').split(/\r?\n/);
  const out: string[] = [];
  lines.forEach((raw, i) => {
    const l = raw.trim();
    if (!l) return;
    if (!IMAGE_NAME.test(l)) throw new DataFormatError(file, `line ${i + 1}`, `${JSON.stringify(l.slice(0, 60))} is not an image file name`, 'expected one image file name a line');
    out.push(l);
  });
  return out;
}

export interface Flickr8kOptions {
  source?: SourceName;
  /** captions.txt (default <dir>/captions.txt). */
  captionsFile?: string;
  /** Photos (default <dir>/images, else <dir>/Images, else <dir>/Flicker8k_Dataset). */
  imagesDir?: string;
}

/** Split files of Flickr8k and the split name each gives its images (dev -> val). */
export const FLICKR8K_SPLIT_FILES: [string, string][] = [
  ['Flickr_8k.trainImages.txt', 'train'],
  ['Flickr_8k.devImages.txt', 'val'],
  ['Flickr_8k.testImages.txt', 'test'],
];

function defaultImagesDir(dir: string): string {
  for (const d of ['images', 'Images', 'Flicker8k_Dataset']) if (fs.existsSync(path.join(dir, d))) return path.join(dir, d);
  return path.join(dir, 'images');
}

/**
 * Flickr8k: captions.txt plus the split files when present (train, dev -> val, test; photos in no
 * split file get split "none"). image_id is the file stem.
 */
export function loadFlickr8k(dir: string, opts: Flickr8kOptions = {}): pl.DataFrame {
  const file = path.resolve(opts.captionsFile ?? path.join(dir, 'captions.txt'));
  const imagesDir = path.resolve(opts.imagesDir ?? defaultImagesDir(dir));
  const source = opts.source ?? 'flickr8k';
  const text = readText(file, CSV_HINT);
  const splitOf = new Map<string, string>();
  for (const [name, split] of FLICKR8K_SPLIT_FILES) {
    const f = path.join(dir, name);
    if (!fs.existsSync(f)) continue;
    readSplitFile(f).forEach((img) => {
      const prev = splitOf.get(img);
      if (prev && prev !== split) throw new DataFormatError(f, '', `${img} is also in the ${prev} split`, 'each photo belongs to one split file');
      splitOf.set(img, split);
    });
  }
  const lines = text.split('\n');
  const header = (lines[0] ?? '').replace(/^\uFEFF/, '').replace(/\r$/, '').trim();
  if (header !== 'image,caption') {
    throw new DataFormatError(file, 'line 1', `header is ${JSON.stringify(header.slice(0, 60))}, expected "image,caption"`, CSV_HINT);
  }
  const cols = emptyColumns();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '');
    if (!line.trim()) continue;
    let fields: string[];
    try {
      fields = parseCsvLine(line);
    } catch (e) {
      throw new DataFormatError(file, `line ${i + 1}`, (e as Error).message, CSV_HINT);
    }
    if (fields.length !== 2) throw new DataFormatError(file, `line ${i + 1}`, `${fields.length} fields, expected 2 (image,caption)`, CSV_HINT);
    const img = fields[0].trim();
    if (!IMAGE_NAME.test(img)) throw new DataFormatError(file, `line ${i + 1}`, `${JSON.stringify(img.slice(0, 60))} is not an image file name`, CSV_HINT);
    const cap = cleanCaption(fields[1]);
    if (!cap) throw new DataFormatError(file, `line ${i + 1}`, 'empty caption', CSV_HINT);
    pushRow(cols, { image_id: img.replace(/\.[^.]+$/, ''), file: path.join(imagesDir, img), split: splitOf.get(img) ?? 'none', caption: cap, source });
  }
  return captionFrame(cols);
}

const F30K_HINT = 'expected Flickr30k caption json {"<file>.jpg": {"comments": ["...", ...]}, ...}';

/** Flickr30k caption json ({file_name: {comments}}); split from the file name (flickr30k_ann_test.json -> test). */
export function loadFlickr30kCaptions(file: string, opts: { imagesDir: string; split?: string; source?: SourceName }): pl.DataFrame {
  const json = readJsonFile(file, F30K_HINT);
  if (!isObject(json)) throw new DataFormatError(file, 'top level', `expected an object, found ${describe(json)}`, F30K_HINT);
  const split = opts.split ?? /_(train|val|test)\.json$/.exec(file)?.[1] ?? 'all';
  const imagesDir = path.resolve(opts.imagesDir);
  const cols = emptyColumns();
  for (const [name, entry] of Object.entries(json)) {
    const loc = `entry ${JSON.stringify(name)}`;
    if (!IMAGE_NAME.test(name)) throw new DataFormatError(file, loc, 'the key is not an image file name', F30K_HINT);
    const comments = isObject(entry) ? entry.comments : undefined;
    if (!Array.isArray(comments)) throw new DataFormatError(file, loc, `"comments" is ${isObject(entry) ? describe(comments) : describe(entry)}, expected an array of captions`, F30K_HINT);
    comments.forEach((c, k) => {
      if (typeof c !== 'string') throw new DataFormatError(file, `${loc}.comments[${k}]`, `is ${describe(c)}, expected a string`, F30K_HINT);
      const cap = cleanCaption(c);
      if (cap) pushRow(cols, { image_id: name.replace(/\.[^.]+$/, ''), file: path.join(imagesDir, name), split, caption: cap, source: opts.source ?? 'flickr30k' });
    });
  }
  return captionFrame(cols);
}
