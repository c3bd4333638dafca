import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { centreCrop, decodeImage, imageFacts, ImageDecodeError, shortestEdgeSize, toDecoded, type DecodedImage } from '../src/lib/embed/encoders/image';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-image-'));

function px(img: DecodedImage, x: number, y: number): [number, number, number] {
  const i = (y * img.width + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

function near(a: number[], b: number[], tol: number, what: string): void {
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `${what}: got ${a} expected ${b} (tol ${tol})`);
}

/** A w x h RGB image whose left half is red and right half blue. */
async function halves(w: number, h: number): Promise<sharp.Sharp> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      if (x < w / 2) raw[i] = 255;
      else raw[i + 2] = 255;
    }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } });
}

test('EXIF orientation is applied: Orientation=6 turns a stored landscape into an upright portrait', async () => {
  const file = path.join(tmp, 'oriented.jpg');
  await (await halves(40, 20)).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(file);
  assert.equal((await imageFacts(file)).orientation, 6);
  const img = await decodeImage(file);
  assert.equal(img.width, 20);
  assert.equal(img.height, 40);
  // 90 degrees clockwise: the stored left (red) edge becomes the top.
  near(px(img, 10, 5), [255, 0, 0], 40, 'top');
  near(px(img, 10, 34), [0, 0, 255], 40, 'bottom');
  // Without the tag the same pixels stay landscape.
  const plain = path.join(tmp, 'plain.jpg');
  await (await halves(40, 20)).jpeg({ quality: 95 }).toFile(plain);
  const p = await decodeImage(plain);
  assert.deepEqual([p.width, p.height], [40, 20]);
  near(px(p, 5, 10), [255, 0, 0], 40, 'left');
});

test('grayscale, CMYK, 16-bit and alpha images all decode to 3-channel 8-bit RGB', async () => {
  const gray = path.join(tmp, 'gray.png');
  const g = Buffer.alloc(8 * 8);
  for (let i = 0; i < g.length; i++) g[i] = i * 4;
  await sharp(g, { raw: { width: 8, height: 8, channels: 1 } }).toColourspace('b-w').png().toFile(gray);
  assert.equal((await imageFacts(gray)).channels, 1);
  const gi = await decodeImage(gray);
  assert.equal(gi.channels, 3);
  assert.equal(gi.data.length, 8 * 8 * 3);
  for (let i = 0; i < 64; i++) {
    const [r, gg, b] = [gi.data[3 * i], gi.data[3 * i + 1], gi.data[3 * i + 2]];
    assert.ok(r === gg && gg === b, `gray pixel ${i} has equal channels`);
    assert.ok(Math.abs(r - i * 4) <= 2, `gray pixel ${i}: ${r} vs ${i * 4}`);
  }

  const cmyk = path.join(tmp, 'cmyk.jpg');
  await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 220, g: 30, b: 30 } } })
    .toColourspace('cmyk')
    .jpeg({ quality: 95 })
    .toFile(cmyk);
  assert.equal((await imageFacts(cmyk)).space, 'cmyk');
  const ci = await decodeImage(cmyk);
  assert.equal(ci.channels, 3);
  const [r, gg, b] = px(ci, 8, 8);
  assert.ok(r > 170 && gg < 90 && b < 90, `CMYK red decodes to reddish RGB, got ${[r, gg, b]}`);

  const deep = path.join(tmp, 'deep.png');
  await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 10, g: 128, b: 250 } } }).toColourspace('rgb16').png().toFile(deep);
  const di = await decodeImage(deep);
  near(px(di, 1, 1), [10, 128, 250], 2, '16-bit');

  // RGBA: left column opaque red, middle transparent, right half-transparent blue.
  const rgba = Buffer.alloc(3 * 1 * 4);
  rgba.set([255, 0, 0, 255], 0);
  rgba.set([0, 255, 0, 0], 4);
  rgba.set([0, 0, 255, 128], 8);
  const alpha = path.join(tmp, 'alpha.png');
  await sharp(rgba, { raw: { width: 3, height: 1, channels: 4 } }).png().toFile(alpha);
  assert.equal((await imageFacts(alpha)).hasAlpha, true);
  const ai = await decodeImage(alpha);
  assert.equal(ai.channels, 3);
  near(px(ai, 0, 0), [255, 0, 0], 1, 'opaque red');
  near(px(ai, 1, 0), [255, 255, 255], 1, 'transparent -> white');
  near(px(ai, 2, 0), [127, 127, 255], 2, 'half-transparent blue on white');
});

