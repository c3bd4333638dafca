import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { startHubServer } from './helpers/hub-server';
import { createEncoder, encoderName, ClipEncoder } from '../src/lib/embed/encoders/index';
import { clipPixelPlan, pixelValues } from '../src/lib/embed/encoders/clip';
import { CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, ensureRandomClip, randomClipWeights, TINY_CLIP_SPEC, GENERATED_MARKER } from '../src/lib/embed/encoders/tiny-clip';
import { clipVisionReference } from './helpers/clip-reference';
import type { EncoderConfig } from '../src/lib/config';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-clip-'));
const models = path.join(tmp, 'models');
const S = TINY_CLIP_SPEC.imageSize;

/** A smooth S x S image (so the processor's identity resize cannot change it) and its raw pixels. */
async function smoothImage(name: string, phase: number): Promise<{ file: string; raw: Buffer }> {
  const raw = Buffer.alloc(S * S * 3);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const i = (y * S + x) * 3;
      raw[i] = Math.round(127 + 100 * Math.sin((x + phase) / 6));
      raw[i + 1] = Math.round(127 + 100 * Math.cos((y - phase) / 7));
      raw[i + 2] = (x * 4 + y * 3 + phase) % 256;
    }
  const file = path.join(tmp, name);
  await sharp(raw, { raw: { width: S, height: S, channels: 3 } }).png().toFile(file);
  return { file, raw };
}

/** pixel_values [3, S, S] as CLIP's processor makes them from an image already S x S. */
function normalise(raw: Buffer): Float32Array {
  const px = new Float32Array(3 * S * S);
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < S * S; i++) px[c * S * S + i] = (raw[i * 3 + c] / 255 - CLIP_IMAGE_MEAN[c]) / CLIP_IMAGE_STD[c];
  return px;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const cfg: EncoderConfig = { kind: 'clip', modelId: 'tiny-random-clip', quantized: false, batchSize: 4, workers: 1 };

test('tiny random CLIP: generated in the Xenova layout, loaded from a local directory, equal to the reference forward pass', async () => {
  const enc = await createEncoder(cfg, { models });
  const dir = path.join(models, 'tiny-random-clip');
  for (const f of ['config.json', 'preprocessor_config.json', 'onnx/vision_model.onnx', 'onnx/vision_model_quantized.onnx', GENERATED_MARKER]) {
    assert.ok(fs.existsSync(path.join(dir, f)), `${f} written`);
  }
  assert.equal(enc.name, 'tiny-random-clip');
  assert.equal(encoderName(cfg), enc.name);
  assert.equal(enc.dim, TINY_CLIP_SPEC.projectionDim);
  assert.match(String(enc.preprocessing.model), /tiny-random-clip/);
  assert.ok(!String(enc.preprocessing.model).includes(tmp), 'no machine-specific path in the metadata');
  const a = await smoothImage('a.png', 0);
  const b = await smoothImage('b.png', 9);
  const w = randomClipWeights(TINY_CLIP_SPEC);
  const [ea, eb] = await enc.embed([a.file, b.file]);
  assert.ok(maxDiff(ea, clipVisionReference(TINY_CLIP_SPEC, w, normalise(a.raw))) < 1e-4);
  assert.ok(maxDiff(eb, clipVisionReference(TINY_CLIP_SPEC, w, normalise(b.raw))) < 1e-4);
  // batch of one == batch of two
  const [ea1] = await enc.embed([a.file]);
  assert.ok(maxDiff(ea1, ea) < 1e-5);
  // bigger, non-square images go through resize + centre crop
  const big = path.join(tmp, 'big.jpg');
  await sharp({ create: { width: 120, height: 80, channels: 3, background: { r: 200, g: 100, b: 50 } } }).jpeg().toFile(big);
  const prep = (await enc.prepare(big)) as { dims: number[] };
  assert.deepEqual(prep.dims, [3, S, S]);
  // A wide photo is cropped to its centre (OpenAI CLIP), not shrunk and padded with black.
  const wide = path.join(tmp, 'wide.png');
  const raw = Buffer.alloc(3 * S * S * 3);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < 3 * S; x++) raw.set(x < S ? [255, 0, 0] : x < 2 * S ? [0, 255, 0] : [0, 0, 255], (y * 3 * S + x) * 3);
  await sharp(raw, { raw: { width: 3 * S, height: S, channels: 3 } }).png().toFile(wide);
  const wp = (await enc.prepare(wide)) as { data: Float32Array; dims: number[] };
  const green = [0, 1, 0].map((v, c) => (v - CLIP_IMAGE_MEAN[c]) / CLIP_IMAGE_STD[c]);
  for (const i of [0, S - 1, (S * S) >> 1, S * S - 1])
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(wp.data[c * S * S + i] - green[c]) < 1e-5, `pixel ${i} channel ${c} is the green centre`);
  await enc.dispose();

  // The generator is idempotent: a second call leaves the files alone.
  const before = fs.statSync(path.join(dir, 'onnx/vision_model.onnx')).mtimeMs;
  await ensureRandomClip(dir, TINY_CLIP_SPEC);
  assert.equal(fs.statSync(path.join(dir, 'onnx/vision_model.onnx')).mtimeMs, before);

  const q = await createEncoder({ ...cfg, quantized: true }, { models });
  assert.equal(q.name, 'tiny-random-clip-quantized');
  assert.equal((q.preprocessing as { file: string }).file, 'onnx/vision_model_quantized.onnx');
  const [qa] = await q.embed([a.file]);
  const d = maxDiff(qa, ea);
  assert.ok(d > 0 && d < 0.3, `quantized output close to float but not equal (max diff ${d})`);
  await q.dispose();
});

