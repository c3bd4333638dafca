import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import pl from 'nodejs-polars';
import sharp from 'sharp';
import { EmbeddingStore, mergeStores } from '../src/lib/embed/store';
import { createEncoder } from '../src/lib/embed/encoders/index';
import { fnv1a } from '../src/lib/util/rng';
import { extractEmbeddings, imagesFromSubsets, parseShard, shardImages, uniqueImages } from '../src/lib/embed/extract';
import type { EncoderConfig } from '../src/lib/config';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-extract-'));
const models = path.join(tmp, 'models');
const cfg: EncoderConfig = { kind: 'clip', modelId: 'tiny-random-clip', quantized: false, batchSize: 4, workers: 1 };

async function fixtures(n: number): Promise<{ image_id: string; file: string }[]> {
  const out: { image_id: string; file: string }[] = [];
  for (let i = 0; i < n; i++) {
    const file = path.join(tmp, `img${i}.${i % 2 ? 'png' : 'jpg'}`);
    const img = sharp({ create: { width: 40 + i, height: 30, channels: 3, background: { r: (i * 40) % 256, g: (i * 90) % 256, b: 255 - i * 20 } } });
    await (i % 2 ? img.png() : img.jpeg()).toFile(file);
    out.push({ image_id: `img${i}`, file });
  }
  return out;
}

test('extraction: rejects with reasons, a rerun skips everything, a partial store is completed', async () => {
  const good = await fixtures(10);
  const bad = path.join(tmp, 'broken.jpg');
  fs.writeFileSync(bad, 'not a jpeg');
  const images = [...good, good[0], { image_id: 'broken', file: bad }, { image_id: 'gone', file: path.join(tmp, 'missing.png') }];
  const storeDir = path.join(tmp, 'store');

  // a first run that only gets the first three (as if killed after its first batch)
  const part = await extractEmbeddings({ encoder: cfg, images: images.slice(0, 3), storeDir, models, progress: false });
  assert.equal(part.embedded, 3);
  const r = await extractEmbeddings({ encoder: cfg, images, storeDir, models, progress: false });
  assert.equal(r.images, 12);
  assert.equal(r.skipped, 3);
  assert.equal(r.embedded, 7);
  assert.equal(r.rejected, 2);
  assert.equal(r.rows, 10);
  assert.equal(r.encoder, 'tiny-random-clip');
  const s = EmbeddingStore.open(storeDir);
  assert.equal(s.meta.dataset, 'store');
  assert.equal(s.meta.runs.length, 2);
  assert.equal(s.meta.runs[1].embedded, 7);
  const rejects = Object.fromEntries(s.rejects().map((x) => [x.image_id, x]));
  assert.match(rejects.broken.reason, /broken\.jpg/);
  assert.match(rejects.gone.reason, /missing\.png/);
  assert.equal(rejects.gone.file, path.join(tmp, 'missing.png'));

  // the stored vector is the encoder's output for that file
  const enc = await createEncoder(cfg, { models });
  const [v] = await enc.embed([good[7].file]);
  await enc.dispose();
  assert.deepEqual(s.get('img7'), v);

  const again = await extractEmbeddings({ encoder: cfg, images, storeDir, models, progress: false });
  assert.deepEqual([again.skipped, again.embedded, again.rejected], [12, 0, 0]);
  // retrying rejects tries them again (and they fail again)
  const retry = await extractEmbeddings({ encoder: cfg, images, storeDir, models, progress: false, retryRejects: true });
  assert.deepEqual([retry.embedded, retry.rejected], [0, 0]);
  assert.equal(EmbeddingStore.open(storeDir).rejects().length, 2);

  // an id that names two files is an error before anything runs
  await assert.rejects(extractEmbeddings({ encoder: cfg, images: [...good, { image_id: 'img1', file: bad }], storeDir, models, progress: false }), /img1 names two files/);
});

test('shards in two worker processes, merged, equal a single in-process run', async () => {
  const images = await fixtures(9);
  const whole = path.join(tmp, 'whole');
  await extractEmbeddings({ encoder: cfg, images, storeDir: whole, models, progress: false });
  const shardDirs = [0, 1].map((i) => path.join(tmp, 'shards', String(i)));
  const r0 = await extractEmbeddings({ encoder: cfg, images, storeDir: shardDirs[0], dataset: 'ds', models, shard: { index: 0, count: 2 }, workers: 2, batchSize: 2, progress: false });
  const r1 = await extractEmbeddings({ encoder: cfg, images, storeDir: shardDirs[1], dataset: 'ds', models, shard: parseShard('1/2'), progress: false });
  assert.equal(r0.workers, 2);
  assert.equal(r0.images + r1.images, 9);
  assert.ok(r0.images > 0 && r1.images > 0);
  const merged = mergeStores(shardDirs, path.join(tmp, 'merged'));
  const ref = EmbeddingStore.open(whole);
  assert.deepEqual(merged.ids().sort(), ref.ids().sort());
  for (const id of ref.ids()) {
    const a = ref.get(id);
    const b = merged.get(id);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-5, `${id}[${i}] equal across worker/in-process runs`);
  }
});

test('sharding is a partition by id hash; images are de-duplicated', () => {
  const images = Array.from({ length: 200 }, (_, i) => ({ image_id: `id${i}`, file: `f${i}` }));
  const parts = [0, 1, 2].map((index) => shardImages(images, { index, count: 3 }));
  assert.equal(parts.reduce((a, p) => a + p.length, 0), 200);
  assert.equal(new Set(parts.flat().map((p) => p.image_id)).size, 200);
  assert.ok(parts.every((p) => p.length > 40));
  assert.equal(fnv1a('a'), 0xe40c292c);
  assert.throws(() => parseShard('2/2'), /0 <= index < count/);
  assert.throws(() => parseShard('x'), /i\/n/);
  assert.deepEqual(uniqueImages([{ image_id: 'a', file: 'x' }, { image_id: 'a', file: 'x' }, { image_id: 'b', file: 'y' }]), [
    { image_id: 'a', file: 'x' },
    { image_id: 'b', file: 'y' },
  ]);
});

test('images from subset parquet files, grouped by source, one per image', () => {
  const dir = path.join(tmp, 'subsets');
  fs.mkdirSync(dir);
  const frame = (rows: string[][]) =>
    pl.DataFrame(['image_id', 'file', 'split', 'caption', 'source'].map((c, i) => pl.Series(c, rows.map((r) => r[i]), pl.Utf8)));
  frame([
    ['1', '/p/1.jpg', 'train', 'a cat', 'coco-mini'],
    ['1', '/p/1.jpg', 'train', 'a cat again', 'coco-mini'],
    ['f1', '/q/f1.jpg', 'train', 'a dog', 'flickr8k-mini'],
  ]).writeParquet(path.join(dir, 'train.parquet'));
  frame([['2', '/p/2.jpg', 'eval', 'a bird', 'coco-mini']]).writeParquet(path.join(dir, 'eval.parquet'));
  const m = imagesFromSubsets(dir);
  assert.deepEqual([...m.keys()].sort(), ['coco-mini', 'flickr8k-mini']);
  assert.deepEqual(m.get('coco-mini')!.map((x) => [x.image_id, x.split]).sort(), [
    ['1', 'train'],
    ['2', 'eval'],
  ]);
  assert.throws(() => imagesFromSubsets(path.join(tmp, 'nope')), /notebook 01/);
});
