import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { profileConfig, type ProfileConfig } from '../src/lib/config';
import { artifactPaths } from '../src/lib/paths';
import {
  buildSubsets,
  loadSubsets,
  captionFrame,
  frameColumns,
  groupImages,
  splitByImage,
  allSubsets,
  countBySplitSource,
  generateSynthetic,
  syntheticSpecs,
  shapeGeometry,
  SYNTHETIC_COLORS,
  type CaptionRow,
  type Subsets,
} from '../src/lib/data';
import { makeMirror, tmpRoot, tmpDir, listFiles } from './helpers/data-fixtures';

function rows(nImages: number, caps: (i: number) => number, split: (i: number) => string, source = 'coco2014'): CaptionRow[] {
  const out: CaptionRow[] = [];
  for (let i = 0; i < nImages; i++) {
    for (let k = 0; k < caps(i); k++) out.push({ image_id: `${source}-${i}`, file: `/p/${source}/${i}.jpg`, split: split(i), caption: `c${i}.${k}`, source });
  }
  return out;
}

function ids(df: Subsets['train']): Set<string> {
  return new Set(frameColumns(df).image_id);
}

function assertDisjoint(s: Subsets): void {
  const [a, b, c] = [ids(s.train), ids(s.val), ids(s.eval)];
  for (const x of a) assert.ok(!b.has(x) && !c.has(x), `${x} in two splits`);
  for (const x of b) assert.ok(!c.has(x), `${x} in two splits`);
}

const KARPATHY = {
  evalPool: (g: { split: string }) => g.split === 'test',
  trainPool: (g: { split: string }) => g.split === 'train' || g.split === 'restval',
  val: { pool: (g: { split: string }) => g.split === 'val' },
};

test('Karpathy-style split: exact caption targets, eval from test only, nothing from test in train', () => {
  const split = (i: number) => ['train', 'restval', 'val', 'test'][i % 4];
  const df = captionFrame(rows(400, (i) => 5 + (i % 3), split));
  const s = splitByImage(df, { seed: 42, evalImages: 20, evalMinCaptions: 5, trainCaptions: 123, valCaptions: 61, ...KARPATHY });
  assertDisjoint(s);
  assert.equal(s.train.height, 123);
  assert.equal(s.val.height, 61);
  assert.equal(ids(s.eval).size, 20);
  const cols = frameColumns(df);
  const native = new Map(cols.image_id.map((id, i) => [id, cols.split[i]]));
  for (const id of ids(s.eval)) assert.equal(native.get(id), 'test');
  for (const id of ids(s.val)) assert.equal(native.get(id), 'val');
  for (const id of ids(s.train)) assert.ok(['train', 'restval'].includes(native.get(id)!));
  // eval images keep all their references
  for (const g of groupImages(frameColumns(s.eval))) assert.ok(g.captions.length >= 5);
  assert.deepEqual([...new Set(frameColumns(s.train).split)], ['train']);
  assert.deepEqual([...new Set(frameColumns(s.eval).split)], ['eval']);
  // too many captions asked: a clear error
  assert.throws(() => splitByImage(df, { seed: 1, evalImages: 5, evalMinCaptions: 5, trainCaptions: 10 ** 6, valCaptions: 0, ...KARPATHY }), /train: only \d+ captions are available, the config asks for 1000000; lower it \(data\.trainCaptions\)/);
  assert.throws(() => splitByImage(df, { seed: 1, evalImages: 101, evalMinCaptions: 5, trainCaptions: 0, valCaptions: 0, ...KARPATHY }), /only 100 images can be evaluation images .* asks for 101; lower data\.evalImages/);
});

test('the split depends on the seed and the rows, not on their order', () => {
  const base = rows(60, () => 5, () => 'x', 'flickr8k').concat(rows(40, () => 5, () => 'x', 'coco-mini'));
  const spec = { seed: 3, evalImages: 10, evalMinCaptions: 5, evalPool: (g: { source: string }) => g.source === 'coco-mini', val: { fraction: 0.1 }, trainCaptions: 0, valCaptions: 0 };
  const a = splitByImage(captionFrame(base), spec);
  // the same rows, images in reverse order (each image's captions keep their order)
  const byImage = new Map<string, CaptionRow[]>();
  for (const r of base) byImage.set(r.image_id, [...(byImage.get(r.image_id) ?? []), r]);
  const b = splitByImage(captionFrame([...byImage.values()].reverse().flat()), spec);
  for (const k of ['train', 'val', 'eval'] as const) assert.deepEqual(frameColumns(a[k]), frameColumns(b[k]));
  const c = splitByImage(captionFrame(base), { ...spec, seed: 4 });
  assert.notDeepEqual([...ids(a.eval)].sort(), [...ids(c.eval)].sort());
  // val fraction per source: round(60 * 0.1) flickr images, round(30 * 0.1) coco images
  const counts = countBySplitSource(allSubsets(a));
  const get = (split: string, source: string) => counts.find((r) => r.split === split && r.source === source)?.images ?? 0;
  assert.equal(get('val', 'flickr8k'), 6);
  assert.equal(get('val', 'coco-mini'), 3);
  assert.equal(get('eval', 'coco-mini'), 10);
  assert.equal(get('eval', 'flickr8k'), 0);
  assert.equal(get('train', 'flickr8k') + get('train', 'coco-mini'), 100 - 10 - 9);
  assertDisjoint(a);
});

