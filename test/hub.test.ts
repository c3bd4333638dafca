import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { startHubServer } from './helpers/hub-server';
import { cachePathForUrl, resolveModelFile, resolveModelJson, type HubSettings } from '../src/lib/io/hub';

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-hub-'));
}

test('hub files come through the loopback hub, then from the cache with the server stopped', async () => {
  const repo = tmp();
  fs.mkdirSync(path.join(repo, 'acme', 'tiny'), { recursive: true });
  fs.writeFileSync(path.join(repo, 'acme', 'tiny', 'config.json'), JSON.stringify({ n_layer: 2 }));
  fs.writeFileSync(path.join(repo, 'acme', 'tiny', 'weights.bin'), Buffer.from([1, 2, 3, 4]));
  const server = await startHubServer(repo);
  const settings: HubSettings = { remoteHost: server.url, cacheDir: path.join(tmp(), 'hub'), offline: false };
  try {
    const cfg = await resolveModelJson<{ n_layer: number }>('acme/tiny', 'config.json', { settings });
    assert.equal(cfg?.n_layer, 2);
    const w = await resolveModelFile('acme/tiny', 'weights.bin', { settings });
    assert.deepEqual([...w!], [1, 2, 3, 4]);
    assert.ok(server.requests.includes('/acme/tiny/resolve/main/weights.bin'));
    assert.ok(fs.existsSync(path.join(settings.cacheDir, 'acme', 'tiny', 'weights.bin')));
    assert.equal(await resolveModelFile('acme/tiny', 'missing.json', { settings, optional: true }), null);
    await assert.rejects(resolveModelFile('acme/tiny', 'missing.json', { settings }), /missing\.json/);
  } finally {
    await server.close();
  }
  const before = server.requests.length;
  const again = await resolveModelFile('acme/tiny', 'weights.bin', { settings });
  assert.deepEqual([...again!], [1, 2, 3, 4]);
  assert.equal(server.requests.length, before);
  // offline and not cached: a clear error
  await assert.rejects(
    resolveModelFile('acme/tiny', 'other.bin', { settings: { ...settings, offline: true } }),
    /other\.bin.*acme\/tiny|acme\/tiny.*other\.bin/,
  );
});

test('local model directories are read in place; a missing directory is a clear error', async () => {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'config.json'), '{"a":1}');
  assert.deepEqual(await resolveModelJson(dir, 'config.json'), { a: 1 });
  await assert.rejects(resolveModelFile(dir, 'nope.bin'), /has no nope\.bin/);
  await assert.rejects(resolveModelFile('./no/such/dir', 'config.json'), /does not exist/);
});

test('cache paths follow the transformers.js layout and never escape the cache', () => {
  const s: HubSettings = { remoteHost: 'http://h/', cacheDir: '/c', offline: false };
  assert.equal(cachePathForUrl(s, 'http://h/gpt2/resolve/main/config.json'), '/c/gpt2/config.json');
  assert.equal(cachePathForUrl(s, 'http://h/Xenova/clip/resolve/v1/onnx/m.onnx'), '/c/Xenova/clip/v1/onnx/m.onnx');
  assert.equal(cachePathForUrl(s, 'http://h/a/resolve/main/../../../etc/passwd'), null);
  assert.equal(cachePathForUrl(s, 'http://other/gpt2/resolve/main/x'), null);
});
