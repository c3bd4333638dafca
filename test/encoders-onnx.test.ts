import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { attr, checkGraph, DataType, encodeVarint, GraphBuilder, modelProto, PbMessage } from '../src/lib/tfjs/onnx-writer';
import { quantizeInt8, quantizeUint8 } from '../src/lib/embed/encoders/tiny-clip';
import { gaussian } from '../src/lib/util/rng';

// onnxruntime-node is what transformers.js runs models with; it is the judge of our files.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const ort = require('onnxruntime-node') as typeof import('onnxruntime-node');

test('protobuf primitives: varints (incl. negative int64), floats, nested messages', () => {
  assert.deepEqual([...encodeVarint(1n)], [1]);
  assert.deepEqual([...encodeVarint(300n)], [0xac, 0x02]);
  assert.deepEqual([...new PbMessage().int(1, 150).toBytes()], [0x08, 0x96, 0x01]);
  // -1 as int64: ten bytes
  assert.deepEqual([...new PbMessage().int(3, -1).toBytes()], [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  assert.deepEqual([...new PbMessage().string(2, 'testing').toBytes()], [0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67]);
  assert.deepEqual([...new PbMessage().float(2, 1).toBytes()], [0x15, 0x00, 0x00, 0x80, 0x3f]);
  assert.deepEqual([...new PbMessage().message(3, new PbMessage().int(1, 150)).toBytes()], [0x1a, 0x03, 0x08, 0x96, 0x01]);
  assert.deepEqual([...new PbMessage().packedInts(4, [3, 270, 86942]).toBytes()], [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]);
  assert.throws(() => new PbMessage().int(1, 2 ** 60), /safe integer/);
});

test('a small graph written by the writer runs in onnxruntime with the expected results', async () => {
  const g = new GraphBuilder();
  const w = g.init('w', [3, 2], Float32Array.from([1, 2, 3, 4, 5, 6]));
  const b = g.init('b', [2], Float32Array.from([0.5, -0.5]));
  const y = g.op('Add', [g.op('MatMul', ['x', w]), b]);
  const r = g.op('Reshape', [y, g.int64('shape', [-1])]);
  g.op('Softmax', [g.op('Mul', [r, g.scalar('k', 0.1)])], { axis: attr.int(-1) }, 'probs');
  g.op('Identity', [y], undefined, 'y');
  const graph = g.graph(
    'small',
    [{ name: 'x', elemType: DataType.FLOAT, shape: ['n', 3] }],
    [
      { name: 'y', elemType: DataType.FLOAT, shape: ['n', 2] },
      { name: 'probs', elemType: DataType.FLOAT, shape: ['m'] },
    ],
  );
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-onnx-')), 'small.onnx');
  fs.writeFileSync(file, modelProto({ graph, opset: 17, metadata: { purpose: 'test' } }).toBytes());
  const sess = await ort.InferenceSession.create(file);
  assert.deepEqual(sess.inputNames, ['x']);
  assert.deepEqual([...sess.outputNames].sort(), ['probs', 'y']);
  const x = Float32Array.from([1, 0, 0, 0, 1, 1]);
  const out = await sess.run({ x: new ort.Tensor('float32', x, [2, 3]) });
  assert.deepEqual([...(out.y.data as Float32Array)], [1.5, 1.5, 8.5, 9.5]);
  const p = out.probs.data as Float32Array;
  const e = [1.5, 1.5, 8.5, 9.5].map((v) => Math.exp(0.1 * v));
  const z = e.reduce((a, c) => a + c, 0);
  p.forEach((v, i) => assert.ok(Math.abs(v - e[i] / z) < 1e-6));
});

test('graph checks: undefined inputs, duplicate names and missing outputs are named', () => {
  const base = { name: 'g', initializers: [], inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: [1] }] };
  assert.throws(() => checkGraph({ ...base, nodes: [{ opType: 'Add', inputs: ['x', 'nope'], outputs: ['y'] }], outputs: [] }), /reads nope/);
  assert.throws(() => checkGraph({ ...base, nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['x'] }], outputs: [] }), /x is defined twice/);
  assert.throws(() => checkGraph({ ...base, nodes: [], outputs: [{ name: 'z', elemType: DataType.FLOAT, shape: [1] }] }), /z is never computed/);
  assert.throws(() => modelProto({ graph: { ...base, nodes: [], outputs: [], initializers: [{ name: 't', dims: [2], dataType: DataType.FLOAT, data: new Float32Array(3) }] } }), /3 values for dims \[2\]/);
});

test('uint8 and int8 weight quantization reconstruct within half a step', () => {
  const rnd = gaussian(5);
  const w = Float32Array.from({ length: 500 }, () => rnd());
  const { q, scale, zeroPoint } = quantizeUint8(w);
  assert.ok(zeroPoint >= 0 && zeroPoint <= 255);
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs((q[i] - zeroPoint) * scale - w[i]) <= scale / 2 + 1e-6);
  const s8 = quantizeInt8(w);
  assert.ok(s8.q.every((v) => v >= -127 && v <= 127));
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(s8.q[i] * s8.scale - w[i]) <= s8.scale / 2 + 1e-6);
});
