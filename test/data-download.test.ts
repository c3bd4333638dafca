import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { profileConfig } from '../src/lib/config';
import { artifactPaths } from '../src/lib/paths';
import {
  listZip,
  extractZip,
  crc32,
  downloadFiles,
  downloadFile,
  checkMagic,
  partPath,
  HostUnreachableError,
  DownloadBatchError,
  buildSubsets,
  frameColumns,
  allSubsets,
  cocoCachePaths,
} from '../src/lib/data';
import { makeZip, startFileServer, tmpDir, tmpRoot, jpeg, listFiles, karpathyCoco, cocoName } from './helpers/data-fixtures';

const quiet = { progress: false as const, backoffMs: 5, retries: 2, timeoutMs: 5000 };

test('crc32 matches the standard check value', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  assert.equal(crc32(Buffer.from('56789'), crc32(Buffer.from('1234'))), 0xcbf43926);
});

test('zip reader: stored and deflated entries, folders, CRC and truncation errors, unsafe names', async () => {
  const d = tmpDir('zip');
  const big = Buffer.from(JSON.stringify({ images: Array.from({ length: 3000 }, (_, i) => ({ id: i, caption: `a caption number ${i}` })) }));
  const zipFile = path.join(d, 'a.zip');
  fs.writeFileSync(
    zipFile,
    makeZip([
      { name: 'annotations/', data: '', store: true },
      { name: 'annotations/captions_val2014.json', data: big },
      { name: 'readme.txt', data: 'hello', store: true },
      { name: 'empty.txt', data: '' },
    ]),
  );
  assert.deepEqual(
    listZip(zipFile).map((e) => [e.name, e.method, e.size]),
    [
      ['annotations/', 0, 0],
      ['annotations/captions_val2014.json', 8, big.length],
      ['readme.txt', 0, 5],
      ['empty.txt', 8, 0],
    ],
  );
  const out = path.join(d, 'out');
  const written = await extractZip(zipFile, out);
  assert.deepEqual(written.map((f) => path.relative(out, f)).sort(), ['annotations/captions_val2014.json', 'empty.txt', 'readme.txt']);
  assert.ok(fs.readFileSync(path.join(out, 'annotations', 'captions_val2014.json')).equals(big));
  assert.equal(fs.readFileSync(path.join(out, 'readme.txt'), 'utf8'), 'hello');
  const flat = await extractZip(zipFile, path.join(d, 'flat'), { filter: (n) => n.endsWith('.json'), flat: true });
  assert.deepEqual(flat, [path.join(d, 'flat', 'captions_val2014.json')]);

  // A flipped byte in the stored entry: CRC mismatch, nothing left behind.
  const bytes = fs.readFileSync(zipFile);
  const i = bytes.indexOf(Buffer.from('hello'));
  bytes[i] = 'j'.charCodeAt(0);
  const corrupt = path.join(d, 'corrupt.zip');
  fs.writeFileSync(corrupt, bytes);
  await assert.rejects(extractZip(corrupt, path.join(d, 'c'), { filter: (n) => n === 'readme.txt' }), /corrupt\.zip is not a readable zip archive \(readme\.txt: CRC-32 mismatch\): delete it/);
  assert.deepEqual(listFiles(path.join(d, 'c')), []);
  // Truncated download: no end record.
  const cut = path.join(d, 'cut.zip');
  fs.writeFileSync(cut, fs.readFileSync(zipFile).subarray(0, 200));
  assert.throws(() => listZip(cut), /cut\.zip is not a readable zip archive \(no end of central directory record; the file may be truncated\)/);
  const evil = path.join(d, 'evil.zip');
  fs.writeFileSync(evil, makeZip([{ name: '../../escape.txt', data: 'x' }]));
  await assert.rejects(extractZip(evil, path.join(d, 'e')), /points outside the destination/);
  assert.ok(!fs.existsSync(path.join(d, 'escape.txt')));
});

