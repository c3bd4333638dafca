// Which CenterNet outputs make the best image embedding? Two cheap proxies on Flickr8k, run before
// committing a new embedding to a 16-minute extraction and two trainings:
//  1. nearest-neighbour retrieval: dev CIDEr-D / BLEU-4 of the consensus caption of the 25 nearest
//     training photos (the baseline of the evaluation, eval/baselines.ts), per candidate embedding;
//  2. a linear word probe: logistic regression from the embedding to "does one of the photo's captions
//     use word w" for the frequent caption words; the dev cross-entropy per word (lower = the embedding
//     says more about what the captions will mention), against the words' frequencies alone.
// Each candidate is a list of parts; every part is centred on the training photos and L2-normalised
// (the 'center-l2' post-processing of the embedding store), then the parts are concatenated.
//
//   npx tsx scripts/feature-probe.ts [--train 1200] [--dev 300]
//
// The raw outputs per photo are cached (atomically) in data/offline/tuning/feature-probe.json; a rerun
// reuses them. Reads the Flickr8k of the local mirror (../shared/data or CLIPCAP_DATA_DIR) in place.
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ensureBackend } from '../src/lib/tfjs/backend';
import { fileIOHandler, humanModelsDir, CENTERNET_INPUT, CENTERNET_SIZE } from '../src/lib/embed/encoders/centernet';
import { toDecoded } from '../src/lib/embed/encoders/image';
import { loadFlickr8k } from '../src/lib/data/flickr';
import { mirrorLayout } from '../src/lib/data/mirror';
import { requireMirrorDir, repoRoot } from '../src/lib/paths';
import { retrievalCaptions } from '../src/lib/eval/baselines';
import { scoreCaptions } from '../src/lib/eval/metrics/index';
import { writeFileAtomic } from '../src/lib/util/files';

const NODES = {
  heat: 'tower_0/keypoints',
  c14: 'tower_0/MobilenetV3/expanded_conv_14/add',
  se14: 'tower_0/MobilenetV3/expanded_conv_14/squeeze_excite/Mean',
  se13: 'tower_0/MobilenetV3/expanded_conv_13/squeeze_excite/Mean',
  ext: 'tower_0/extern1/hard_swish/mul_1',
};

/** The candidate embeddings (lists of parts); 'before' is the 200-d embedding used until 2026-12-06. */
const CANDIDATES: Record<string, string[]> = {
  before: ['heatmax', 'c14avg'],
  heatmax: ['heatmax'],
  extavg: ['extavg'],
  'heat+ext': ['heatmax', 'extavg'],
  'heat+c14+ext': ['heatmax', 'c14avg', 'extavg'],
  'heat+c14+ext2x2': ['heatmax', 'c14avg', 'ext2x2'],
  'heat+c14+se14+se13 (kept)': ['heatmax', 'c14avg', 'se14', 'se13'],
  'heat+c14+ext+se14+se13': ['heatmax', 'c14avg', 'extavg', 'se14', 'se13'],
};

type Parts = Record<string, number[]>;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : def;
  if (!(Number.isInteger(v) && v > 0)) throw new Error(`--${name} must be a whole number > 0`);
  return v;
}

function quadrants(t: tf.Tensor4D): tf.Tensor {
  const [, h, w] = t.shape;
  const hh = Math.floor(h / 2), ww = Math.floor(w / 2);
  const box = (y: number, x: number, dy: number, dx: number) => tf.mean(t.slice([0, y, x, 0], [1, dy, dx, -1]), [1, 2]);
  return tf.concat([box(0, 0, hh, ww), box(0, ww, hh, w - ww), box(hh, 0, h - hh, ww), box(hh, ww, h - hh, w - ww)], 1);
}

