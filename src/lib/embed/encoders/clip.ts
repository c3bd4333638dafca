// CLIP image encoder through transformers.js: CLIPVisionModelWithProjection + AutoProcessor, the
// 512-d `image_embeds` of ViT-B/32 (raw, not normalised, as ClipCap's parse_coco.py stores them).
//
// The model is a hub id (default Xenova/clip-vit-base-patch32, fetched through src/lib/io/hub.ts's
// settings and atomic cache) or a local directory in the same layout. Images are decoded with our
// sharp policy (EXIF orientation, grayscale/CMYK/alpha to RGB: see image.ts).
//
// Pixels: the settings come from the model's preprocessor_config.json (read with AutoProcessor),
// applied as OpenAI CLIP's preprocessing (what ClipCap used): resize the shorter side to `size`
// with an antialiased bicubic filter (sharp 'cubic', like PIL BICUBIC), centre crop `crop_size`,
// rescale by 1/255, normalise by image_mean / image_std, CHW. We do not call the processor itself:
// transformers.js 2.17 reads an integer `size` (as in the CLIP repositories) as both shortest and
// longest edge, so it shrinks the whole photo into 224x224 and pads the rest with black instead of
// cropping, and its bicubic resize (sharp affine) does not antialias.
//
// onnxruntime-node runs the graph; by default it uses one intra-op thread per physical core. With
// several worker processes, `threads` caps each process (set through the session options that
// transformers.js does not expose: we wrap InferenceSession.create while the model loads).
import * as fs from 'fs';
import * as path from 'path';
import { configureHub, hubSettingsFromEnv, isLocalModel, loadTransformers, type HubSettings } from '../../io/hub';
import type { Postprocess } from './encoder';
import { embedWith, type ImageEncoder } from './encoder';
import { centreCrop, DECODE_POLICY, toDecoded, type DecodedImage, type ImageInput, type ResizeSpec, type ShortestEdgeSpec } from './image';

export const DEFAULT_CLIP_MODEL = 'Xenova/clip-vit-base-patch32';

export interface ClipOptions {
  /** Hub id or local directory (Xenova layout: config.json, preprocessor_config.json, onnx/). */
  modelId: string;
  /** Load onnx/vision_model_quantized.onnx (8-bit weights) instead of onnx/vision_model.onnx. */
  quantized: boolean;
  /** onnxruntime intra-op threads (default: onnxruntime's choice, one per physical core). */
  threads?: number;
  /** Hub settings (default: from the environment). */
  hub?: HubSettings;
  revision?: string;
  /** Store name (default derived from the model id). */
  name?: string;
  /** What to record as the model in the metadata (default modelId; generated models give their name, not a path). */
  label?: string;
}

/** The prepared input of one image: its pixel_values [3, S, S]. */
export interface ClipPixels {
  data: Float32Array;
  dims: number[];
}

interface TjsTensor {
  data: Float32Array;
  dims: number[];
}
interface TjsProcessor {
  (images: unknown): Promise<{ pixel_values: TjsTensor }>;
  feature_extractor?: { config?: Record<string, unknown> };
}
interface TjsModel {
  (inputs: Record<string, unknown>): Promise<Record<string, TjsTensor>>;
  dispose?: () => Promise<unknown>;
  config?: Record<string, unknown>;
}

/** How a processor config turns a decoded image into pixel_values. */
export interface ClipPixelPlan {
  resize: ShortestEdgeSpec | ResizeSpec | null;
  crop: { width: number; height: number } | null;
  rescale: number;
  mean: number[];
  std: number[];
}

const KERNELS: Record<number, ResizeSpec['kernel']> = { 0: 'nearest', 1: 'lanczos3', 2: 'linear', 3: 'cubic', 4: 'linear', 5: 'linear' };

function sizeOf(v: unknown, what: string): { width: number; height: number } | { shortestEdge: number } | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'number') return { shortestEdge: v };
  const o = v as { shortest_edge?: number; height?: number; width?: number };
  if (typeof o.shortest_edge === 'number') return { shortestEdge: o.shortest_edge };
  if (typeof o.height === 'number' && typeof o.width === 'number') return { width: o.width, height: o.height };
  throw new Error(`preprocessor_config.json: unsupported ${what} ${JSON.stringify(v)}`);
}

