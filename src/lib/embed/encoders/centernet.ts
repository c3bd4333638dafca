// The offline stand-in image encoder: the CenterNet object detector shipped in the npm package
// @vladmandic/human (models/centernet.json + .bin; MIT; MobileNetV3 backbone trained on COCO's 80
// classes, https://github.com/610265158/mobilenetv3_centernet), run with TensorFlow.js in Node
// without tfjs-node (the graph model is read from disk by our own IO handler).
//
// Input `tower_0/images`: [1, 512, 512, 3], raw 0-255 RGB (no scaling). The raw embedding (1,640-d):
//   [0, 80)       max over height and width of `tower_0/keypoints` (the per-class centre heatmaps)
//   [80, 200)     global average pool of `tower_0/MobilenetV3/expanded_conv_14/add` (backbone output)
//   [200, 920)    the squeeze-excite input pool of the last block (expanded_conv_14: the average over
//                 height and width of its 720 expanded channels, which the graph computes anyway)
//   [920, 1640)   the same pool of the block before it (expanded_conv_13)
// Post-processing ('center-l2', applied when reading the store): each part is centred by its mean
// over the training images and L2-normalised.
//
// Why these parts (`npx tsx scripts/feature-probe.ts`: 1,200 Flickr8k train photos, 300 dev photos):
// a linear probe that predicts which of 297 frequent caption words a photo's captions use gains 0.0140
// nats a word over the words' frequencies with the first two parts alone (the embedding before
// 2026-12-06, 200-d) and 0.0212 with all four: half as much again of what the photo tells about its
// caption words. Nearest-neighbour retrieval's dev CIDEr-D went from 0.271 to 0.285. The wider
// backbone pool (extern1, 480-d) and its 2x2 grid added less (0.0181 and 0.0172).

import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ensureBackend } from '../../tfjs/backend';
import type { Postprocess } from './encoder';
import { embedWith, type ImageEncoder } from './encoder';
import { DECODE_POLICY, toDecoded, type DecodedImage, type ImageInput, type ResizeSpec } from './image';

export const CENTERNET_INPUT = 'tower_0/images';
export const CENTERNET_HEATMAP = 'tower_0/keypoints';
export const CENTERNET_FEATURES = 'tower_0/MobilenetV3/expanded_conv_14/add';
export const CENTERNET_SE_POOLS = ['tower_0/MobilenetV3/expanded_conv_14/squeeze_excite/Mean', 'tower_0/MobilenetV3/expanded_conv_13/squeeze_excite/Mean'] as const;
export const CENTERNET_SIZE = 512;
export const CENTERNET_PARTS = [
  { name: 'keypoints_max', length: 80 },
  { name: 'expanded_conv_14_avgpool', length: 120 },
  { name: 'expanded_conv_14_se_pool', length: 720 },
  { name: 'expanded_conv_13_se_pool', length: 720 },
] as const;
export const CENTERNET_DIM = CENTERNET_PARTS.reduce((s, p) => s + p.length, 0);
/**
 * The encoder's name, which names its embedding folder: '-v2' since the embedding grew from 200 to
 * 1,640 features, so that stores of the old embedding stay where they are and are not mixed in.
 */
export const CENTERNET_NAME = 'centernet-v2';

/** The folder holding centernet.json / centernet.bin inside @vladmandic/human. */
export function humanModelsDir(): string {
  // The package's exports hide package.json; walk up from its main file.
  let dir = path.dirname(require.resolve('@vladmandic/human'));
  while (!fs.existsSync(path.join(dir, 'models', 'centernet.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir || path.basename(dir) === 'node_modules') {
      throw new Error('cannot find models/centernet.json in the npm package @vladmandic/human; run `npm ci`');
    }
    dir = parent;
  }
  return path.join(dir, 'models');
}

interface ModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string;
  signature?: Record<string, unknown>;
  modelTopology: Record<string, unknown>;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  userDefinedMetadata?: Record<string, unknown>;
  modelInitializer?: Record<string, unknown>;
}

/** A tfjs IO handler that reads a model.json and its weight files from disk. */
export function fileIOHandler(modelJsonPath: string): tf.io.IOHandler {
  return {
    load: async () => {
      if (!fs.existsSync(modelJsonPath)) throw new Error(`model file ${modelJsonPath} does not exist`);
      const json = JSON.parse(fs.readFileSync(modelJsonPath, 'utf8')) as ModelJson;
      const dir = path.dirname(modelJsonPath);
      const weightSpecs: tf.io.WeightsManifestEntry[] = [];
      const buffers: Buffer[] = [];
      for (const group of json.weightsManifest) {
        weightSpecs.push(...group.weights);
        for (const p of group.paths) {
          const f = path.join(dir, p);
          if (!fs.existsSync(f)) throw new Error(`weight file ${f} named by ${modelJsonPath} does not exist`);
          buffers.push(fs.readFileSync(f));
        }
      }
      const all = Buffer.concat(buffers);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      return {
        modelTopology: json.modelTopology,
        weightSpecs,
        weightData,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy ?? undefined,
        signature: json.signature,
        userDefinedMetadata: json.userDefinedMetadata,
        modelInitializer: json.modelInitializer,
      } as tf.io.ModelArtifacts;
    },
  };
}

