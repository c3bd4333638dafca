// Notebook views (notebook/views.ts): an unreadable photo is a note in its table cell, not a failed cell.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { configTable, photoCell } from '../src/lib/notebook/views';

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