test('pixel plans from processor configs (integer and dict sizes, no crop, no normalisation)', () => {
  const base = { image_mean: CLIP_IMAGE_MEAN, image_std: CLIP_IMAGE_STD, resample: 3 };
  const p1 = clipPixelPlan({ ...base, size: 224, crop_size: 224, do_center_crop: true, do_resize: true });
  assert.deepEqual(p1.resize, { shortestEdge: 224, kernel: 'cubic' });
  assert.deepEqual(p1.crop, { width: 224, height: 224 });
  assert.ok(Math.abs(p1.rescale - 1 / 255) < 1e-12);
  const p2 = clipPixelPlan({ ...base, size: { shortest_edge: 256 }, crop_size: { height: 224, width: 200 }, resample: 2 });
  assert.deepEqual(p2.resize, { shortestEdge: 256, kernel: 'linear' });
  assert.deepEqual(p2.crop, { width: 200, height: 224 });
  const p3 = clipPixelPlan({ ...base, size: { height: 30, width: 40 }, do_center_crop: false, do_normalize: false });
  assert.deepEqual(p3.resize, { width: 40, height: 30, fit: 'fill', kernel: 'cubic' });
  assert.equal(p3.crop, null);
  const px = pixelValues({ data: Uint8Array.from([255, 0, 51]), width: 1, height: 1, channels: 3 }, p3);
  assert.deepEqual([...px].map((v) => Math.round(v * 1000) / 1000), [1, 0, 0.2]);
  assert.throws(() => clipPixelPlan({ size: 'big' }), /unsupported size/);
  assert.throws(() => clipPixelPlan({ size: 224 }), /image_mean/);
});

test('the same model through the loopback hub, then from the cache with the server stopped', async () => {
  const repoRoot = path.join(tmp, 'hub');
  const local = await ensureRandomClip(path.join(models, 'tiny-random-clip'), TINY_CLIP_SPEC);
  fs.cpSync(local, path.join(repoRoot, 'clipcap', 'tiny-clip'), { recursive: true });
  const server = await startHubServer(repoRoot);
  const hub = { remoteHost: server.url, cacheDir: path.join(tmp, 'cache'), offline: false };
  const a = await smoothImage('h.png', 3);
  let first: Float32Array;
  try {
    const enc = await createEncoder({ ...cfg, modelId: 'clipcap/tiny-clip' }, { models }, { hub });
    assert.equal(enc.name, 'tiny-clip');
    [first] = await enc.embed([a.file]);
    await enc.dispose();
    assert.ok(server.requests.includes('/clipcap/tiny-clip/resolve/main/onnx/vision_model.onnx'));
    assert.ok(server.requests.includes('/clipcap/tiny-clip/resolve/main/preprocessor_config.json'));
    assert.ok(fs.existsSync(path.join(hub.cacheDir, 'clipcap', 'tiny-clip', 'onnx', 'vision_model.onnx')));
  } finally {
    await server.close();
  }
  const n = server.requests.length;
  const again = await ClipEncoder.load({ modelId: 'clipcap/tiny-clip', quantized: false, hub });
  const [second] = await again.embed([a.file]);
  await again.dispose();
  assert.equal(server.requests.length, n);
  assert.deepEqual(second, first);
  const localEnc = await ClipEncoder.load({ modelId: local, quantized: false });
  const [third] = await localEnc.embed([a.file]);
  assert.deepEqual(third, first, 'hub and local directory give the same embedding');
  await localEnc.dispose();
  // offline and not cached: one clear error naming the model and the file
  await assert.rejects(
    ClipEncoder.load({ modelId: 'clipcap/other', quantized: true, hub: { ...hub, offline: true } }),
    /clipcap\/other.*vision_model_quantized\.onnx.*offline/s,
  );
  await assert.rejects(ClipEncoder.load({ modelId: './no/such/dir', quantized: false }), /does not exist/);
});