const hasZip = spawnSync('zip', ['-v']).status === 0;
test('zip reader reads archives made by Info-ZIP (file and streamed, with data descriptors)', { skip: !hasZip && 'no zip binary here' }, async () => {
  const d = tmpDir('infozip');
  fs.mkdirSync(path.join(d, 'annotations'));
  const body = 'x'.repeat(50_000) + 'the end';
  fs.writeFileSync(path.join(d, 'annotations', 'captions_train2014.json'), body);
  assert.equal(spawnSync('zip', ['-q', '-r', 'a.zip', 'annotations'], { cwd: d }).status, 0);
  const streamed = spawnSync('zip', ['-q', '-', 'annotations/captions_train2014.json'], { cwd: d });
  fs.writeFileSync(path.join(d, 'b.zip'), streamed.stdout);
  for (const z of ['a.zip', 'b.zip']) {
    const out = await extractZip(path.join(d, z), path.join(d, `out-${z}`), { filter: (n) => n.endsWith('.json'), flat: true });
    assert.equal(fs.readFileSync(out[0], 'utf8'), body);
  }
  // and our test writer's archives pass Info-ZIP's own check
  fs.writeFileSync(path.join(d, 'ours.zip'), makeZip([{ name: 'a/b.txt', data: body }, { name: 'c.txt', data: 'c', store: true }]));
  assert.equal(spawnSync('unzip', ['-tq', 'ours.zip'], { cwd: d }).status, 0);
});

test('magic bytes: JPEG, PNG, zip, JSON; an HTML page is not an image', async () => {
  const j = await jpeg(1, 2, 3);
  assert.equal(checkMagic(j, 'jpeg'), null);
  assert.equal(checkMagic(j, 'image'), null);
  assert.match(checkMagic(j, 'png')!, /expected a PNG file/);
  assert.match(checkMagic(Buffer.from('<!DOCTYPE html><html>'), 'image')!, /expected a JPEG or PNG image, the bytes start with "<!DOCTYPE html><html>"/);
  assert.equal(checkMagic(makeZip([{ name: 'a', data: 'b' }]), 'zip'), null);
  assert.equal(checkMagic(Buffer.from('  {"a": 1}'), 'json'), null);
  assert.match(checkMagic(Buffer.alloc(0), 'jpeg')!, /empty/);
});

async function photoServer(n: number) {
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < n; i++) files[`/val2014/p${i}.jpg`] = await jpeg(10 * i, 50, 90, 40 + i, 30);
  return { server: await startFileServer(files), files };
}

test('downloads: parallel, progress with files/s and MB/s, resume from complete files, mirror used in place', async () => {
  const { server, files } = await photoServer(5);
  try {
    const d = tmpDir('dl');
    const mirror = path.join(d, 'mirror', 'p4.jpg');
    fs.mkdirSync(path.dirname(mirror));
    fs.writeFileSync(mirror, files['/val2014/p4.jpg']);
    const items = Object.keys(files).map((p) => ({
      url: server.url + p,
      dest: path.join(d, 'cache', p),
      expect: 'jpeg' as const,
      mirror: p.endsWith('p4.jpg') ? [path.join(d, 'mirror', 'nope.jpg'), mirror] : [],
    }));
    const lines: string[] = [];
    const res = await downloadFiles(items, { ...quiet, concurrency: 2, progress: (l) => lines.push(l), progressIntervalMs: 0, label: 'photos' });
    assert.deepEqual(
      res.map((r) => r.from),
      ['download', 'download', 'download', 'download', 'mirror'],
    );
    assert.equal(res[4].path, mirror);
    assert.ok(!fs.existsSync(items[4].dest), 'a mirror file is used in place, not copied');
    for (const r of res.slice(0, 4)) assert.ok(fs.readFileSync(r.path).equals(files[new URL(r.url).pathname]));
    assert.equal(server.requests.length, 4);
    assert.ok(!server.requests.some((r) => r.includes('p4')));
    const last = lines[lines.length - 1];
    assert.match(last, /^photos 100% 5\/5 files \| [\d.?]+ files\/s \| elapsed \S+ \| ETA \S+ \| MB=[\d.]+ MB\/s=[\d.?]+$/);
    // Again: everything is there, no request.
    const again = await downloadFiles(items, quiet);
    assert.deepEqual(
      again.map((r) => r.from),
      ['cache', 'cache', 'cache', 'cache', 'mirror'],
    );
    assert.equal(server.requests.length, 4);
    assert.deepEqual(
      listFiles(d).filter((f) => f.endsWith('.part')),
      [],
    );
  } finally {
    await server.close();
  }
});

