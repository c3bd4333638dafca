// The one table shape every caption source is loaded into, and small helpers around it.
//
// One row per caption:
//   image_id  Utf8  unique across sources: the COCO numeric id as a string ("391895"), the file stem
//                   for Flickr photos ("1000268201_693b08cb0e"), "synthetic_0007" for generated ones
//   file      Utf8  absolute path of the photo (or where it will be downloaded)
//   split     Utf8  a loader's output: the dataset's own split name (train2014, val2017, train, val,
//                   test, restval, none); a subset's output: train | val | eval
//   caption   Utf8  the caption, whitespace trimmed and collapsed (nothing else changed)
//   source    Utf8  which dataset the row comes from (SOURCES)
import pl from 'nodejs-polars';

export const SOURCES = ['coco2014', 'coco2017', 'coco-mini', 'flickr8k-mini', 'flickr8k', 'flickr30k', 'synthetic'] as const;
export type SourceName = (typeof SOURCES)[number];

export const SUBSET_SPLITS = ['train', 'val', 'eval'] as const;
export type SubsetSplit = (typeof SUBSET_SPLITS)[number];

export const COLUMNS = ['image_id', 'file', 'split', 'caption', 'source'] as const;
export type ColumnName = (typeof COLUMNS)[number];

export interface CaptionRow {
  image_id: string;
  file: string;
  split: string;
  caption: string;
  source: string;
}

/** Column arrays of a caption table (what loaders build; cheaper than row objects). */
export type CaptionColumns = Record<ColumnName, string[]>;

export function emptyColumns(): CaptionColumns {
  return { image_id: [], file: [], split: [], caption: [], source: [] };
}

export function pushRow(cols: CaptionColumns, r: CaptionRow): void {
  cols.image_id.push(r.image_id);
  cols.file.push(r.file);
  cols.split.push(r.split);
  cols.caption.push(r.caption);
  cols.source.push(r.source);
}

/** A DataFrame with exactly the schema above (Utf8 columns in order), also when empty. */
export function captionFrame(data: CaptionColumns | CaptionRow[]): pl.DataFrame {
  let cols: CaptionColumns;
  if (Array.isArray(data)) {
    cols = emptyColumns();
    for (const r of data) pushRow(cols, r);
  } else cols = data;
  const n = cols.image_id.length;
  for (const c of COLUMNS) {
    if (cols[c].length !== n) throw new Error(`caption table: column ${c} has ${cols[c].length} values, image_id has ${n}`);
  }
  // (a DataFrame from a record of string arrays is several times faster than one from Series; an
  // empty table needs the Series to get its Utf8 types)
  if (n === 0) return pl.DataFrame(COLUMNS.map((c) => pl.Series(c, [], pl.Utf8)));
  return pl.DataFrame({ image_id: cols.image_id, file: cols.file, split: cols.split, caption: cols.caption, source: cols.source });
}

/** Check that a DataFrame has the caption schema; `what` names it in the error (e.g. a file). */
export function assertCaptionFrame(df: pl.DataFrame, what: string): void {
  const names = df.columns;
  const missing = COLUMNS.filter((c) => !names.includes(c));
  if (missing.length) throw new Error(`${what}: missing column(s) ${missing.join(', ')}; expected ${COLUMNS.join(', ')}`);
  for (const c of COLUMNS) {
    const dt = String(df.getColumn(c).dtype);
    if (!/String|Utf8/.test(dt)) throw new Error(`${what}: column ${c} is ${dt}, expected Utf8`);
  }
}

/** The columns of a caption DataFrame as JS arrays. */
export function frameColumns(df: pl.DataFrame): CaptionColumns {
  const out = emptyColumns();
  for (const c of COLUMNS) out[c] = df.getColumn(c).toArray() as string[];
  return out;
}

export function frameRows(df: pl.DataFrame): CaptionRow[] {
  const c = frameColumns(df);
  return c.image_id.map((_, i) => ({ image_id: c.image_id[i], file: c.file[i], split: c.split[i], caption: c.caption[i], source: c.source[i] }));
}

/** Concatenate caption tables (an empty list gives an empty table). */
export function concatFrames(frames: pl.DataFrame[]): pl.DataFrame {
  const nonEmpty = frames.filter((f) => f.height > 0);
  if (nonEmpty.length === 0) return captionFrame(emptyColumns());
  if (nonEmpty.length === 1) return nonEmpty[0].select(...COLUMNS);
  return pl.concat(nonEmpty.map((f) => f.select(...COLUMNS)), { how: 'vertical' });
}

/** Trim and collapse whitespace; the words and punctuation stay as they are. */
export function cleanCaption(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/**
 * The key under which two captions count as the same text: lower case, letters and digits only,
 * single spaces ("A dog runs ." and "a dog runs." are equal).
 */
export function normaliseCaption(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();
}

/** One image with its captions, in the order the rows came. */
export interface ImageGroup {
  image_id: string;
  file: string;
  split: string;
  source: string;
  captions: string[];
}

/**
 * Group rows by image, in order of first appearance. An image_id that appears with two different
 * files or sources is an error (ids must be unique across sources).
 */
export function groupImages(cols: CaptionColumns, what = 'caption table'): ImageGroup[] {
  const byId = new Map<string, ImageGroup>();
  const out: ImageGroup[] = [];
  for (let i = 0; i < cols.image_id.length; i++) {
    const id = cols.image_id[i];
    let g = byId.get(id);
    if (!g) {
      g = { image_id: id, file: cols.file[i], split: cols.split[i], source: cols.source[i], captions: [] };
      byId.set(id, g);
      out.push(g);
    } else if (g.source !== cols.source[i] || g.file !== cols.file[i]) {
      throw new Error(
        `${what}: image_id "${id}" names two photos (${g.source}: ${g.file} and ${cols.source[i]}: ${cols.file[i]}); ` +
          'image ids must be unique across sources: do not combine two copies of one dataset',
      );
    }
    g.captions.push(cols.caption[i]);
  }
  return out;
}

/** Rows of a list of image groups, with the split column set to `split`. */
export function groupsToColumns(groups: ImageGroup[], split?: string, cols: CaptionColumns = emptyColumns()): CaptionColumns {
  for (const g of groups) {
    for (const c of g.captions) pushRow(cols, { image_id: g.image_id, file: g.file, split: split ?? g.split, caption: c, source: g.source });
  }
  return cols;
}

/** Images and captions per (split, source), sorted. */
export type CountRow = {
  split: string;
  source: string;
  images: number;
  captions: number;
};

export function countBySplitSource(df: pl.DataFrame): CountRow[] {
  if (df.height === 0) return [];
  const g = df
    .groupBy(['split', 'source'])
    .agg(pl.col('image_id').nUnique().alias('images'), pl.col('caption').count().alias('captions'))
    .sort(['split', 'source']);
  return (g.toRecords() as unknown as CountRow[]).map((r) => ({ split: r.split, source: r.source, images: Number(r.images), captions: Number(r.captions) }));
}

/** "file.json: images[3]" style location for error messages. */
export function where(file: string, loc?: string): string {
  return loc ? `${file}: ${loc}` : file;
}
