import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { CenterNetEncoder, fileIOHandler, humanModelsDir } from '../src/lib/embed/encoders/centernet';
import { encoderName } from '../src/lib/embed/encoders/index';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-cn-'));

async function photo(name: string, draw: (x: number, y: number) => [number, number, number], w = 96, h = 64): Promise<string> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) raw.set(draw(x, y), (y * w + x) * 3);
  const file = path.join(tmp, name);
  await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 95 }).toFile(file);
  return file;
}

test('the CenterNet stand-in loads from the npm package and gives 1,640-d features in four parts', async () => {
  const enc = await CenterNetEncoder.load();
  assert.equal(enc.dim, 1640);
  assert.equal(enc.name, 'centernet-v2');
  assert.equal(encoderName({ kind: 'centernet', modelId: 'centernet', quantized: false, batchSize: 1, workers: 1 }), enc.name, 'the embedding folder is named by the encoder');
  assert.equal(enc.maxBatch, 1);
  assert.deepEqual(
    enc.postprocess.kind === 'center-l2' ? enc.postprocess.parts.map((p) => p.length) : [],
    [80, 120, 720, 720],
  );
  assert.match(String(enc.preprocessing.resize), /stretch.*512x512/);
  const a = await photo('a.jpg', (x, y) => [(x * 5) % 256, (y * 3) % 256, 128]);
  const b = await photo('b.jpg', (x, y) => (((x >> 3) + (y >> 3)) % 2 ? [250, 250, 250] : [10, 10, 10]));
  const [va, vb, va2] = await enc.embed([a, b, a]);
  assert.equal(va.length, 1640);
  assert.ok(va.every(Number.isFinite));
  // the squeeze-excite pools average hard-swish outputs (>= -0.375) and are not all zero
  for (const [from, to] of [[200, 920], [920, 1640]]) {
    const part = va.subarray(from, to);
    assert.ok(part.every((v) => v >= -0.375 - 1e-6), `part [${from}, ${to}) holds hard-swish averages`);
    assert.ok(part.some((v) => Math.abs(v) > 1e-3), `part [${from}, ${to}) is not empty`);
  }
  assert.deepEqual(va2, va, 'deterministic');
  const heat = va.subarray(0, 80);
  assert.ok(heat.every((v) => v >= 0 && v <= 1), 'keypoint maxima are sigmoid outputs in [0,1]');
  let diff = 0;
  for (let i = 0; i < va.length; i++) diff += Math.abs(va[i] - vb[i]);
  assert.ok(diff > 1e-3, 'different photos give different features');
  // prepare() yields the 512x512 network input; infer() refuses anything else
  const prep = await enc.prepare(a);
  assert.deepEqual([prep.width, prep.height], [512, 512]);
  await assert.rejects(enc.infer([{ data: new Uint8Array(12), width: 2, height: 2, channels: 3 }]), /512x512/);
  enc.dispose();

  const lb = await CenterNetEncoder.load({ resize: 'letterbox' });
  assert.match(String(lb.preprocessing.resize), /letterbox/);
  const [vl] = await lb.embed([a]);
  assert.notDeepEqual(vl, va);
  lb.dispose();
});

test('the file IO handler reads model.json and weights, and names missing files', async () => {
  const art = await fileIOHandler(path.join(humanModelsDir(), 'centernet.json')).load!();
  assert.ok((art.weightSpecs ?? []).length > 100);
  assert.ok((art.weightData as ArrayBuffer).byteLength > 1e6);
  await assert.rejects(fileIOHandler(path.join(tmp, 'none.json')).load!(), /none\.json/);
  fs.writeFileSync(path.join(tmp, 'm.json'), JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: ['gone.bin'], weights: [] }] }));
  await assert.rejects(fileIOHandler(path.join(tmp, 'm.json')).load!(), /gone\.bin/);
  await assert.rejects(CenterNetEncoder.load({ modelDir: tmp }), /centernet\.json.*@vladmandic\/human/);
});