test('downloads: 500s are retried, a truncated body is resumed with a Range request', async () => {
  const { server, files } = await photoServer(2);
  try {
    const d = tmpDir('dl-retry');
    server.faults.set('/val2014/p0.jpg', { status: 500, times: 2 });
    server.faults.set('/val2014/p1.jpg', { truncateAt: 100, times: 1 });
    const res = await downloadFiles(
      ['/val2014/p0.jpg', '/val2014/p1.jpg'].map((p) => ({ url: server.url + p, dest: path.join(d, p), expect: 'jpeg' as const })),
      { ...quiet, concurrency: 1 },
    );
    assert.ok(fs.readFileSync(res[0].path).equals(files['/val2014/p0.jpg']));
    assert.ok(fs.readFileSync(res[1].path).equals(files['/val2014/p1.jpg']));
    assert.deepEqual(server.requests, ['/val2014/p0.jpg', '/val2014/p0.jpg', '/val2014/p0.jpg', '/val2014/p1.jpg', '/val2014/p1.jpg range=bytes=100-']);
    assert.ok(!fs.existsSync(partPath(res[1].dest)));
  } finally {
    await server.close();
  }
});

test('downloads: 404, wrong content, endless truncation fail with one error naming each URL; the other files are kept', async () => {
  const { server } = await photoServer(4);
  try {
    const d = tmpDir('dl-fail');
    server.faults.set('/val2014/p1.jpg', { body: Buffer.from('<html>Service unavailable</html>'), times: 10 });
    server.faults.set('/val2014/p2.jpg', { truncateAt: 10, times: 10 });
    const items = ['/val2014/p0.jpg', '/val2014/p1.jpg', '/val2014/p2.jpg', '/val2014/missing.jpg'].map((p) => ({ url: server.url + p, dest: path.join(d, p), expect: 'jpeg' as const }));
    await assert.rejects(downloadFiles(items, { ...quiet, concurrency: 2 }), (e: Error) => {
      assert.ok(e instanceof DownloadBatchError);
      assert.match(e.message, /^3 of 4 downloads failed \(the finished files are kept; rerun to resume\)/);
      assert.ok(e.message.includes(`${server.url}/val2014/missing.jpg: HTTP 404`), e.message);
      assert.ok(e.message.includes(`${server.url}/val2014/p1.jpg: expected a JPEG file, the bytes start with "<html>Service unavail`), e.message);
      assert.match(e.message, /p2\.jpg: (truncated|connection closed)[^;]*\(after 3 tries\)/);
      return true;
    });
    assert.ok(fs.existsSync(items[0].dest));
    for (const it of items.slice(1)) assert.ok(!fs.existsSync(it.dest), it.dest);
    assert.ok(!fs.existsSync(partPath(items[1].dest)), 'a wrong-content part is removed');
    assert.equal(server.requests.filter((r) => r.startsWith('/val2014/missing.jpg')).length, 1, 'a 404 is not retried');
  } finally {
    await server.close();
  }
});

test('downloads: a stopped server is one clear error naming the URL and the offline fix; nothing written', async () => {
  const { server } = await photoServer(3);
  const url = server.url;
  await server.close();
  const d = tmpDir('dl-down');
  const items = [0, 1, 2].map((i) => ({ url: `${url}/val2014/p${i}.jpg`, dest: path.join(d, `p${i}.jpg`), expect: 'jpeg' as const }));
  await assert.rejects(downloadFiles(items, { ...quiet, concurrency: 1 }), (e: Error) => {
    assert.ok(e instanceof HostUnreachableError);
    assert.match(e.message, new RegExp(`cannot reach 127\\.0\\.0\\.1:\\d+ to download ${url.replace(/[.]/g, '\\.')}/val2014/p0\\.jpg \\(ECONNREFUSED after 3 tries\\)`));
    assert.match(e.message, /use the offline profile \(CLIPCAP_PROFILE=offline\) with a local data mirror \(CLIPCAP_DATA_DIR\)/);
    return true;
  });
  assert.deepEqual(listFiles(d), []);
  await assert.rejects(downloadFile({ url: 'ftp://example.invalid/x', dest: path.join(d, 'x') }, quiet), /unsupported protocol ftp:/);
});