export interface CenterNetOptions {
  /** Folder with centernet.json + centernet.bin (default: the one in @vladmandic/human). */
  modelDir?: string;
  /** 'stretch' (default; what human itself does) or 'letterbox' (keep aspect ratio, white bars). */
  resize?: 'stretch' | 'letterbox';
}

export class CenterNetEncoder implements ImageEncoder<DecodedImage> {
  readonly name = CENTERNET_NAME;
  readonly dim = CENTERNET_DIM;
  readonly maxBatch = 1;
  readonly preprocessing: Record<string, unknown>;
  readonly postprocess: Postprocess = { kind: 'center-l2', parts: CENTERNET_PARTS.map((p) => ({ ...p })) };
  private readonly resize: ResizeSpec;

  private constructor(
    private readonly model: tf.GraphModel,
    opts: Required<CenterNetOptions>,
    weightsBytes: number,
  ) {
    this.resize = { width: CENTERNET_SIZE, height: CENTERNET_SIZE, fit: opts.resize === 'letterbox' ? 'contain' : 'fill', kernel: 'lanczos3' };
    this.preprocessing = {
      model: '@vladmandic/human models/centernet.json (MobileNetV3 CenterNet, COCO 80 classes)',
      weightsBytes,
      decode: DECODE_POLICY,
      resize: `${opts.resize === 'letterbox' ? 'letterbox (aspect kept, white padding)' : 'stretch (aspect not kept)'} to ${CENTERNET_SIZE}x${CENTERNET_SIZE}, sharp lanczos3`,
      input: `${CENTERNET_INPUT} [1,${CENTERNET_SIZE},${CENTERNET_SIZE},3] float32 raw 0-255 RGB, no scaling`,
      output: `[0,80) max over H,W of ${CENTERNET_HEATMAP}; [80,200) mean over H,W of ${CENTERNET_FEATURES}; [200,920) ${CENTERNET_SE_POOLS[0]}; [920,1640) ${CENTERNET_SE_POOLS[1]}`,
    };
  }

  static async load(opts: CenterNetOptions = {}): Promise<CenterNetEncoder> {
    await ensureBackend();
    const dir = opts.modelDir ?? humanModelsDir();
    const file = path.join(dir, 'centernet.json');
    if (!fs.existsSync(file)) {
      throw new Error(`the CenterNet model is missing: ${file} (it ships with the npm package @vladmandic/human; run \`npm ci\`)`);
    }
    const model = await tf.loadGraphModel(fileIOHandler(file));
    const bin = path.join(dir, 'centernet.bin');
    return new CenterNetEncoder(model, { modelDir: dir, resize: opts.resize ?? 'stretch' }, fs.existsSync(bin) ? fs.statSync(bin).size : 0);
  }

  prepare(input: ImageInput): Promise<DecodedImage> {
    return toDecoded(input, { resize: this.resize });
  }

  async infer(batch: DecodedImage[]): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const img of batch) {
      if (img.width !== CENTERNET_SIZE || img.height !== CENTERNET_SIZE) throw new Error(`CenterNet needs ${CENTERNET_SIZE}x${CENTERNET_SIZE} input, got ${img.width}x${img.height} (use prepare())`);
      const feat = tf.tidy(() => {
        const x = tf.tensor4d(Float32Array.from(img.data), [1, CENTERNET_SIZE, CENTERNET_SIZE, 3], 'float32');
        const [heat, backbone, ...pools] = this.model.execute({ [CENTERNET_INPUT]: x }, [CENTERNET_HEATMAP, CENTERNET_FEATURES, ...CENTERNET_SE_POOLS]) as tf.Tensor4D[];
        return tf.concat([tf.max(heat, [1, 2]), tf.mean(backbone, [1, 2]), ...pools.map((p) => tf.reshape(p, [1, -1]))], 1);
      });
      const v = (await feat.data()) as Float32Array;
      feat.dispose();
      if (v.length !== this.dim) throw new Error(`CenterNet produced ${v.length} features, expected ${this.dim}`);
      out.push(v);
    }
    return out;
  }

  embed(batch: ImageInput[]): Promise<Float32Array[]> {
    return embedWith(this, batch);
  }

  dispose(): void {
    this.model.dispose();
  }
}
