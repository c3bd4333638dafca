// A dataset of your own: a folder of photos and captions (CLIPCAP_DATASET, DataConfig.custom), read
// into the caption table every other source produces (schema.ts), with every row that cannot be used
// counted and named instead of stopping the run.
//
// The folder:
//   images/                 the photos (JPEG, PNG, WebP, GIF or TIFF; subfolders allowed)
//   captions.csv            one row per caption: image,caption (the image's path inside images/);
//     or captions.txt       the header line "image,caption" is optional; quote a field holding commas
//                           or quotes ("a dog, running" ; "" inside quotes is one quote); a caption
//                           left unquoted may hold commas too (everything after the first comma)
//     or captions.json      COCO captions format: {"images": [{"id", "file_name"}], "annotations":
//                           [{"image_id", "caption"}]}
//   splits/train.txt        optional: one photo (path inside images/) a line, for each split given
//   splits/val.txt
//   splits/test.txt
// image_id is the photo's path inside images/ ("dog.jpg", "holiday/beach.png"); source is "custom".
// Without split files the split is a seeded draw by photo (build.ts customSplitSpec): data.evalImages photos
// to evaluate (0: one photo in ten), data.valFraction of the rest to validate, the rest to train;
// a split file present fixes that split (test.txt: the evaluation pool; val.txt: the validation
// photos; train.txt: the training pool).
//
// Bad input (each counted in CustomDatasetSummary.problems with its first examples; the run goes on
// with the valid rows, and stops with one message only when none is left): rows that cannot be parsed,
// rows that are not UTF-8, captions naming no photo, photos missing from images/ or unreadable
// (truncated, damaged, not an image: every photo named by a caption is decoded once), empty captions,
// duplicate rows, photos no caption names, split-file lines naming an unknown photo, photos in two
// split files, and (with train.txt and test.txt) photos in no split file.
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import pl from 'nodejs-polars';
import { decodeFailureReason } from '../util/image-problem';
import { parseCsvLine, readQuotedField } from './flickr';
import { isObject } from './read';
import { captionFrame, cleanCaption, emptyColumns, pushRow } from './schema';

/** The source name of every row of a dataset of your own. */
export const CUSTOM_SOURCE = 'custom';

/** The caption files looked for, in this order (the first present is read). */
export const CAPTION_FILES = ['captions.csv', 'captions.txt', 'captions.json'] as const;

/** The split files looked for under splits/, and the split each gives its photos. */
export const SPLIT_FILES: [string, 'train' | 'val' | 'test'][] = [
  ['train.txt', 'train'],
  ['val.txt', 'val'],
  ['test.txt', 'test'],
];

/** Photo file extensions accepted in images/ (what sharp decodes). */
const PHOTO_EXT = /\.(jpe?g|png|webp|gif|tiff?)$/i;

/** Every kind of bad input, and how it is said (a count, then these words). */
export const PROBLEM_KINDS = {
  malformedRow: 'rows that cannot be read (not "image,caption", a broken quote, a bad COCO entry)',
  notUtf8: 'rows that are not UTF-8 text',
  captionWithoutPhoto: 'captions that name no photo (an empty image field; COCO: an image_id not in "images")',
  missingPhoto: 'rows whose photo is not in images/',
  unreadablePhoto: 'rows whose photo cannot be read (truncated, damaged, not an image)',
  emptyCaption: 'rows with an empty caption',
  duplicateRow: 'duplicate rows (the same photo and caption again)',
  photoWithoutCaptions: 'photos in images/ without any caption',
  splitUnknownPhoto: 'split-file lines naming a photo that is not in the dataset',
  splitConflict: 'photos listed in two split files (left out)',
  notInSplitFile: 'photos in no split file (splits/train.txt and test.txt are given; left out)',
} as const;
export type ProblemKind = keyof typeof PROBLEM_KINDS;

