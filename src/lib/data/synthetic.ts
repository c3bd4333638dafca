// Synthetic image-caption fixtures (smoke profile): one coloured shape on a coloured background,
// rendered with sharp from SVG, with five template captions that describe it ("a red circle on a
// blue background"). Deterministic from the seed: the same seed gives the same bytes.
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import pl from 'nodejs-polars';
import { buildDirAtomic, readJson, writeJsonAtomic, writeFileAtomic } from '../util/files';
import { rngFor, pick } from '../util/rng';
import { captionFrame, emptyColumns, pushRow } from './schema';

export const SYNTHETIC_COLORS: Record<string, [number, number, number]> = {
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [240, 210, 40],
  white: [245, 245, 245],
  black: [20, 20, 20],
  orange: [245, 140, 20],
  purple: [140, 60, 180],
};
export const SYNTHETIC_SHAPES = ['circle', 'square', 'triangle', 'diamond'] as const;
export type SyntheticShape = (typeof SYNTHETIC_SHAPES)[number];
export const SYNTHETIC_SIZES = ['small', 'large'] as const;
export const SYNTHETIC_POSITIONS = ['left', 'middle', 'right'] as const;

export interface SyntheticSpec {
  image_id: string;
  shape: SyntheticShape;
  color: string;
  background: string;
  size: (typeof SYNTHETIC_SIZES)[number];
  position: (typeof SYNTHETIC_POSITIONS)[number];
}

/** The specs of `n` images for a seed. */
export function syntheticSpecs(n: number, seed: number): SyntheticSpec[] {
  const rand = rngFor(seed, 'synthetic');
  const colors = Object.keys(SYNTHETIC_COLORS);
  const out: SyntheticSpec[] = [];
  for (let i = 0; i < n; i++) {
    const color = pick(colors, rand);
    const background = pick(
      colors.filter((c) => c !== color),
      rand,
    );
    out.push({
      image_id: `synthetic_${String(i).padStart(4, '0')}`,
      shape: pick(SYNTHETIC_SHAPES, rand),
      color,
      background,
      size: pick(SYNTHETIC_SIZES, rand),
      position: pick(SYNTHETIC_POSITIONS, rand),
    });
  }
  return out;
}

function where(p: SyntheticSpec['position']): string {
  return p === 'middle' ? 'in the middle' : `on the ${p}`;
}

/** "a" or "an" before a word. */
function a(word: string): string {
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}

/** Five captions that describe the image. */
export function syntheticCaptions(s: SyntheticSpec): string[] {
  return [
    `${a(s.color)} ${s.shape} on ${a(s.background)} background`,
    `a ${s.size} ${s.color} ${s.shape} ${where(s.position)}`,
    `a ${s.size} ${s.color} ${s.shape} ${where(s.position)} of ${a(s.background)} picture`,
    `${a(s.background)} background with ${a(s.color)} ${s.shape}`,
    `there is a ${s.size} ${s.color} ${s.shape} ${where(s.position)}`,
  ];
}

/** Centre and radius (pixels) of the shape in a `size` x `size` image. */
export function shapeGeometry(s: SyntheticSpec, size: number): { cx: number; cy: number; r: number } {
  const cx = size * (s.position === 'left' ? 0.3 : s.position === 'right' ? 0.7 : 0.5);
  return { cx, cy: size * 0.5, r: size * (s.size === 'large' ? 0.26 : 0.14) };
}

function rgb(name: string): string {
  const [r, g, b] = SYNTHETIC_COLORS[name];
  return `rgb(${r},${g},${b})`;
}

export function syntheticSvg(s: SyntheticSpec, size: number): string {
  const { cx, cy, r } = shapeGeometry(s, size);
  const f = (v: number) => v.toFixed(2);
  let shape: string;
  if (s.shape === 'circle') shape = `<circle cx="${f(cx)}" cy="${f(cy)}" r="${f(r)}"/>`;
  else if (s.shape === 'square') shape = `<rect x="${f(cx - r)}" y="${f(cy - r)}" width="${f(2 * r)}" height="${f(2 * r)}"/>`;
  else if (s.shape === 'triangle') shape = `<polygon points="${f(cx)},${f(cy - r)} ${f(cx + r)},${f(cy + r)} ${f(cx - r)},${f(cy + r)}"/>`;
  else shape = `<polygon points="${f(cx)},${f(cy - r)} ${f(cx + r)},${f(cy)} ${f(cx)},${f(cy + r)} ${f(cx - r)},${f(cy)}"/>`;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}">` +
    `<rect width="${size}" height="${size}" fill="${rgb(s.background)}"/><g fill="${rgb(s.color)}">${shape}</g></svg>`
  );
}

/** The PNG of one image. */
export async function renderSynthetic(s: SyntheticSpec, size: number): Promise<Buffer> {
  return sharp(Buffer.from(syntheticSvg(s, size))).removeAlpha().png({ compressionLevel: 9 }).toBuffer();
}

export interface SyntheticOptions {
  /** Where the fixtures go (images/ and captions.json). */
  dir: string;
  images: number;
  /** Side in pixels (a few hundred at most). */
  size: number;
  seed: number;
}

interface SyntheticIndex {
  seed: number;
  size: number;
  images: (SyntheticSpec & { file_name: string; captions: string[] })[];
}

const MAX_SIZE = 512;

/**
 * Generate the fixtures into `dir` (reused when they are already there for the same seed, count
 * and size) and return them as a caption table (source 'synthetic', split 'all').
 */
export async function generateSynthetic(opts: SyntheticOptions): Promise<pl.DataFrame> {
  if (!(opts.images > 0) || !(opts.size >= 8 && opts.size <= MAX_SIZE)) {
    throw new Error(`synthetic fixtures: images must be > 0 and size in [8, ${MAX_SIZE}] px (got ${opts.images} images of ${opts.size} px)`);
  }
  const dir = path.resolve(opts.dir);
  const specs = syntheticSpecs(opts.images, opts.seed);
  const index: SyntheticIndex = {
    seed: opts.seed,
    size: opts.size,
    images: specs.map((s) => ({ ...s, file_name: `${s.image_id}.png`, captions: syntheticCaptions(s) })),
  };
  const indexFile = path.join(dir, 'captions.json');
  const upToDate =
    fs.existsSync(indexFile) &&
    JSON.stringify(readJson(indexFile)) === JSON.stringify(index) &&
    index.images.every((im) => fs.existsSync(path.join(dir, 'images', im.file_name)));
  if (!upToDate) {
    await buildDirAtomic(dir, async (tmp) => {
      for (const im of index.images) writeFileAtomic(path.join(tmp, 'images', im.file_name), await renderSynthetic(im, opts.size));
      writeJsonAtomic(path.join(tmp, 'captions.json'), index);
    });
  }
  const cols = emptyColumns();
  for (const im of index.images) {
    for (const c of im.captions) pushRow(cols, { image_id: im.image_id, file: path.join(dir, 'images', im.file_name), split: 'all', caption: c, source: 'synthetic' });
  }
  return captionFrame(cols);
}