function offlineCfg(over: Partial<ProfileConfig['data']> = {}): ProfileConfig {
  const cfg = profileConfig('offline');
  Object.assign(cfg.data, over);
  return cfg;
}

function sha(f: string): string {
  return require('crypto').createHash('sha256').update(fs.readFileSync(f)).digest('hex');
}

test('offline subsets, the Flickr8k benchmark: train on the standard train split (+ COCO train2017), val = dev, eval = test + COCO val2017; parquet + manifest, reproducible', async () => {
  const m = await makeMirror({ val: 8, train: 4, flickr: 10, testPhotos: 2 });
  const root = tmpRoot();
  const env = { CLIPCAP_DATA_DIR: m.root };
  const r = await buildSubsets(offlineCfg(), { root, env });
  const dir = artifactPaths('offline', root).subsets;
  assert.equal(r.dir, dir);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['eval.parquet', 'manifest.json', 'train.parquet', 'val.parquet']);
  assertDisjoint(r);
  const wp = m.flickrWithPhoto;
  // eval: every COCO val2017 photo and every Flickr8k test photo that has a file (evalImages 0 = all)
  assert.deepEqual([...ids(r.eval)].sort(), [...m.cocoIds.val.map(String), wp[8], wp[9]].sort());
  assert.deepEqual([...ids(r.val)].sort(), [wp[6], wp[7]].sort());
  assert.deepEqual([...ids(r.train)].sort(), [...wp.slice(0, 6), ...m.cocoIds.train.map(String)].sort());
  for (const s of m.flickrNoPhoto) assert.ok(!ids(allSubsets(r)).has(s));
  for (const f of new Set(frameColumns(allSubsets(r)).file)) assert.ok(fs.existsSync(f), f);
  // the mirror has only flickr8k-mini: the manifest says the results are not the benchmark
  assert.match(r.manifest.notes?.join(' ') ?? '', /no full Flickr8k .* using flickr8k-mini .* NOT comparable/);
  const nEval = 8 + 2;

  const man = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  assert.deepEqual(man.sizes, { train: { images: ids(r.train).size, captions: r.train.height }, val: { images: ids(r.val).size, captions: r.val.height }, eval: { images: nEval, captions: 5 * nEval } });
  assert.equal(man.seed, 42);
  assert.equal(man.config.evalImages, 0);
  assert.deepEqual(man.counts, countBySplitSource(allSubsets(r)));
  assert.equal(man.files.train.sha256, sha(path.join(dir, 'train.parquet')));

  // read back
  const back = loadSubsets('offline', root);
  for (const k of ['train', 'val', 'eval'] as const) assert.deepEqual(frameColumns(back[k]), frameColumns(r[k]));

  // rerun: identical bytes
  const before = Object.fromEntries(fs.readdirSync(dir).map((f) => [f, sha(path.join(dir, f))]));
  await buildSubsets(offlineCfg(), { root, env });
  const after = Object.fromEntries(fs.readdirSync(dir).map((f) => [f, sha(path.join(dir, f))]));
  assert.deepEqual(after, before);
  // another seed: other files
  await buildSubsets(offlineCfg({ seed: 1 }), { root, env });
  assert.notEqual(sha(path.join(dir, 'eval.parquet')), before['eval.parquet']);

  // the full Flickr8k folder: used as it is, no note; its rows are source flickr8k
  const full = await makeMirror({ val: 3, train: 2, flickr: 10, testPhotos: 2, flickrDir: 'flickr8k' });
  const f = await buildSubsets(offlineCfg(), { root, env: { CLIPCAP_DATA_DIR: full.root } });
  assert.equal(f.manifest.notes, undefined);
  assert.deepEqual([...new Set(frameColumns(f.eval).source)].sort(), ['coco-mini', 'flickr8k']);
  assert.equal(ids(f.eval).size, 3 + 2);
});