/** Read a CLIP processor config (preprocessor_config.json) into a pixel plan. Pure. */
export function clipPixelPlan(fe: Record<string, unknown>): ClipPixelPlan {
  const kernel = KERNELS[(fe.resample as number | undefined) ?? 3] ?? 'cubic';
  const size = fe.do_resize === false ? null : sizeOf(fe.size, 'size');
  const resize = size === null ? null : 'shortestEdge' in size ? { shortestEdge: size.shortestEdge, kernel } : { ...size, fit: 'fill' as const, kernel };
  let crop: ClipPixelPlan['crop'] = null;
  if (fe.do_center_crop !== false && fe.crop_size !== undefined) {
    const c = sizeOf(fe.crop_size, 'crop_size')!;
    crop = 'shortestEdge' in c ? { width: c.shortestEdge, height: c.shortestEdge } : c;
  }
  const mean = fe.do_normalize === false ? [0, 0, 0] : ((fe.image_mean ?? fe.mean) as number[] | undefined);
  const std = fe.do_normalize === false ? [1, 1, 1] : ((fe.image_std ?? fe.std) as number[] | undefined);
  if (!mean || !std || mean.length !== 3 || std.length !== 3) throw new Error('preprocessor_config.json needs image_mean and image_std with 3 values');
  const rescale = fe.do_rescale === false ? 1 : ((fe.rescale_factor as number | undefined) ?? 1 / 255);
  return { resize, crop, rescale, mean, std };
}

/** pixel_values [3, H, W] of a decoded (resized, cropped) image. Pure. */
export function pixelValues(img: DecodedImage, plan: ClipPixelPlan): Float32Array {
  const n = img.width * img.height;
  const out = new Float32Array(3 * n);
  const a = [0, 1, 2].map((c) => plan.rescale / plan.std[c]);
  const b = [0, 1, 2].map((c) => -plan.mean[c] / plan.std[c]);
  const d = img.data;
  for (let i = 0; i < n; i++) {
    out[i] = d[3 * i] * a[0] + b[0];
    out[n + i] = d[3 * i + 1] * a[1] + b[1];
    out[2 * n + i] = d[3 * i + 2] * a[2] + b[2];
  }
  return out;
}

/** A default store name for a CLIP model id: its last path part, plus '-quantized'. */
export function clipEncoderName(modelId: string, quantized: boolean): string {
  const base = path.basename(modelId.replace(/[\\/]+$/, ''));
  return `${/clip/i.test(base) ? base : `clip-${base}`}${quantized ? '-quantized' : ''}`;
}

type CreateFn = (...args: unknown[]) => Promise<unknown>;

/** Run `fn` with onnxruntime sessions created with `threads` intra-op threads. */
async function withOrtThreads<T>(threads: number | undefined, fn: () => Promise<T>): Promise<T> {
  if (!threads) return fn();
  const onnx = (await import('@xenova/transformers/src/backends/onnx.js' as string)) as { ONNX: { InferenceSession: { create: CreateFn } } };
  const IS = onnx.ONNX.InferenceSession;
  const original = IS.create;
  IS.create = function (this: unknown, ...args: unknown[]) {
    const last = args[args.length - 1];
    const opts = { intraOpNumThreads: threads, interOpNumThreads: 1, ...(last && typeof last === 'object' && !ArrayBuffer.isView(last) ? last : {}) };
    const rest = last && typeof last === 'object' && !ArrayBuffer.isView(last) ? args.slice(0, -1) : args;
    return original.apply(this, [...rest, opts]);
  } as CreateFn;
  try {
    return await fn();
  } finally {
    IS.create = original;
  }
}

export class ClipEncoder implements ImageEncoder<ClipPixels> {
  readonly name: string;
  readonly dim: number;
  readonly maxBatch = 64;
  readonly preprocessing: Record<string, unknown>;
  readonly postprocess: Postprocess = { kind: 'none' };

  private constructor(
    private readonly plan: ClipPixelPlan,
    private readonly model: TjsModel,
    readonly modelId: string,
    dim: number,
    name: string,
    preprocessing: Record<string, unknown>,
  ) {
    this.dim = dim;
    this.name = name;
    this.preprocessing = preprocessing;
  }