/** The same in a few words (REPORT.md's dataset line). */
export const PROBLEM_SHORT: Record<ProblemKind, string> = {
  malformedRow: 'unreadable rows',
  notUtf8: 'non-UTF-8 rows',
  captionWithoutPhoto: 'captions naming no photo',
  missingPhoto: 'rows with a missing photo',
  unreadablePhoto: 'rows with an unreadable photo',
  emptyCaption: 'empty captions',
  duplicateRow: 'duplicate rows',
  photoWithoutCaptions: 'photos without captions',
  splitUnknownPhoto: 'unknown photos in split files',
  splitConflict: 'photos in two split files',
  notInSplitFile: 'photos in no split file',
};

/** How many examples of each problem are kept (the manifest names the first few). */
export const PROBLEM_EXAMPLES = 5;

export interface ProblemCount {
  count: number;
  /** The first few, each naming the file and line (or the photo) and what is wrong. */
  examples: string[];
}

/** What was read from a dataset folder (recorded in the subsets' manifest as `dataset`). */
export interface CustomDatasetSummary {
  /** The folder's name. */
  name: string;
  /** Its absolute path. */
  folder: string;
  format: 'csv' | 'coco-json';
  /** The caption file read (absolute). */
  captionsFile: string;
  /** CSV: whether its first line was a header. */
  header?: boolean;
  /** The split files present (e.g. ["test.txt"]); empty: the split is a seeded draw. */
  splitFiles: string[];
  /** Rows (CSV lines, COCO annotations) read. */
  rows: number;
  /** Valid captions and the photos they describe. */
  captions: number;
  photos: number;
  /** Photo files in images/. */
  photoFiles: number;
  /** Every kind of bad input found (kinds with none are absent). */
  problems: Partial<Record<ProblemKind, ProblemCount>>;
  /** Other things to know (e.g. a second caption file that was not read). */
  notes: string[];
}

export interface CustomDataset {
  /** The caption table: split = train | val | test from the split files, else none. */
  df: pl.DataFrame;
  summary: CustomDatasetSummary;
}

export interface LoadCustomOptions {
  /** Decode every photo named by a caption to find unreadable ones (default true). */
  checkPhotos?: boolean;
  /** Photos decoded at once (default 4). */
  concurrency?: number;
}

/** A raw row: where it is, the photo it names, its caption. */
interface RawRow {
  where: string;
  image: string;
  caption: string;
}

class Problems {
  readonly all: Partial<Record<ProblemKind, ProblemCount>> = {};
  add(kind: ProblemKind, example: string, n = 1): void {
    const p = (this.all[kind] ??= { count: 0, examples: [] });
    p.count += n;
    if (p.examples.length < PROBLEM_EXAMPLES) p.examples.push(example);
  }
}

const quote = (s: string, max = 60) => JSON.stringify(s.length > max ? s.slice(0, max) + '…' : s);

/** The photo files under images/, by their path inside it (posix separators). */
function listPhotos(imagesDir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string, rel: string) => {
    for (const ent of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (ent.name.startsWith('.')) continue;
      const p = path.join(dir, ent.name);
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (ent.isDirectory()) walk(p, r);
      else if (PHOTO_EXT.test(ent.name)) out.set(r, p);
    }
  };
  walk(imagesDir, '');
  return out;
}

/** A photo name as written in a caption or split file, as a path inside images/ ("./a.jpg", "images/a.jpg", "a\\b.jpg" -> "a.jpg", "a.jpg", "a/b.jpg"). */
function photoKey(name: string, photos: Map<string, string>): string {
  let n = name.trim().replace(/\\/g, '/').replace(/^(\.\/)+/, '');
  if (!photos.has(n) && n.startsWith('images/') && photos.has(n.slice(7))) n = n.slice(7);
  return n;
}

/** Why a photo name cannot be looked up (null when it can). */
function nameProblem(n: string): string | null {
  if (n.startsWith('/') || /^[A-Za-z]:/.test(n)) return 'an absolute path (give the path inside images/)';
  if (n.split('/').some((p) => p === '..')) return 'a path leaving images/';
  return null;
}

