import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseSafetensors, encodeSafetensors, writeSafetensors, toFloat32, toNumbers } from '../src/lib/io/safetensors';

/** A safetensors file assembled by hand from the format description. */
function handMade(header: Record<string, unknown>, data: number[]): Uint8Array {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return new Uint8Array(Buffer.concat([len, json, Buffer.from(data)]));
}

test('reads a hand-made file: F16, BF16, F64, I64, I32, metadata, unaligned data', () => {
  const bytes = handMade(
    {
      __metadata__: { format: 'pt' },
      h: { dtype: 'F16', shape: [5], data_offsets: [0, 10] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [10, 14] },
      d: { dtype: 'F64', shape: [1], data_offsets: [14, 22] },
      l: { dtype: 'I64', shape: [1, 1], data_offsets: [22, 30] },
      i: { dtype: 'I32', shape: [], data_offsets: [30, 34] },
    },
    [
      0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c, // f16: 1, -2, 65504, 2^-24, inf
      0x80, 0x3f, 0x49, 0x40, // bf16: 1, 3.140625
      ...Buffer.from(new Float64Array([Math.PI]).buffer), // f64 (at an unaligned offset)
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // i64 -1
      0x07, 0x00, 0x00, 0x00, // i32 7
    ],
  );
  const f = parseSafetensors(bytes);
  assert.deepEqual(f.metadata, { format: 'pt' });
  assert.deepEqual([...toFloat32(f.tensors.get('h')!)], [1, -2, 65504, 2 ** -24, Infinity]);
  assert.deepEqual([...toFloat32(f.tensors.get('b')!)], [1, 3.140625]);
  assert.equal(toFloat32(f.tensors.get('d')!)[0], Math.fround(Math.PI));
  assert.deepEqual(toNumbers(f.tensors.get('l')!), [-1]);
  assert.deepEqual(f.tensors.get('l')!.shape, [1, 1]);
  assert.deepEqual(toNumbers(f.tensors.get('i')!), [7]);
});

test('write -> read round trip; 8-byte aligned header; atomic file', () => {
  const a = new Float32Array([1.5, -2.25, 3e-8, 1e30, 0, -0]);
  const i = new Int32Array([1, -2, 2147483647]);
  const buf = encodeSafetensors({ 'x.weight': { shape: [2, 3], data: a }, idx: { shape: [3], data: i } }, { format: 'pt' });
  const n = Number(Buffer.from(buf).readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0);
  const header = JSON.parse(Buffer.from(buf.subarray(8, 8 + n)).toString());
  assert.deepEqual(Object.keys(header), ['__metadata__', 'idx', 'x.weight']);
  assert.equal(header['x.weight'].dtype, 'F32');
  const f = parseSafetensors(buf);
  assert.deepEqual(toFloat32(f.tensors.get('x.weight')!), a);
  assert.deepEqual(toNumbers(f.tensors.get('idx')!), [1, -2, 2147483647]);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-st-'));
  const file = path.join(dir, 'm.safetensors');
  writeSafetensors(file, { w: { shape: [6], data: a } });
  assert.deepEqual(fs.readdirSync(dir), ['m.safetensors']);
  assert.deepEqual(toFloat32(parseSafetensors(new Uint8Array(fs.readFileSync(file))).tensors.get('w')!), a);
  assert.throws(() => encodeSafetensors({ w: { shape: [4], data: a } }), /6 values for shape \[4\]/);
});

test('broken files give errors naming the problem', () => {
  const good = encodeSafetensors({ w: { shape: [4], data: new Float32Array(4) } });
  assert.throws(() => parseSafetensors(good.subarray(0, good.length - 4), 'm.safetensors'), /m\.safetensors: tensor "w".*truncated/);
  assert.throws(() => parseSafetensors(new Uint8Array(4)), /too short/);
  const hugeHeader = new Uint8Array(16);
  new DataView(hugeHeader.buffer).setBigUint64(0, 1000n, true);
  assert.throws(() => parseSafetensors(hugeHeader), /header length 1000 does not fit/);
  assert.throws(() => parseSafetensors(handMade({ w: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, [0])), /unsupported dtype F8/);
  assert.throws(() => parseSafetensors(handMade({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, [0, 0, 0, 0])), /do not match its size/);
});
