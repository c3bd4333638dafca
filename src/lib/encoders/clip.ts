// CLIP image encoder through transformers.js: CLIPVisionModelWithProjection + AutoProcessor, the
// 512-d `image_embeds` of ViT-B/32 (raw, not normalised, as ClipCap's parse_coco.py stores them).
//
// The model is a hub id (default Xenova/clip-vit-base-patch32, fetched through src/lib/hub.ts's
// settings and atomic cache) or a local directory in the same layout. Images are decoded with our
// sharp policy (EXIF orientation, grayscale/CMYK/alpha to RGB: see image.ts), then handed to the
// model's own processor as RawImage (resize shortest edge, centre crop, rescale, normalise), so the
// pixels the network sees are transformers.js's.
//
// onnxruntime-node runs the graph; by default it uses one intra-op thread per physical core. With
// several worker processes, `threads` caps each process (set through the session options that
// transformers.js does not expose: we wrap InferenceSession.create while the model loads).
import * as fs from 'fs';
import * as path from 'path';
import { configureHub, hubSettingsFromEnv, isLocalModel, loadTransformers, type HubSettings } from '../hub';
import type { Postprocess } from '../embeddings';
import { embedWith, type ImageEncoder } from './encoder';
import { DECODE_POLICY, toDecoded, type ImageInput } from './image';

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
    private readonly processor: TjsProcessor,
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
        do_center_crop: fe.do_center_crop,
        image_mean: fe.image_mean,
        image_std: fe.image_std,
        note: 'transformers.js 2.17 ImageFeatureExtractor: resize shortest edge (sharp affine, bicubic), centre crop, /255, normalise',
      },
      ...(generatedMarker && fs.existsSync(generatedMarker) ? { randomWeights: JSON.parse(fs.readFileSync(generatedMarker, 'utf8')).spec } : {}),
    };
    return new ClipEncoder(processor, model, opts.modelId, dim, opts.name ?? clipEncoderName(opts.modelId, opts.quantized), preprocessing);
  }

  async prepare(input: ImageInput): Promise<ClipPixels> {
    const img = await toDecoded(input);
    const { RawImage } = await loadTransformers();
    const raw = new RawImage(new Uint8ClampedArray(img.data.buffer, img.data.byteOffset, img.data.byteLength), img.width, img.height, 3);
    const { pixel_values } = await this.processor(raw);
    return { data: pixel_values.data, dims: pixel_values.dims.slice(1) };
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