/** The lines of a text file as bytes (no line ending), with their 1-based numbers. */
function byteLines(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= buf.length; i++) {
    if (i === buf.length || buf[i] === 0x0a) {
      let end = i;
      if (end > start && buf[end - 1] === 0x0d) end--;
      out.push(buf.subarray(start, end));
      start = i + 1;
    }
  }
  if (out.length && out[out.length - 1].length === 0) out.pop();
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Lossy = new TextDecoder('utf-8');

/** One line as text, or null when it is not valid UTF-8. */
function decodeLine(b: Buffer): string | null {
  try {
    return utf8.decode(b);
  } catch {
    return null;
  }
}

/**
 * image,caption: the image (quoted or not), then the caption: one quoted field, or the rest of the line
 * as it is (commas and quotes included). Throws a message (without location) on a line that is neither.
 */
function splitCsvRow(line: string): [string, string] {
  let image: string;
  let rest: string;
  if (line.startsWith('"')) {
    const q = readQuotedField(line, 0, 'image field');
    image = q.value;
    const i = q.next;
    if (line[i] !== ',') throw new Error(i >= line.length ? 'one field, expected image,caption' : `unexpected character ${JSON.stringify(line[i])} after the quoted image field`);
    rest = line.slice(i + 1);
  } else {
    const k = line.indexOf(',');
    if (k < 0) throw new Error('one field, expected image,caption');
    image = line.slice(0, k);
    if (image.includes('"')) throw new Error('stray quote in the image field');
    rest = line.slice(k + 1);
  }
  if (!rest.startsWith('"')) return [image, rest];
  const fields = parseCsvLine(rest);
  if (fields.length !== 1) throw new Error(`${fields.length + 1} fields, expected image,caption (quote the whole caption when it holds commas)`);
  return [image, fields[0]];
}

function isHeader(fields: [string, string]): boolean {
  const [a, b] = fields.map((f) => f.trim().toLowerCase());
  return (a === 'image' && b === 'caption') || !PHOTO_EXT.test(a);
}

/** captions.csv / captions.txt into raw rows. */
function readCsv(file: string, problems: Problems, notes: string[]): { rows: RawRow[]; header: boolean; read: number } {
  const name = path.basename(file);
  const lines = byteLines(fs.readFileSync(file));
  const rows: RawRow[] = [];
  let header = false;
  let read = 0;
  let first = true;
  lines.forEach((b, i) => {
    const where = `${name} line ${i + 1}`;
    let line = decodeLine(b);
    if (line === null) {
      read++;
      problems.add('notUtf8', `${where}: ${quote(utf8Lossy.decode(b))}`);
      first = false;
      return;
    }
    if (i === 0) line = line.replace(/^\uFEFF/, '');
    if (!line.trim()) return;
    let fields: [string, string];
    try {
      fields = splitCsvRow(line);
    } catch (e) {
      read++;
      problems.add('malformedRow', `${where}: ${(e as Error).message}: ${quote(line)}`);
      first = false;
      return;
    }
    if (first) {
      first = false;
      if (isHeader(fields)) {
        header = true;
        if (fields[0].trim().toLowerCase() !== 'image' || fields[1].trim().toLowerCase() !== 'caption') {
          notes.push(`${where} is read as a header (its first field is not a photo file name): ${quote(line)}`);
        }
        return;
      }
    }
    read++;
    rows.push({ where, image: fields[0], caption: fields[1] });
  });
  return { rows, header, read };
}

