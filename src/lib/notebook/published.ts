// Published numbers for the table beside ours (labelled as theirs), and public photo URLs for the
// report's sample table.
import * as fs from 'fs';
import * as path from 'path';
import type { ImageGroup } from '../data/schema';
import { mirrorDir } from '../paths';
import { readJson } from '../util/files';

/** Their numbers, for the table beside ours (labelled as theirs). */
export const PUBLISHED = {
  seed: {
    source: 'seed study (the reproduction this project follows): 193 COCO images',
    rows: [
      { system: 'MLP + fine-tuned GPT-2', Bleu_4: 0.287 },
      { system: 'Transformer + frozen GPT-2', Bleu_4: 0.274 },
    ],
  },
  paper: {
    source: 'Mokady et al. 2021, Table 1: COCO Karpathy test split (5,000 images), CLIP ViT-B/32 + GPT-2',
    rows: [
      { system: 'ClipCap, MLP + GPT-2 tuning', Bleu_4: 0.3215, CIDEr: 1.0835, METEOR: 0.271, SPICE: 0.2012 },
      { system: 'ClipCap, Transformer (frozen GPT-2)', Bleu_4: 0.3353, CIDEr: 1.1308, METEOR: 0.2745, SPICE: 0.2105 },
    ],
  },
  flickr8k: {
    source: 'published Flickr8k test results (their encoders and BLEU scripts, see below)',
    rows: [
      { system: 'Karpathy & Fei-Fei 2015 (CVPR), multimodal RNN, VGG CNN', Bleu_4: 0.16 },
      { system: 'Xu et al. 2015 (ICML), Show, Attend and Tell, soft attention, VGG CNN', Bleu_4: 0.195 },
      { system: 'Xu et al. 2015 (ICML), Show, Attend and Tell, hard attention, VGG CNN', Bleu_4: 0.213 },
    ],
  },
} as const;

/** A public URL of an evaluation photo when it has one (COCO photos), for the report's sample table. */
export function publicPhotoUrls(groups: ImageGroup[]): Map<string, string> {
  const out = new Map<string, string>();
  let cocoMini: Map<string, string> | null = null;
  for (const g of groups) {
    const base = path.basename(g.file);
    const m = /^COCO_(train|val)2014_/.exec(base);
    if (m) {
      out.set(g.image_id, `http://images.cocodataset.org/${m[1]}2014/${base}`);
      continue;
    }
    if (g.source === 'coco-mini') {
      if (!cocoMini) {
        cocoMini = new Map();
        const dir = mirrorDir();
        const file = dir ? path.join(dir, 'coco-mini', 'captions.json') : '';
        if (file && fs.existsSync(file)) {
          for (const im of readJson<{ images: { file_name: string; coco_url?: string }[] }>(file).images) if (im.coco_url) cocoMini.set(im.file_name, im.coco_url);
        }
      }
      const url = cocoMini.get(base);
      if (url) out.set(g.image_id, url);
    }
  }
  return out;
}