async function extract(model: tf.GraphModel, file: string): Promise<Parts> {
  const img = await toDecoded(file, { resize: { width: CENTERNET_SIZE, height: CENTERNET_SIZE, fit: 'fill', kernel: 'lanczos3' } });
  const out = tf.tidy(() => {
    const x = tf.tensor4d(Float32Array.from(img.data), [1, CENTERNET_SIZE, CENTERNET_SIZE, 3]);
    const [heat, c14, se14, se13, ext] = model.execute({ [CENTERNET_INPUT]: x }, Object.values(NODES)) as tf.Tensor4D[];
    return { heatmax: tf.max(heat, [1, 2]), c14avg: tf.mean(c14, [1, 2]), se14: tf.reshape(se14, [1, -1]), se13: tf.reshape(se13, [1, -1]), extavg: tf.mean(ext, [1, 2]), ext2x2: quadrants(ext) } as Record<string, tf.Tensor>;
  });
  const parts: Parts = {};
  for (const [k, t] of Object.entries(out)) {
    parts[k] = Array.from(await t.data());
    t.dispose();
  }
  return parts;
}

/** Centre each part on the training photos, L2-normalise it, concatenate. */
function embedder(feats: Record<string, Parts>, train: string[], parts: string[]): (id: string) => Float32Array {
  const means = parts.map((p) => {
    const m = new Float64Array(feats[train[0]][p].length);
    for (const id of train) feats[id][p].forEach((v, i) => (m[i] += v / train.length));
    return m;
  });
  return (id) => {
    const out: number[] = [];
    parts.forEach((p, j) => {
      const v = feats[id][p].map((x, i) => x - means[j][i]);
      const n = Math.hypot(...v) || 1;
      for (const x of v) out.push(x / n);
    });
    return Float32Array.from(out);
  };
}

/** Dev cross-entropy per word of a logistic-regression word probe (best of two L2 weights). */
function wordProbe(x: Float32Array[], y: tf.Tensor2D, xDev: Float32Array[], yDev: tf.Tensor2D): number {
  return tf.tidy(() => {
    const d = x[0].length;
    const X0 = tf.tensor2d(x.map((r) => Array.from(r))), Xd0 = tf.tensor2d(xDev.map((r) => Array.from(r)));
    const mu = tf.mean(X0, 0), sd = tf.add(tf.sqrt(tf.mean(tf.square(tf.sub(X0, mu)), 0)), 1e-6);
    const X = tf.div(tf.sub(X0, mu), sd), Xd = tf.div(tf.sub(Xd0, mu), sd);
    const prior = tf.clipByValue(tf.mean(y, 0), 1e-4, 1 - 1e-4);
    let best = Infinity;
    for (const l2 of [1e-3, 1e-2]) {
      const W = tf.variable(tf.zeros([d, y.shape[1]])), b = tf.variable(tf.log(tf.div(prior, tf.sub(1, prior))));
      const opt = tf.train.adam(0.01);
      for (let it = 0; it < 300; it++) opt.minimize(() => tf.add(tf.losses.sigmoidCrossEntropy(y, tf.add(tf.matMul(X, W), b)), tf.mul(l2, tf.sum(tf.square(W)))) as tf.Scalar);
      best = Math.min(best, tf.losses.sigmoidCrossEntropy(yDev, tf.add(tf.matMul(Xd, W), b)).dataSync()[0] as number);
      W.dispose();
      b.dispose();
      opt.dispose();
    }
    return best;
  });
}

