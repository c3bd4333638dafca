// The frozen image encoder: a name, an output dimension, and embed() on a batch of images.
//
// Encoders split their work in two so that callers can overlap decoding with inference:
// `prepare(image)` decodes and preprocesses one image (sharp, on libuv's thread pool) and
// `infer(prepared[])` runs the network on a batch. `embed()` does both. Each encoder describes its
// preprocessing (decoding policy, resize, normalisation, model files) in `preprocessing`, which the
// embedding store records in its metadata, and declares any post-processing of its raw output
// (`postprocess`, applied when embeddings are read: see src/lib/embed/store.ts).
import type { ImageInput } from './image';

/** A part of the raw vector that is centred and normalised on its own. */
export interface PostprocessPart {
  name: string;
  length: number;
}

/** What turns a stored raw row into the embedding the models see. */
export type Postprocess =
  | { kind: 'none' }
  | {
      /** Each part: subtract its mean over the training images (center.json), then L2-normalise it. */
      kind: 'center-l2';
      parts: PostprocessPart[];
    };

export type { ImageInput } from './image';

export interface ImageEncoder<Prepared = unknown> {
  /** Short name, used as the store folder (e.g. 'centernet', 'clip-vit-base-patch32'). */
  readonly name: string;
  /** Length of the raw output vectors. */
  readonly dim: number;
  /** Everything that determines the output for a given image file. */
  readonly preprocessing: Record<string, unknown>;
  /** Post-processing applied when reading the store (e.g. centring by training means). */
  readonly postprocess: Postprocess;
  /** Largest batch `infer` takes at once (a fixed-shape graph takes 1). */
  readonly maxBatch: number;
  /** Decode and preprocess one image. Throws ImageDecodeError for unreadable files. */
  prepare(input: ImageInput): Promise<Prepared>;
  /** Raw output vectors of a batch of prepared images. */
  infer(batch: Prepared[]): Promise<Float32Array[]>;
  /** prepare + infer. */
  embed(batch: ImageInput[]): Promise<Float32Array[]>;
  dispose(): Promise<void> | void;
}

/** embed() in terms of prepare() and infer(), honouring maxBatch. */
export async function embedWith<P>(enc: Pick<ImageEncoder<P>, 'prepare' | 'infer' | 'maxBatch'>, batch: ImageInput[]): Promise<Float32Array[]> {
  const prepared = await Promise.all(batch.map((b) => enc.prepare(b)));
  const out: Float32Array[] = [];
  for (let i = 0; i < prepared.length; i += enc.maxBatch) out.push(...(await enc.infer(prepared.slice(i, i + enc.maxBatch))));
  return out;
}