/** A paper profile pointed at a loopback server holding the Karpathy zip, the annotations zip and the photos. */
async function paperWorld() {
  const karpathy = karpathyCoco({ train: 6, restval: 2, val: 4, test: 5 });
  const files: Record<string, Buffer> = {};
  files['/karpathy/caption_datasets.zip'] = makeZip([
    { name: 'dataset_flickr8k.json', data: '{"dataset":"flickr8k","images":[]}' },
    { name: 'dataset_coco.json', data: JSON.stringify(karpathy) },
  ]);
  files['/annotations/annotations_trainval2014.zip'] = makeZip([
    { name: 'annotations/captions_train2014.json', data: '{"images":[],"annotations":[]}' },
    { name: 'annotations/captions_val2014.json', data: '{"images":[],"annotations":[]}' },
    { name: 'annotations/instances_val2014.json', data: '{}' },
  ]);
  const imgs = (karpathy as { images: { filepath: string; filename: string; cocoid: number }[] }).images;
  for (const im of imgs) files[`/${im.filepath}/${im.filename}`] = await jpeg(im.cocoid % 255, 10, 10);
  const server = await startFileServer(files);
  const cfg = profileConfig('paper');
  Object.assign(cfg.data, {
    trainCaptions: 17,
    valCaptions: 9,
    evalImages: 3,
    urls: { cocoImages: server.url, cocoAnnotations: `${server.url}/annotations/annotations_trainval2014.zip`, karpathySplits: `${server.url}/karpathy/caption_datasets.zip` },
    download: { concurrency: 3, retries: 1, backoffMs: 5, timeoutMs: 5000 },
  });
  return { server, cfg, imgs };
}

test('paper profile end to end against a loopback server: Karpathy zip, annotations, photos by id (mirror first), reproducible', async () => {
  const { server, cfg, imgs } = await paperWorld();
  try {
    const root = tmpRoot();
    const cache = tmpDir('cache');
    // The mirror holds the photos of the Karpathy test split (2017 naming): they must be used in place.
    const mirror = tmpDir('mirror');
    fs.mkdirSync(path.join(mirror, 'coco-mini', 'images'), { recursive: true });
    const testImgs = imgs.filter((im) => im.filename.includes('val2014')).slice(-5);
    const mirrored = new Set<string>();
    for (const im of testImgs) {
      const f = path.join(mirror, 'coco-mini', 'images', cocoName(im.cocoid));
      fs.writeFileSync(f, await jpeg(1, 1, 1));
      mirrored.add(f);
    }
    const log: string[] = [];
    const r = await buildSubsets(cfg, { root, cache, mirror, log: (l) => log.push(l) });
    assert.equal(r.train.height, 17);
    assert.equal(r.val.height, 9);
    assert.equal(new Set(frameColumns(r.eval).image_id).size, 3);
    const all = frameColumns(allSubsets(r));
    const files = [...new Set(all.file)];
    for (const f of files) assert.ok(fs.existsSync(f), f);
    const cachePaths = cocoCachePaths(cache);
    const evalFiles = new Set(frameColumns(r.eval).file);
    for (const f of evalFiles) assert.ok(mirrored.has(f), `eval photo ${f} should be the mirror's`);
    for (const f of files) if (!evalFiles.has(f)) assert.ok(f.startsWith(cachePaths.images + path.sep), f);
    // every other photo of the subsets was fetched once, and nothing else
    const photoRequests = server.requests.filter((q) => /\/(train|val)2014\//.test(q));
    assert.equal(photoRequests.length, files.length - evalFiles.size);
    assert.equal(listFiles(cachePaths.images).length, files.length - evalFiles.size);
    assert.ok(fs.existsSync(path.join(cachePaths.annotations, 'captions_train2014.json')));
    assert.ok(!fs.existsSync(path.join(cachePaths.annotations, 'instances_val2014.json')));
    assert.ok(log.some((l) => /COCO photos .*files\/s.*MB\/s/.test(l)), log.join('\n'));
    const man = r.manifest;
    assert.deepEqual(man.inputs.map((f) => path.basename(f)), ['dataset_coco.json', 'captions_train2014.json', 'captions_val2014.json']);

    // Rerun: nothing downloaded again, byte-identical subsets.
    const n = server.requests.length;
    const dir = artifactPaths('paper', root).subsets;
    const before = fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f)));
    await buildSubsets(cfg, { root, cache, mirror, log: () => undefined });
    assert.equal(server.requests.length, n);
    const after = fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f)));
    assert.deepEqual(after, before);
  } finally {
    await server.close();
  }
});

test('paper profile without the internet: one clear error with the fix, no subsets, no partial files', async () => {
  const { server, cfg } = await paperWorld();
  await server.close();
  const root = tmpRoot();
  const cache = tmpDir('cache');
  await assert.rejects(buildSubsets(cfg, { root, cache, mirror: null }), (e: Error) => {
    assert.match(e.message, /cannot reach 127\.0\.0\.1:\d+ to download http:\/\/127\.0\.0\.1:\d+\/karpathy\/caption_datasets\.zip \(ECONNREFUSED after 2 tries\)\. Without internet access use the offline profile/);
    return true;
  });
  assert.deepEqual(listFiles(path.join(root, 'data')), []);
  assert.deepEqual(listFiles(cache), []);
});