async function main(): Promise<void> {
  const nTrain = arg('train', 1200), nDev = arg('dev', 300);
  await ensureBackend();
  const layout = mirrorLayout(requireMirrorDir());
  const rows = loadFlickr8k(layout.flickr8k.dir).toRecords() as { image_id: string; file: string; split: string; caption: string }[];
  const caps = new Map<string, string[]>(), file = new Map<string, string>(), split = new Map<string, string>();
  for (const r of rows) {
    if (!caps.has(r.image_id)) caps.set(r.image_id, []);
    caps.get(r.image_id)!.push(r.caption);
    file.set(r.image_id, r.file);
    split.set(r.image_id, r.split);
  }
  const train = [...caps.keys()].filter((k) => split.get(k) === 'train').slice(0, nTrain);
  const dev = [...caps.keys()].filter((k) => split.get(k) === 'val').slice(0, nDev);
  if (train.length < nTrain || dev.length < nDev) throw new Error(`the mirror's Flickr8k has ${train.length} train and ${dev.length} dev photos; asked for ${nTrain} and ${nDev}`);

  const cache = path.join(repoRoot(), 'data', 'offline', 'tuning', 'feature-probe.json');
  const feats: Record<string, Parts> = fs.existsSync(cache) ? JSON.parse(fs.readFileSync(cache, 'utf8')) : {};
  const todo = [...train, ...dev].filter((id) => !feats[id]);
  if (todo.length) {
    const model = await tf.loadGraphModel(fileIOHandler(path.join(humanModelsDir(), 'centernet.json')));
    const t0 = Date.now();
    for (let i = 0; i < todo.length; i++) {
      feats[todo[i]] = await extract(model, file.get(todo[i])!);
      if ((i + 1) % 100 === 0 || i + 1 === todo.length) {
        const s = (Date.now() - t0) / 1000;
        console.log(`extracted ${i + 1}/${todo.length} photos | ${((i + 1) / s).toFixed(1)} photos/s | ETA ${Math.round(((todo.length - i - 1) * s) / (i + 1))} s`);
        writeFileAtomic(cache, JSON.stringify(feats));
      }
    }
    model.dispose();
  }

  // Word targets: the 300 most frequent content words of the training captions.
  const words = (id: string) => new Set(caps.get(id)!.join(' ').toLowerCase().split(/[^a-z]+/).filter(Boolean));
  const stop = new Set('a an the is are in on of and with at to his her its their while for by from two one some'.split(' '));
  const df = new Map<string, number>();
  for (const id of train) for (const w of words(id)) if (!stop.has(w)) df.set(w, (df.get(w) ?? 0) + 1);
  const vocab = [...df].filter(([, c]) => c >= 15).sort((a, b) => b[1] - a[1]).slice(0, 300).map(([w]) => w);
  const targets = (ids: string[]) => tf.tensor2d(ids.map((id) => { const ws = words(id); return vocab.map((w) => (ws.has(w) ? 1 : 0)); }));
  const y = targets(train), yDev = targets(dev);
  const prior = tf.tidy(() => tf.losses.sigmoidCrossEntropy(yDev, tf.broadcastTo(tf.log(tf.div(tf.clipByValue(tf.mean(y, 0), 1e-4, 1 - 1e-4), tf.sub(1, tf.clipByValue(tf.mean(y, 0), 1e-4, 1 - 1e-4)))), yDev.shape)).dataSync()[0] as number);
  console.log(`\n${train.length} train / ${dev.length} dev photos (Flickr8k); word probe over ${vocab.length} words; word frequencies alone: ${prior.toFixed(4)} nats a word\n`);
  console.log('| embedding | dim | retrieval dev CIDEr-D | retrieval dev BLEU-4 | word probe, nats a word | gain over frequencies |');
  console.log('|---|---|---|---|---|---|');
  const refs = new Map(dev.map((id) => [id, caps.get(id)!]));
  const groups = train.map((id) => ({ image_id: id, captions: caps.get(id)! }));
  for (const [name, parts] of Object.entries(CANDIDATES)) {
    const emb = embedder(feats, train, parts);
    const got = retrievalCaptions(groups, emb, new Map(dev.map((id) => [id, emb(id)])), 25);
    const s = scoreCaptions(refs, got).scores;
    const probe = wordProbe(train.map(emb), y, dev.map(emb), yDev);
    console.log(`| ${name} | ${emb(train[0]).length} | ${s.CIDEr.toFixed(3)} | ${s.Bleu_4.toFixed(3)} | ${probe.toFixed(4)} | ${(prior - probe).toFixed(4)} |`);
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
