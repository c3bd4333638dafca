// Image decoding for the encoders, with sharp.
//
// Every encoder sees the same decoded pixels: 8-bit sRGB, exactly 3 channels, rows top to bottom,
// interleaved RGB (HWC). The decoding policy, recorded in each embedding store's metadata
// (`DECODE_POLICY`):
//  - EXIF orientation is applied (`rotate()` with no angle), so a portrait photo stored sideways
//    with Orientation=6 comes out upright;
//  - grayscale, CMYK (converted with the embedded ICC profile, or sharp's default CMYK profile) and
//    16-bit images are converted to 8-bit sRGB;
//  - an alpha channel is flattened onto white (transparent pixels become white, as a viewer shows
//    them on a white page), then dropped;
//  - animated images: the first frame;
//  - truncated or undecodable files throw an `ImageDecodeError` naming the file (the extraction
//    puts them on its rejects list).
import * as fs from 'fs';
import sharp from 'sharp';
import { decodeFailureReason } from '../../util/image-problem';

export interface DecodedImage {
  /** Interleaved RGB bytes, row-major (height x width x 3). */
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

/** A file path, the encoded bytes of an image file, or an already decoded image. */
export type ImageInput = string | Uint8Array | DecodedImage;

export interface ResizeSpec {
  width: number;
  height: number;
  /**
   * 'fill': stretch to exactly width x height (aspect ratio not kept);
   * 'contain': letterbox (keep the aspect ratio, pad with `background`);
   * 'cover': scale to cover, then centre-crop.
   */
  fit: 'fill' | 'contain' | 'cover';
  /** sharp resampling kernel (default lanczos3, which antialiases when shrinking). */
  kernel?: 'nearest' | 'linear' | 'cubic' | 'mitchell' | 'lanczos2' | 'lanczos3';
}

/**
 * Resize so that the shorter side is `shortestEdge`, keeping the aspect ratio; the longer side is
 * floor(shortestEdge * long / short), as torchvision's Resize(int) in OpenAI CLIP's preprocessing.
 */
export interface ShortestEdgeSpec {
  shortestEdge: number;
  kernel?: ResizeSpec['kernel'];
}

export interface ImageDecodeOptions {
  /** Resize after orientation and colour conversion. */
  resize?: ResizeSpec | ShortestEdgeSpec;
  /** Colour that alpha is flattened onto and letterbox padding (default white). */
  background?: { r: number; g: number; b: number };
}

export const WHITE = { r: 255, g: 255, b: 255 } as const;

/** What decodeImage does, for the stores' preprocessing metadata. */
export const DECODE_POLICY = {
  library: `sharp ${sharp.versions?.sharp ?? ''}`.trim(),
  orientation: 'EXIF orientation applied',
  colour: '8-bit sRGB, 3 channels (grayscale and CMYK converted, 16-bit reduced)',
  alpha: 'flattened onto white, then dropped',
  frames: 'first frame of animated images',
  failOn: 'truncated',
} as const;

export class ImageDecodeError extends Error {
  constructor(
    readonly source: string,
    readonly reason: string,
  ) {
    super(`cannot decode image ${source}: ${reason}`);
    this.name = 'ImageDecodeError';
  }
}

export function isDecodedImage(x: unknown): x is DecodedImage {
  return typeof x === 'object' && x !== null && !(x instanceof Uint8Array) && 'data' in x && 'width' in x && 'height' in x;
}

function describe(input: string | Uint8Array): string {
  return typeof input === 'string' ? input : `<${input.byteLength} bytes>`;
}

/** Decode an image file (or its bytes) to upright 8-bit RGB, optionally resized. */
export async function decodeImage(input: string | Uint8Array, opts: ImageDecodeOptions = {}): Promise<DecodedImage> {
  const background = opts.background ?? WHITE;
  try {
    let img = sharp(input, { failOn: 'truncated', pages: 1 })
      .rotate()
      .flatten({ background })
      .toColourspace('srgb');
    if (opts.resize) {
      let r: ResizeSpec;
      if ('shortestEdge' in opts.resize) {
        const m = await sharp(input).metadata();
        if (!m.width || !m.height) throw new Error('image has no size');
        const swap = (m.orientation ?? 1) >= 5;
        const [w, h] = swap ? [m.height, m.width] : [m.width, m.height];
        r = { ...shortestEdgeSize(w, h, opts.resize.shortestEdge), fit: 'fill', kernel: opts.resize.kernel };
      } else r = opts.resize;
      img = img.resize(r.width, r.height, {
        fit: r.fit,
        kernel: r.kernel ?? 'lanczos3',
        background: { ...background, alpha: 1 },
        position: 'centre',
      });
    }
    const { data, info } = await img.removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    if (data.byteLength !== info.width * info.height * 3) throw new Error(`decoded ${data.byteLength} bytes for ${info.width}x${info.height}x3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: 3 };
  } catch (e) {
    if (e instanceof ImageDecodeError) throw e;
    const message = ((e as Error).message ?? String(e)).split('\n')[0];
    let bytes: Uint8Array | null = typeof input === 'string' ? null : input;
    if (!bytes) {
      try {
        bytes = new Uint8Array(fs.readFileSync(input as string));
      } catch {
        bytes = null; // missing or unreadable: sharp's message says so
      }
    }
    throw new ImageDecodeError(describe(input), bytes ? decodeFailureReason(bytes, message) : message);
  }
}

// decodeFailureReason lives in util/image-problem.ts (the data layer checks photos with it too).
export { decodeFailureReason };

/** Target size for a shortest-edge resize (torchvision / OpenAI CLIP rounding: floor). Pure. */
export function shortestEdgeSize(width: number, height: number, edge: number): { width: number; height: number } {
  if (width <= height) return { width: edge, height: Math.max(1, Math.floor((edge * height) / width)) };
  return { width: Math.max(1, Math.floor((edge * width) / height)), height: edge };
}

/**
 * Centre crop to width x height (torchvision CenterCrop: offsets round((size - crop) / 2); a crop
 * larger than the image is padded with black). Pure.
 */
export function centreCrop(img: DecodedImage, width: number, height: number): DecodedImage {
  if (img.width === width && img.height === height) return img;
  const out = new Uint8Array(width * height * 3);
  const top = Math.round((img.height - height) / 2);
  const left = Math.round((img.width - width) / 2);
  for (let y = 0; y < height; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= img.height) continue;
    const x0 = Math.max(0, -left);
    const x1 = Math.min(width, img.width - left);
    if (x1 <= x0) continue;
    out.set(img.data.subarray((sy * img.width + left + x0) * 3, (sy * img.width + left + x1) * 3), (y * width + x0) * 3);
  }
  return { data: out, width, height, channels: 3 };
}

/** Decode any ImageInput (decoded images pass through, or are resized when `opts.resize` is set). */
export async function toDecoded(input: ImageInput, opts: ImageDecodeOptions = {}): Promise<DecodedImage> {
  if (!isDecodedImage(input)) return decodeImage(input, opts);
  if (!opts.resize) return input;
  const r: ResizeSpec =
    'shortestEdge' in opts.resize
      ? { ...shortestEdgeSize(input.width, input.height, opts.resize.shortestEdge), fit: 'fill', kernel: opts.resize.kernel }
      : opts.resize;
  if (input.width === r.width && input.height === r.height) return input;
  // Re-encode-free resize of raw pixels.
  const bg = opts.background ?? WHITE;
  const { data, info } = await sharp(input.data, { raw: { width: input.width, height: input.height, channels: 3 } })
    .resize(r.width, r.height, { fit: r.fit, kernel: r.kernel ?? 'lanczos3', background: { ...bg, alpha: 1 }, position: 'centre' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: 3 };
}

/** Facts about an image file before decoding (for tests and the rejects list). */
export async function imageFacts(input: string | Uint8Array): Promise<{ format?: string; width?: number; height?: number; channels?: number; space?: string; orientation?: number; hasAlpha?: boolean }> {
  const m = await sharp(input).metadata();
  return { format: m.format, width: m.width, height: m.height, channels: m.channels, space: m.space, orientation: m.orientation, hasAlpha: m.hasAlpha };
}