  static async load(opts: ClipOptions): Promise<ClipEncoder> {
    const T = await loadTransformers();
    const settings = await configureHub(opts.hub ?? hubSettingsFromEnv());
    const env = T.env as unknown as { allowLocalModels: boolean; localModelPath: string };
    const local = isLocalModel(opts.modelId);
    if (!local && (/^[./]/.test(opts.modelId) || path.isAbsolute(opts.modelId))) {
      throw new Error(`CLIP model directory ${opts.modelId} does not exist (and it is not a hub id such as ${DEFAULT_CLIP_MODEL})`);
    }
    const id = local ? path.resolve(opts.modelId) : opts.modelId;
    const common = { revision: opts.revision ?? 'main', local_files_only: local };
    const saved = { allowLocalModels: env.allowLocalModels, localModelPath: env.localModelPath };
    let processor: TjsProcessor;
    let model: TjsModel;
    try {
      if (local) {
        // transformers.js joins localModelPath and the id: with '/', an absolute directory is itself.
        env.allowLocalModels = true;
        env.localModelPath = '/';
      }
      [processor, model] = await withOrtThreads(opts.threads, () =>
        Promise.all([
          T.AutoProcessor.from_pretrained(id, common) as unknown as Promise<TjsProcessor>,
          T.CLIPVisionModelWithProjection.from_pretrained(id, { ...common, quantized: opts.quantized }) as unknown as Promise<TjsModel>,
        ]),
      );
    } catch (e) {
      const file = `onnx/vision_model${opts.quantized ? '_quantized' : ''}.onnx`;
      const where = local ? `the directory ${id}` : `${settings.remoteHost}${id} (cache ${settings.cacheDir})`;
      throw new Error(
        `cannot load the CLIP vision model "${opts.modelId}" from ${where}: ${(e as Error).message.split('\n')[0]}. ` +
          `It needs config.json, preprocessor_config.json and ${file}` +
          (local ? '.' : settings.offline ? '; offline mode (HF_HUB_OFFLINE) is on and they are not cached.' : '; check the network or HF_ENDPOINT / CLIPCAP_HUB_URL.'),
      );
    } finally {
      env.allowLocalModels = saved.allowLocalModels;
      env.localModelPath = saved.localModelPath;
    }
    const cfg = (model.config ?? {}) as { projection_dim?: number; vision_config?: { projection_dim?: number } };
    const dim = cfg.projection_dim ?? cfg.vision_config?.projection_dim;
    if (!dim) throw new Error(`config.json of ${opts.modelId} has no projection_dim`);
    const fe = processor.feature_extractor?.config ?? {};
    const plan = clipPixelPlan(fe);
    const generatedMarker = local ? path.join(id, 'clipcap_generated.json') : '';
    const preprocessing: Record<string, unknown> = {
      model: opts.label ?? opts.modelId,
      revision: opts.revision ?? 'main',
      file: `onnx/vision_model${opts.quantized ? '_quantized' : ''}.onnx`,
      quantized: opts.quantized,
      output: 'image_embeds (raw, not normalised)',
      decode: DECODE_POLICY,
      processor: {
        type: fe.feature_extractor_type ?? fe.image_processor_type,
        size: fe.size,
        crop_size: fe.crop_size,
        resample: fe.resample,
        image_mean: plan.mean,
        image_std: plan.std,
        rescale: plan.rescale,
      },
      pixels:
        'OpenAI CLIP preprocessing from the processor config: shorter side to size (floor for the longer side), sharp ' +
        `${plan.resize?.kernel ?? 'cubic'} (antialiased, like PIL), centre crop (torchvision offsets), rescale, normalise, CHW; ` +
        'not transformers.js 2.17 processor (it pads integer sizes instead of cropping)',
      ...(generatedMarker && fs.existsSync(generatedMarker) ? { randomWeights: JSON.parse(fs.readFileSync(generatedMarker, 'utf8')).spec } : {}),
    };
    return new ClipEncoder(plan, model, opts.modelId, dim, opts.name ?? clipEncoderName(opts.modelId, opts.quantized), preprocessing);
  }

  async prepare(input: ImageInput): Promise<ClipPixels> {
    let img = await toDecoded(input, { resize: this.plan.resize ?? undefined });
    if (this.plan.crop) img = centreCrop(img, this.plan.crop.width, this.plan.crop.height);
    return { data: pixelValues(img, this.plan), dims: [3, img.height, img.width] };
  }

  async infer(batch: ClipPixels[]): Promise<Float32Array[]> {
    if (batch.length === 0) return [];
    const { Tensor } = await loadTransformers();
    const per = batch[0].data.length;
    const data = new Float32Array(per * batch.length);
    batch.forEach((b, i) => {
      if (b.data.length !== per) throw new Error('CLIP batch: images of different sizes (use prepare())');
      data.set(b.data, i * per);
    });
    const pixel_values = new Tensor('float32', data, [batch.length, ...batch[0].dims]);
    const out = await this.model({ pixel_values });
    const emb = out.image_embeds;
    if (!emb) throw new Error(`the CLIP model ${this.modelId} has no image_embeds output (is it a CLIPVisionModelWithProjection export?)`);
    const d = emb.dims[emb.dims.length - 1];
    if (d !== this.dim) throw new Error(`image_embeds has ${d} values, config.json says ${this.dim}`);
    return batch.map((_, i) => emb.data.slice(i * d, (i + 1) * d));
  }

  embed(batch: ImageInput[]): Promise<Float32Array[]> {
    return embedWith(this, batch);
  }

  async dispose(): Promise<void> {
    try {
      await this.model.dispose?.();
    } catch {
      /* sessions are freed with the process */
    }
  }
}