/** captions.json (COCO captions format) into raw rows; photos listed in "images" are returned too. */
function readCocoJson(file: string, problems: Problems): { rows: RawRow[]; listed: Map<string, string>; read: number } {
  const name = path.basename(file);
  const buf = fs.readFileSync(file);
  let text: string;
  let lossy = false;
  try {
    text = utf8.decode(buf);
  } catch {
    text = utf8Lossy.decode(buf);
    lossy = true;
  }
  let json: unknown;
  try {
    json = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.split('\n')[0]}); expected the COCO captions format {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}`);
  }
  const images = isObject(json) ? json.images : undefined;
  const anns = isObject(json) ? json.annotations : undefined;
  if (!Array.isArray(images) || !Array.isArray(anns)) {
    throw new Error(`${file}: expected the COCO captions format, an object with "images" and "annotations" arrays (found ${isObject(json) ? `the keys ${Object.keys(json).slice(0, 5).join(', ') || 'none'}` : 'no object'})`);
  }
  const fileOf = new Map<string, string>();
  const listed = new Map<string, string>();
  images.forEach((im, k) => {
    const where = `${name} images[${k}]`;
    const id = isObject(im) ? im.id : undefined;
    const fn = isObject(im) ? im.file_name : undefined;
    if ((typeof id !== 'number' && typeof id !== 'string') || typeof fn !== 'string' || !fn.trim()) {
      problems.add('malformedRow', `${where}: expected {"id", "file_name"}, found ${quote(JSON.stringify(im) ?? String(im))}`);
      return;
    }
    if (fileOf.has(String(id))) {
      problems.add('malformedRow', `${where}: id ${String(id)} is listed twice (the first is used)`);
      return;
    }
    fileOf.set(String(id), fn);
    listed.set(fn, where);
  });
  const rows: RawRow[] = [];
  anns.forEach((a, k) => {
    const where = `${name} annotations[${k}]`;
    const id = isObject(a) ? a.image_id : undefined;
    const cap = isObject(a) ? a.caption : undefined;
    if ((typeof id !== 'number' && typeof id !== 'string') || (typeof cap !== 'string' && cap !== undefined && cap !== null)) {
      problems.add('malformedRow', `${where}: expected {"image_id", "caption"}, found ${quote(JSON.stringify(a) ?? String(a))}`);
      return;
    }
    const fn = fileOf.get(String(id));
    const caption = typeof cap === 'string' ? cap : '';
    if (lossy && (caption.includes('\uFFFD') || (fn ?? '').includes('\uFFFD'))) {
      problems.add('notUtf8', `${where}: ${quote(caption)}`);
      return;
    }
    if (fn === undefined) {
      problems.add('captionWithoutPhoto', `${where}: image_id ${String(id)} is not in "images": ${quote(caption)}`);
      return;
    }
    rows.push({ where, image: fn, caption });
  });
  return { rows, listed, read: anns.length };
}

/** Why a photo cannot be read (null when it decodes): a full decode to a tiny size, truncation refused. */
export async function photoProblem(file: string): Promise<string | null> {
  try {
    await sharp(file, { failOn: 'truncated', pages: 1 }).resize(8, 8, { fit: 'fill' }).raw().toBuffer();
    return null;
  } catch (e) {
    const message = ((e as Error).message ?? String(e)).split('\n')[0];
    try {
      return decodeFailureReason(new Uint8Array(fs.readFileSync(file)), message);
    } catch {
      return message;
    }
  }
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}

/** The caption file of a dataset folder, or a clear error saying what the folder needs. */
function findCaptionFile(folder: string, notes: string[]): string {
  const present = CAPTION_FILES.filter((f) => fs.existsSync(path.join(folder, f)));
  if (present.length === 0) {
    throw new Error(
      `${folder} has no captions file: put captions.csv (or captions.txt) with one "image,caption" row per caption, or a COCO-style captions.json, beside images/ (see the README, "Your own photos and captions")`,
    );
  }
  if (present.length > 1) notes.push(`${present.slice(1).join(' and ')} not read: ${present[0]} is (one captions file is read, in the order ${CAPTION_FILES.join(', ')})`);
  return path.join(folder, present[0]);
}

/**
 * Read a dataset folder of your own (see the file comment) into the caption table, with every bad
 * row counted and named in the summary. Throws one clear error when the folder or its captions file
 * is missing, the captions file cannot be parsed at all, or no valid caption is left.
 */
export async function loadCustomDataset(folder: string, opts: LoadCustomOptions = {}): Promise<CustomDataset> {
  const dir = path.resolve(folder);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new Error(`the dataset folder ${dir} does not exist (CLIPCAP_DATASET): point it at a folder holding images/ and captions.csv, captions.txt or captions.json`);
  }
  const imagesDir = path.join(dir, 'images');
  if (!fs.existsSync(imagesDir) || !fs.statSync(imagesDir).isDirectory()) {
    throw new Error(`the dataset folder ${dir} has no images/ folder: put the photos in ${imagesDir} (the captions name them by their path inside it)`);
  }
  const notes: string[] = [];
  const problems = new Problems();
  const captionsFile = findCaptionFile(dir, notes);
  const photos = listPhotos(imagesDir);
  const json = captionsFile.endsWith('.json');
  let raw: RawRow[];
  let read: number;
  let header: boolean | undefined;
  const listedInJson = new Map<string, string>();
  if (json) {
    const r = readCocoJson(captionsFile, problems);
    raw = r.rows;
    read = r.read;
    for (const [fn, where] of r.listed) listedInJson.set(photoKey(fn, photos), where);
  } else {
    const r = readCsv(captionsFile, problems, notes);
    raw = r.rows;
    read = r.read;
    header = r.header;
  }

  // Rows: a photo named, present, a caption, not seen before.
  type Row = { where: string; image: string; caption: string };
  const rows: Row[] = [];
  const seen = new Map<string, string>();
  const named = new Set<string>();
  for (const r of raw) {
    const img = photoKey(r.image, photos);
    const caption = cleanCaption(r.caption);
    if (!img) {
      problems.add('captionWithoutPhoto', `${r.where}: no image: ${quote(caption)}`);
      continue;
    }
    named.add(img);
    const bad = nameProblem(img);
    if (bad) {
      problems.add('malformedRow', `${r.where}: ${quote(r.image)} is ${bad}`);
      continue;
    }
    if (!photos.has(img)) {
      const lower = [...photos.keys()].find((k) => k.toLowerCase() === img.toLowerCase());
      const hint = lower ? ` (${lower} is: names are case-sensitive)` : PHOTO_EXT.test(img) ? '' : ' (not a photo file name: .jpg, .png, .webp, .gif, .tif)';
      problems.add('missingPhoto', `${r.where}: ${quote(img)} is not in images/${hint}`);
      continue;
    }
    if (!caption) {
      problems.add('emptyCaption', `${r.where}: ${img}`);
      continue;
    }
    const key = `${img}\t${caption}`;
    const first = seen.get(key);
    if (first) {
      problems.add('duplicateRow', `${r.where}: ${img} ${quote(caption)} (as ${first})`);
      continue;
    }
    seen.set(key, r.where);
    rows.push({ where: r.where, image: img, caption });
  }
  // COCO entries of "images" whose file is absent and that no annotation names
  for (const [img, where] of listedInJson) {
    if (!photos.has(img) && !named.has(img)) problems.add('missingPhoto', `${where}: ${quote(img)} is not in images/ (no caption names it)`);
  }

  // Photos: each one named by a valid row is decoded once.
  const used = [...new Set(rows.map((r) => r.image))];
  const unreadable = new Map<string, string>();
  if (opts.checkPhotos !== false) {
    const why = await mapLimit(used, opts.concurrency ?? 4, (img) => photoProblem(photos.get(img)!));
    used.forEach((img, i) => {
      if (why[i] !== null) unreadable.set(img, why[i]!);
    });
  }
  const valid = rows.filter((r) => {
    const why = unreadable.get(r.image);
    if (why !== undefined) problems.add('unreadablePhoto', `${r.where}: ${r.image}: ${why}`);
    return why === undefined;
  });
  const captioned = new Set(valid.map((r) => r.image));
  for (const img of photos.keys()) {
    if (!captioned.has(img) && !unreadable.has(img)) problems.add('photoWithoutCaptions', img);
  }

  // Split files.
  const splitsDir = path.join(dir, 'splits');
  const splitFiles = SPLIT_FILES.filter(([f]) => fs.existsSync(path.join(splitsDir, f)));
  const splitOf = new Map<string, string>();
  const conflicts = new Set<string>();
  for (const [f, split] of splitFiles) {
    byteLines(fs.readFileSync(path.join(splitsDir, f))).forEach((b, i) => {
      const where = `splits/${f} line ${i + 1}`;
      const text = decodeLine(b);
      if (text === null) {
        problems.add('notUtf8', `${where}: ${quote(utf8Lossy.decode(b))}`);
        return;
      }
      const line = text.replace(/^\uFEFF/, '').trim();
      if (!line || line.startsWith('#')) return;
      const img = photoKey(line, photos);
      if (!captioned.has(img)) {
        // a photo of the folder whose captions were all refused is already counted (missing captions, unreadable)
        if (!photos.has(img) && !named.has(img)) problems.add('splitUnknownPhoto', `${where}: ${quote(img)} is neither in images/ nor in ${path.basename(captionsFile)}`);
        return;
      }
      const prev = splitOf.get(img);
      if (prev && prev !== split) {
        if (!conflicts.has(img)) problems.add('splitConflict', `${img}: in splits/${prev}.txt and splits/${f}`);
        conflicts.add(img);
      } else splitOf.set(img, split);
    });
  }
  const has = (s: string) => splitFiles.some(([, x]) => x === s);
  const cols = emptyColumns();
  for (const r of valid) {
    if (conflicts.has(r.image)) continue;
    pushRow(cols, { image_id: r.image, file: photos.get(r.image)!, split: splitOf.get(r.image) ?? 'none', caption: r.caption, source: CUSTOM_SOURCE });
  }
  if (has('train') && has('test')) {
    for (const img of captioned) if (!splitOf.has(img) && !conflicts.has(img)) problems.add('notInSplitFile', img);
  }
  const df = captionFrame(cols);
  const summary: CustomDatasetSummary = {
    name: path.basename(dir),
    folder: dir,
    format: json ? 'coco-json' : 'csv',
    captionsFile,
    ...(header === undefined ? {} : { header }),
    splitFiles: splitFiles.map(([f]) => f),
    rows: read,
    captions: df.height,
    photos: new Set(cols.image_id).size,
    photoFiles: photos.size,
    problems: problems.all,
    notes,
  };
  if (df.height === 0) throw new Error(`nothing usable in the dataset ${dir}: ${describeDatasetProblems(summary)}`);
  return { df, summary };
}

/** The problems of a summary in one sentence ("no problems" when there are none). */
export function describeDatasetProblems(s: CustomDatasetSummary): string {
  const parts = (Object.keys(PROBLEM_KINDS) as ProblemKind[])
    .filter((k) => s.problems[k])
    .map((k) => `${s.problems[k]!.count} ${PROBLEM_KINDS[k]} (e.g. ${s.problems[k]!.examples[0]})`);
  const head = `${s.captions} valid captions of ${s.photos} photos from ${s.rows} rows of ${path.basename(s.captionsFile)}, ${s.photoFiles} photo files in images/`;
  return parts.length ? `${head}; left out: ${parts.join('; ')}` : `${head}; no problems`;
}

/** The data notes of a dataset of your own: one per kind of bad input (count, what, first examples), then its other notes. */
export function datasetNotes(s: CustomDatasetSummary): string[] {
  const out: string[] = [];
  for (const k of Object.keys(PROBLEM_KINDS) as ProblemKind[]) {
    const p = s.problems[k];
    if (!p) continue;
    const more = p.count > p.examples.length ? `, and ${p.count - p.examples.length} more` : '';
    out.push(`your dataset ${s.name}: ${p.count} ${PROBLEM_KINDS[k]}, left out (${p.examples.slice(0, 3).join('; ')}${p.examples.length > 3 || more ? '; ...' : ''}${more}; all listed under dataset.problems in the subsets' manifest.json)`);
  }
  return [...out, ...s.notes.map((n) => `your dataset ${s.name}: ${n}`)];
}

/** One table row per kind of bad input (notebook 01): what, how many, the first examples. */
export function datasetProblemRows(s: CustomDatasetSummary): { problem: string; count: number; examples: string }[] {
  return (Object.keys(PROBLEM_KINDS) as ProblemKind[])
    .filter((k) => s.problems[k])
    .map((k) => ({ problem: PROBLEM_KINDS[k], count: s.problems[k]!.count, examples: s.problems[k]!.examples.join('\n') }));
}