test('resizing: fill stretches, contain letterboxes on white; decoded input can be resized', async () => {
  const file = path.join(tmp, 'wide.png');
  await (await halves(40, 20)).png().toFile(file);
  const fill = await decodeImage(file, { resize: { width: 16, height: 16, fit: 'fill' } });
  assert.deepEqual([fill.width, fill.height], [16, 16]);
  near(px(fill, 2, 0), [255, 0, 0], 10, 'fill top-left');
  near(px(fill, 2, 15), [255, 0, 0], 10, 'fill bottom-left is still image');
  const box = await decodeImage(file, { resize: { width: 16, height: 16, fit: 'contain' } });
  near(px(box, 2, 0), [255, 255, 255], 1, 'letterbox padding is white');
  near(px(box, 2, 8), [255, 0, 0], 10, 'letterbox content');
  const dec = await decodeImage(file);
  const again = await toDecoded(dec, { resize: { width: 16, height: 16, fit: 'fill' } });
  assert.deepEqual([again.width, again.height], [16, 16]);
  assert.equal(await toDecoded(dec), dec);
  const fromBytes = await decodeImage(fs.readFileSync(file));
  assert.deepEqual(fromBytes.data, dec.data);
});

test('unreadable files fail with an ImageDecodeError naming the file', async () => {
  const text = path.join(tmp, 'not-an-image.jpg');
  fs.writeFileSync(text, 'hello, I am not a JPEG\n');
  await assert.rejects(decodeImage(text), (e: unknown) => e instanceof ImageDecodeError && e.message.includes('not-an-image.jpg'));
  const empty = path.join(tmp, 'empty.png');
  fs.writeFileSync(empty, '');
  await assert.rejects(decodeImage(empty), ImageDecodeError);
  const full = await (await halves(64, 64)).jpeg().toBuffer();
  const cut = path.join(tmp, 'truncated.jpg');
  fs.writeFileSync(cut, full.subarray(0, Math.floor(full.length / 2)));
  await assert.rejects(decodeImage(cut), ImageDecodeError);
  await assert.rejects(decodeImage(path.join(tmp, 'missing.jpg')), /missing\.jpg/);
});

test('shortest-edge resizing follows EXIF orientation and torchvision rounding; centre crop pads with black', async () => {
  const file = path.join(tmp, 'oriented2.jpg');
  await (await halves(40, 20)).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(file);
  const img = await decodeImage(file, { resize: { shortestEdge: 10 } });
  assert.deepEqual([img.width, img.height], [10, 20]);
  assert.deepEqual(shortestEdgeSize(640, 427, 224), { width: 335, height: 224 });
  assert.deepEqual(shortestEdgeSize(427, 640, 224), { width: 224, height: 335 });
  const crop = centreCrop(img, 10, 10);
  assert.deepEqual([crop.width, crop.height], [10, 10]);
  assert.deepEqual([...crop.data.subarray(0, 3)], [...img.data.subarray(5 * 10 * 3, 5 * 10 * 3 + 3)]);
  const padded = centreCrop({ data: new Uint8Array(2 * 2 * 3).fill(200), width: 2, height: 2, channels: 3 }, 4, 4);
  assert.equal(padded.data[0], 0);
  assert.equal(padded.data[(1 * 4 + 1) * 3], 200);
});
