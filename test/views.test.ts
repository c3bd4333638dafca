// Notebook views (notebook/views.ts): an unreadable photo is a note in its table cell, not a failed cell.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { configTable, epochTable, photoCell } from '../src/lib/notebook/views';
import { runFiles } from '../src/lib/run/files';

test('photoCell: a thumbnail for a photo, a note naming the file for a truncated or missing one', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-views-'));
  const good = path.join(dir, 'good.jpg');
  await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 10, g: 200, b: 30 } } }).jpeg().toFile(good);
  assert.match(await photoCell(good, 64), /^<img src="data:image\/jpeg;base64,/);
  const truncated = path.join(dir, 'truncated.jpg');
  fs.writeFileSync(truncated, fs.readFileSync(good).subarray(0, 40));
  assert.match(await photoCell(truncated, 64), /<i>unreadable photo truncated\.jpg: .+<\/i>/);
  assert.match(await photoCell(path.join(dir, 'missing.jpg'), 64), /unreadable photo missing\.jpg/);
});

test('configTable: the profile value and the value used, edited ones marked', () => {
  const rows = configTable({ lr: 1e-3, epochs: 5, name: 'x' }, { lr: 5e-4, epochs: 5, name: 'x' });
  assert.deepEqual(rows, [
    { parameter: 'lr', profile: '0.001', used: '0.0005', edited: '✎' },
    { parameter: 'epochs', profile: '5', used: '5', edited: '' },
    { parameter: 'name', profile: 'x', used: 'x', edited: '' },
  ]);
});

test('configTable: context rows (e.g. the backend) follow, with a value used only', () => {
  const rows = configTable({ nested: { a: 1 } }, { nested: { a: 2 } }, { backend: 'wasm', retry: false });
  assert.deepEqual(rows, [
    { parameter: 'nested.a', profile: '1', used: '2', edited: '✎' },
    { parameter: 'backend', profile: '', used: 'wasm', edited: '' },
    { parameter: 'retry', profile: '', used: 'false', edited: '' },
  ]);
});

test('epochTable: one row per epoch (1-based) with the image-use gap where the shuffled loss was measured', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-epochs-'));
  fs.writeFileSync(
    runFiles(dir).epochs,
    [
      { epoch: 0, trainLoss: 3, valLoss: 2.5, valLossShuffled: 2.75, steps: 10, seconds: 4 },
      { epoch: 1, trainLoss: 2, valLoss: null, steps: 20, seconds: 8 },
    ].map((e) => JSON.stringify(e) + '\n').join(''),
  );
  const t = epochTable(dir);
  assert.deepEqual(t.rows, [
    { epoch: 1, 'train loss': 3, 'val loss': 2.5, 'val loss, shuffled images': 2.75, 'image-use gap': 0.25, steps: 10, 'time (s)': 4 },
    { epoch: 2, 'train loss': 2, 'val loss': '', 'val loss, shuffled images': '', 'image-use gap': '', steps: 20, 'time (s)': 8 },
  ]);
  assert.match(t.caption, /per epoch/);
});