test('bad inputs: unknown profile, missing mirror, malformed captions, too many eval images; old subsets survive, nothing half-written', async () => {
  const m = await makeMirror({ val: 6, train: 2, flickr: 4 });
  const root = tmpRoot();
  await assert.rejects(buildSubsets('papr', { root }), /unknown profile "papr": use one of paper, coco-cpu, offline, smoke/);
  assert.deepEqual(listFiles(path.join(root, 'data')), []);

  await assert.rejects(buildSubsets(offlineCfg(), { root, env: { CLIPCAP_DATA_DIR: path.join(m.root, 'missing') } }), /CLIPCAP_DATA_DIR=.*missing does not exist; point it at the folder holding coco-mini\//);
  assert.deepEqual(listFiles(path.join(root, 'data')), []);
  const emptyDir = tmpDir('empty');
  await assert.rejects(buildSubsets(offlineCfg(), { root, env: { CLIPCAP_DATA_DIR: emptyDir } }), /lacks coco-mini\/captions\.json, coco-mini\/images, flickr8k\/captions\.txt, flickr8k\/images: set CLIPCAP_DATA_DIR/);

  const env = { CLIPCAP_DATA_DIR: m.root };
  await buildSubsets(offlineCfg(), { root, env });
  const dir = artifactPaths('offline', root).subsets;
  const good = Object.fromEntries(fs.readdirSync(dir).map((f) => [f, sha(path.join(dir, f))]));

  const cap = path.join(m.root, 'flickr8k-mini', 'captions.txt');
  const lines = fs.readFileSync(cap, 'utf8').split('\n');
  lines[7] = `${m.flickrWithPhoto[1]}.jpg,"broken quote`;
  fs.writeFileSync(cap, lines.join('\n'));
  await assert.rejects(buildSubsets(offlineCfg(), { root, env }), (e: Error) => {
    assert.match(e.message, /flickr8k-mini\/captions\.txt: line 8: unterminated quoted field/);
    return true;
  });
  await assert.rejects(buildSubsets(offlineCfg({ evalImages: 7 }), { root, env: { CLIPCAP_DATA_DIR: (await makeMirror({ val: 6, train: 1, flickr: 1 })).root } }), /only 6 images can be evaluation images/);
  const now = Object.fromEntries(fs.readdirSync(dir).map((f) => [f, sha(path.join(dir, f))]));
  assert.deepEqual(now, good);
  assert.deepEqual(
    listFiles(path.join(root, 'data')).filter((f) => /tmp-/.test(f)),
    [],
  );
});

test('smoke: synthetic fixtures are deterministic, and their captions describe the pixels', async () => {
  const dirA = path.join(tmpDir('syn'), 'synthetic');
  const dirB = path.join(tmpDir('syn'), 'synthetic');
  const a = await generateSynthetic({ dir: dirA, images: 12, size: 48, seed: 7 });
  const b = await generateSynthetic({ dir: dirB, images: 12, size: 48, seed: 7 });
  assert.equal(a.height, 60);
  const fa = listFiles(dirA);
  assert.deepEqual(fa, listFiles(dirB));
  for (const f of fa) assert.equal(sha(path.join(dirA, f)), sha(path.join(dirB, f)), f);
  assert.deepEqual(frameColumns(a).caption, frameColumns(b).caption);
  const specs = syntheticSpecs(12, 7);
  assert.notDeepEqual(specs, syntheticSpecs(12, 8));
  const groups = groupImages(frameColumns(a));
  for (const [i, s] of specs.entries()) {
    const g = groups[i];
    assert.equal(g.image_id, s.image_id);
    assert.ok(g.captions.some((c) => c.includes(`${s.color} ${s.shape}`) && c.includes(`${s.background} background`)), g.captions.join(' | '));
    const { data, info } = await sharp(g.file).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.width, 48);
    const px = (x: number, y: number) => [0, 1, 2].map((c) => data[(y * info.width + x) * info.channels + c]);
    const { cx, cy } = shapeGeometry(s, 48);
    const near = (p: number[], q: number[]) => p.every((v, k) => Math.abs(v - q[k]) <= 3);
    assert.ok(near(px(Math.round(cx), Math.round(cy + 2)), SYNTHETIC_COLORS[s.color]), `${s.image_id}: centre is ${px(Math.round(cx), Math.round(cy))}, caption says ${s.color}`);
    assert.ok(near(px(1, 1), SYNTHETIC_COLORS[s.background]), `${s.image_id}: corner is ${px(1, 1)}, caption says ${s.background}`);
  }
  // a rerun reuses the files (same mtime), a changed seed rewrites them
  const f0 = path.join(dirA, 'images', 'synthetic_0000.png');
  const t0 = fs.statSync(f0).mtimeMs;
  await generateSynthetic({ dir: dirA, images: 12, size: 48, seed: 7 });
  assert.equal(fs.statSync(f0).mtimeMs, t0);
  await generateSynthetic({ dir: dirA, images: 12, size: 48, seed: 9 });
  assert.equal(JSON.parse(fs.readFileSync(path.join(dirA, 'captions.json'), 'utf8')).seed, 9);
  await assert.rejects(generateSynthetic({ dir: dirA, images: 3, size: 4000, seed: 1 }), /size in \[8, 512\] px/);
});

test('smoke profile subsets build end to end under a repository root', async () => {
  const root = tmpRoot();
  const r = await buildSubsets('smoke', { root });
  const cfg = profileConfig('smoke');
  assertDisjoint(r);
  assert.equal(ids(r.eval).size, cfg.data.evalImages);
  assert.equal(ids(r.train).size + ids(r.val).size + ids(r.eval).size, cfg.data.synthetic.images);
  for (const f of new Set(frameColumns(allSubsets(r)).file)) assert.ok(f.startsWith(path.join(artifactPaths('smoke', root).root, 'synthetic')), f);
});
