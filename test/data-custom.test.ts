// A dataset of your own (src/lib/data/custom.ts, CLIPCAP_DATASET): every accepted format (CSV with and
// without a header, captions.txt, COCO-style JSON; with and without split files), every kind of bad
// input counted and named while the valid rows go on, the split and its manifest, and the profile and
// artifact paths it switches (the profiles without it unchanged).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { loadCustomDataset, datasetNotes, datasetProblemRows, describeDatasetProblems, PROBLEM_KINDS } from '../src/lib/data/custom';
import { buildSubsets, customSplitSpec, loadSubsets, splitForProfile } from '../src/lib/data/build';
import { frameRows } from '../src/lib/data/schema';
import { captionCorpusForProfile } from '../src/lib/data/corpus';
import { profileConfig, withCustomDataset, PROFILE_NAMES, configRows } from '../src/lib/config';
import { resolveProfile } from '../src/lib/profile';
import { artifactPaths, customDatasetKey, pretrainedLMDir, runDirectory } from '../src/lib/paths';
import { profileProblems } from '../src/lib/validate';
import { evalSetOf } from '../src/lib/eval/evaluate';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-custom-'));

/** A small photo: JPEG or PNG, a colour of its own. */
async function photo(file: string, k: number): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const img = sharp({ create: { width: 24, height: 16, channels: 3, background: { r: (k * 53) % 256, g: (k * 97) % 256, b: (k * 31) % 256 } } });
  if (file.endsWith('.png')) await img.png().toFile(file);
  else await img.jpeg().toFile(file);
}

/** A JPEG cut in half (its header intact): the decoder calls it truncated. */
async function truncatedJpeg(file: string): Promise<void> {
  const noise = Buffer.alloc(64 * 64 * 3);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251;
  const full = await sharp(noise, { raw: { width: 64, height: 64, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
  fs.writeFileSync(file, full.subarray(0, Math.floor(full.length / 2)));
}

/** n photos p00.jpg, p01.png, ... (every third a PNG) in <dir>/images; their names. */
async function photos(dir: string, n: number): Promise<string[]> {
  const names: string[] = [];
  for (let k = 0; k < n; k++) {
    const name = `p${String(k).padStart(2, '0')}.${k % 3 === 1 ? 'png' : 'jpg'}`;
    await photo(path.join(dir, 'images', name), k);
    names.push(name);
  }
  return names;
}

const csvField = (s: string) => (/[",]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** Rows image,caption: `per` captions a photo. */
function rowsFor(names: string[], per: number): [string, string][] {
  return names.flatMap((n, k) => Array.from({ length: per }, (_, j): [string, string] => [n, `a photo number ${k}, caption ${j}`]));
}

function writeCsv(file: string, rows: [string, string][], header: boolean): void {
  fs.writeFileSync(file, (header ? 'image,caption\n' : '') + rows.map(([i, c]) => `${csvField(i)},${csvField(c)}`).join('\n') + '\n');
}

test('CSV with a header: one row per caption, quoted fields with commas and quotes, several captions a photo', async () => {
  const dir = tmp();
  await photos(dir, 3);
  fs.writeFileSync(
    path.join(dir, 'captions.csv'),
    [
      'image,caption',
      'p00.jpg,A dog runs.',
      'p00.jpg,"A dog, brown, runs on ""grass""."',
      'p01.png,  A   cat  sleeps .  ',
      '"p02.jpg",A bird sings',
      'p02.jpg,A bird, unquoted, with commas',
      '',
    ].join('\r\n'),
  );
  const { df, summary } = await loadCustomDataset(dir);
  assert.deepEqual(frameRows(df), [
    { image_id: 'p00.jpg', file: path.join(dir, 'images', 'p00.jpg'), split: 'none', caption: 'A dog runs.', source: 'custom' },
    { image_id: 'p00.jpg', file: path.join(dir, 'images', 'p00.jpg'), split: 'none', caption: 'A dog, brown, runs on "grass".', source: 'custom' },
    { image_id: 'p01.png', file: path.join(dir, 'images', 'p01.png'), split: 'none', caption: 'A cat sleeps .', source: 'custom' },
    { image_id: 'p02.jpg', file: path.join(dir, 'images', 'p02.jpg'), split: 'none', caption: 'A bird sings', source: 'custom' },
    { image_id: 'p02.jpg', file: path.join(dir, 'images', 'p02.jpg'), split: 'none', caption: 'A bird, unquoted, with commas', source: 'custom' },
  ]);
  assert.equal(summary.format, 'csv');
  assert.equal(summary.header, true);
  assert.deepEqual(summary.problems, {});
  assert.deepEqual(summary.notes, []);
  assert.equal(summary.rows, 5);
  assert.equal(summary.captions, 5);
  assert.equal(summary.photos, 3);
  assert.equal(summary.photoFiles, 3);
  assert.equal(summary.name, path.basename(dir));
  assert.match(describeDatasetProblems(summary), /5 valid captions of 3 photos .*no problems/);
});

test('CSV without a header, captions.txt, and a COCO-style captions.json give the same table', async () => {
  const rows = rowsFor(['a.jpg', 'sub/b.png'], 2);
  const read = async (write: (dir: string) => void) => {
    const dir = tmp();
    await photo(path.join(dir, 'images', 'a.jpg'), 1);
    await photo(path.join(dir, 'images', 'sub', 'b.png'), 2);
    write(dir);
    const r = await loadCustomDataset(dir);
    return { rows: frameRows(r.df).map((x) => [x.image_id, x.caption, path.relative(dir, x.file)]), summary: r.summary };
  };
  const want = rows.map(([i, c]) => [i, c, path.join('images', i)]);
  const noHeader = await read((dir) => writeCsv(path.join(dir, 'captions.csv'), rows, false));
  assert.deepEqual(noHeader.rows, want);
  assert.equal(noHeader.summary.header, false);
  const txt = await read((dir) => writeCsv(path.join(dir, 'captions.txt'), rows, true));
  assert.deepEqual(txt.rows, want);
  assert.match(txt.summary.captionsFile, /captions\.txt$/);
  const coco = await read((dir) =>
    fs.writeFileSync(
      path.join(dir, 'captions.json'),
      JSON.stringify({
        images: [
          { id: 7, file_name: 'a.jpg' },
          { id: 'b', file_name: 'sub/b.png' },
        ],
        annotations: rows.map(([i, c], k) => ({ id: k, image_id: i === 'a.jpg' ? 7 : 'b', caption: c })),
      }),
    ),
  );
  assert.deepEqual(coco.rows, want);
  assert.equal(coco.summary.format, 'coco-json');
  assert.deepEqual(coco.summary.problems, {});
  // a second captions file is not read, and a note says so
  const both = await read((dir) => {
    writeCsv(path.join(dir, 'captions.csv'), rows, true);
    fs.writeFileSync(path.join(dir, 'captions.json'), '{}');
  });
  assert.deepEqual(both.rows, want);
  assert.match(both.summary.notes.join(), /captions\.json not read: captions\.csv is/);
});

test('every kind of bad input is counted and named, and the valid rows go on', async () => {
  const dir = tmp();
  const names = await photos(dir, 6); // p00.jpg p01.png p02.jpg p03.jpg p04.png p05.jpg
  await truncatedJpeg(path.join(dir, 'images', 'broken.jpg'));
  fs.writeFileSync(path.join(dir, 'images', 'notes.txt'), 'not a photo'); // ignored: not a photo file
  await photo(path.join(dir, 'images', 'lonely.png'), 40); // no caption names it
  const lines = [
    Buffer.from('image,caption\n'),
    Buffer.from('p00.jpg,A red square.\n'), // line 2
    Buffer.from('p00.jpg,A red square.\n'), // 3: duplicate of line 2
    Buffer.from('p00.jpg,  a RED square  \n'), // 4: another caption (case and spaces differ after cleaning)
    Buffer.from('missing.jpg,A photo that is not there.\n'), // 5: missing photo
    Buffer.from('P01.png,Wrong case.\n'), // 6: missing (names are case-sensitive)
    Buffer.from('broken.jpg,A truncated photo.\n'), // 7: unreadable
    Buffer.from('p01.png,   \n'), // 8: empty caption
    Buffer.from(',A caption without a photo.\n'), // 9: no photo named
    Buffer.concat([Buffer.from('p02.jpg,Caf'), Buffer.from([0xe9]), Buffer.from(' latin-1 text.\n')]), // 10: not UTF-8
    Buffer.from('p02.jpg,"a broken "quote\n'), // 11: malformed
    Buffer.from('p01.png,A green square.\n'),
    Buffer.from('p02.jpg,A blue square.\n'),
    Buffer.from('p03.jpg,A square.\n'),
    Buffer.from('p04.png,A square again.\n'),
    Buffer.from('p05.jpg,One more square.\n'),
    Buffer.from('../outside.jpg,Outside the folder.\n'), // 17: a path leaving images/
  ];
  fs.writeFileSync(path.join(dir, 'captions.csv'), Buffer.concat(lines));
  fs.mkdirSync(path.join(dir, 'splits'));
  fs.writeFileSync(path.join(dir, 'splits', 'train.txt'), 'p00.jpg\np01.png\nghost.jpg\np03.jpg\n');
  fs.writeFileSync(path.join(dir, 'splits', 'test.txt'), 'p02.jpg\np03.jpg\n# a comment\n\n');
  const { df, summary } = await loadCustomDataset(dir);
  const p = summary.problems;
  const count = (k: keyof typeof PROBLEM_KINDS) => p[k]?.count ?? 0;
  assert.equal(count('duplicateRow'), 1);
  assert.match(p.duplicateRow!.examples[0], /captions\.csv line 3: p00\.jpg "A red square\." \(as captions\.csv line 2\)/);
  assert.equal(count('missingPhoto'), 2);
  assert.match(p.missingPhoto!.examples[0], /line 5: "missing\.jpg" is not in images\//);
  assert.match(p.missingPhoto!.examples[1], /line 6: "P01\.png" is not in images\/ \(p01\.png is: names are case-sensitive\)/);
  assert.equal(count('unreadablePhoto'), 1);
  assert.match(p.unreadablePhoto!.examples[0], /line 7: broken\.jpg: truncated or damaged JPEG/);
  assert.equal(count('emptyCaption'), 1);
  assert.match(p.emptyCaption!.examples[0], /line 8: p01\.png/);
  assert.equal(count('captionWithoutPhoto'), 1);
  assert.match(p.captionWithoutPhoto!.examples[0], /line 9: no image: "A caption without a photo\."/);
  assert.equal(count('notUtf8'), 1);
  assert.match(p.notUtf8!.examples[0], /captions\.csv line 10: "p02\.jpg,Caf\uFFFD latin-1 text\."/);
  assert.equal(count('malformedRow'), 2);
  assert.match(p.malformedRow!.examples[0], /line 11: .*quote/);
  assert.match(p.malformedRow!.examples[1], /line 17: "\.\.\/outside\.jpg" is a path leaving images\//);
  assert.deepEqual(p.photoWithoutCaptions?.examples, ['lonely.png']);
  assert.equal(count('splitUnknownPhoto'), 1);
  assert.match(p.splitUnknownPhoto!.examples[0], /splits\/train\.txt line 3: "ghost\.jpg" is neither in images\/ nor in captions\.csv/);
  assert.equal(count('splitConflict'), 1);
  assert.match(p.splitConflict!.examples[0], /p03\.jpg: in splits\/train\.txt and splits\/test\.txt/);
  // train.txt and test.txt are given: photos in neither are left out
  assert.deepEqual(p.notInSplitFile?.examples, ['p04.png', 'p05.jpg']);
  // what is left: the valid rows, with their splits; p03 (two split files) is left out
  assert.deepEqual(
    frameRows(df).map((r) => [r.image_id, r.split, r.caption]),
    [
      ['p00.jpg', 'train', 'A red square.'],
      ['p00.jpg', 'train', 'a RED square'],
      ['p01.png', 'train', 'A green square.'],
      ['p02.jpg', 'test', 'A blue square.'],
      ['p04.png', 'none', 'A square again.'],
      ['p05.jpg', 'none', 'One more square.'],
    ],
  );
  assert.deepEqual(summary.splitFiles, ['train.txt', 'test.txt']);
  assert.equal(names.length + 2, summary.photoFiles);
  // the notes and the table of notebook 01 say all of it
  const notes = datasetNotes(summary);
  assert.equal(notes.length, Object.keys(p).length);
  assert.ok(notes.every((n) => n.startsWith(`your dataset ${summary.name}: `)));
  assert.match(notes.find((n) => /truncated/.test(n))!, /1 rows whose photo cannot be read .*broken\.jpg/);
  assert.deepEqual(
    datasetProblemRows(summary).map((r) => [r.problem, r.count]),
    (Object.keys(PROBLEM_KINDS) as (keyof typeof PROBLEM_KINDS)[]).filter((k) => p[k]).map((k) => [PROBLEM_KINDS[k], p[k]!.count]),
  );
});

test('COCO captions.json: captions of an unknown image_id, a listed photo that is missing, bad entries and non-UTF-8 text', async () => {
  const dir = tmp();
  await photos(dir, 2);
  const json = JSON.stringify({
    images: [
      { id: 1, file_name: 'p00.jpg' },
      { id: 2, file_name: 'p01.png' },
      { id: 3, file_name: 'gone.jpg' },
      { file_name: 'no-id.jpg' },
    ],
    annotations: [
      { image_id: 1, caption: 'A square.' },
      { image_id: 2, caption: 'Another square.' },
      { image_id: 9, caption: 'No such image.' },
      { image_id: 2, caption: 'NOT-UTF8' },
      { image_id: 1, caption: '' },
      { image_id: 1 },
      'not an object',
    ],
  });
  const bytes = Buffer.from(json);
  const at = bytes.indexOf('NOT-UTF8');
  const broken = Buffer.concat([bytes.subarray(0, at), Buffer.from([0xff, 0xfe]), bytes.subarray(at + 8)]);
  fs.writeFileSync(path.join(dir, 'captions.json'), broken);
  const { df, summary } = await loadCustomDataset(dir);
  assert.deepEqual(frameRows(df).map((r) => [r.image_id, r.caption]), [
    ['p00.jpg', 'A square.'],
    ['p01.png', 'Another square.'],
  ]);
  const p = summary.problems;
  assert.match(p.captionWithoutPhoto!.examples[0], /annotations\[2\]: image_id 9 is not in "images"/);
  assert.match(p.notUtf8!.examples[0], /annotations\[3\]/);
  assert.equal(p.emptyCaption!.count, 2); // "" and no caption at all
  assert.equal(p.malformedRow!.count, 2); // the image without an id, the annotation that is a string
  assert.match(p.missingPhoto!.examples[0], /images\[2\]: "gone\.jpg" is not in images\/ \(no caption names it\)/);
  assert.equal(summary.rows, 7);
});

test('nothing valid left, no folder, no images/, no captions file, unparsable JSON: one clear error each', async () => {
  const dir = tmp();
  await photos(dir, 1);
  writeCsv(path.join(dir, 'captions.csv'), [['missing.jpg', 'A caption.'], ['p00.jpg', ' ']], true);
  await assert.rejects(loadCustomDataset(dir), (e: Error) => {
    assert.match(e.message, /^nothing usable in the dataset .*: 0 valid captions of 0 photos from 2 rows of captions\.csv.*1 rows whose photo is not in images\/ \(e\.g\. captions\.csv line 2: "missing\.jpg"/);
    assert.match(e.message, /1 rows with an empty caption/);
    return true;
  });
  await assert.rejects(loadCustomDataset(path.join(dir, 'nope')), /the dataset folder .*nope does not exist \(CLIPCAP_DATASET\)/);
  const noImages = tmp();
  writeCsv(path.join(noImages, 'captions.csv'), [['a.jpg', 'x']], true);
  await assert.rejects(loadCustomDataset(noImages), /has no images\/ folder/);
  const noCaptions = tmp();
  await photos(noCaptions, 1);
  await assert.rejects(loadCustomDataset(noCaptions), /has no captions file: put captions\.csv .* or a COCO-style captions\.json/);
  fs.writeFileSync(path.join(noCaptions, 'captions.json'), '{"images": [');
  await assert.rejects(loadCustomDataset(noCaptions), /captions\.json: not valid JSON/);
  fs.writeFileSync(path.join(noCaptions, 'captions.json'), '{"photos": []}');
  await assert.rejects(loadCustomDataset(noCaptions), /expected the COCO captions format, an object with "images" and "annotations" arrays \(found the keys photos\)/);
});

/** A folder of n photos with `per` captions each, as captions.csv with a header. */
async function dataset(n: number, per: number, splits?: Record<string, string[]>): Promise<string> {
  const dir = tmp();
  const names = await photos(dir, n);
  writeCsv(path.join(dir, 'captions.csv'), rowsFor(names, per), true);
  if (splits) {
    fs.mkdirSync(path.join(dir, 'splits'));
    for (const [f, list] of Object.entries(splits)) fs.writeFileSync(path.join(dir, 'splits', f), list.join('\n') + '\n');
  }
  return dir;
}

test('without split files: a seeded split by photo, sizes from evalImages (0: one in ten) and valFraction', async () => {
  const dir = await dataset(40, 2);
  const cfg = withCustomDataset(profileConfig('offline'), dir);
  const { df } = await loadCustomDataset(dir);
  const ids = (f: import('nodejs-polars').DataFrame) => [...new Set(frameRows(f).map((r) => r.image_id))].sort();
  const a = splitForProfile(cfg, df, []);
  assert.equal(ids(a.eval).length, 4); // one photo in ten
  assert.equal(ids(a.val).length, 4); // valFraction 0.1 of the 36 left
  assert.equal(ids(a.train).length, 32);
  assert.equal(a.train.height, 64); // every caption of the chosen photos
  assert.deepEqual(ids(splitForProfile(cfg, df, []).eval), ids(a.eval), 'the same seed draws the same photos');
  const other = splitForProfile({ ...cfg, data: { ...cfg.data, seed: 1 } }, df, []);
  assert.notDeepEqual(ids(other.eval), ids(a.eval), 'another seed, other photos');
  const sized = splitForProfile({ ...cfg, data: { ...cfg.data, evalImages: 10, valFraction: 0.5 } }, df, []);
  assert.equal(ids(sized.eval).length, 10);
  assert.equal(ids(sized.val).length, 15);
  assert.equal(ids(sized.train).length, 15);
  // too few photos for what is asked: said when the subsets are made
  assert.throws(() => splitForProfile({ ...cfg, data: { ...cfg.data, evalImages: 41 } }, df, []), /only 40 images can be evaluation images/);
});

test('with split files: test.txt is the evaluation pool, val.txt the validation photos, train.txt the training pool', async () => {
  const names = Array.from({ length: 12 }, (_, k) => `p${String(k).padStart(2, '0')}.${k % 3 === 1 ? 'png' : 'jpg'}`);
  const dir = await dataset(12, 1, { 'train.txt': names.slice(0, 6), 'val.txt': names.slice(6, 9), 'test.txt': names.slice(9) });
  const cfg = withCustomDataset(profileConfig('offline'), dir);
  const { df, summary } = await loadCustomDataset(dir);
  const s = splitForProfile(cfg, df, summary.splitFiles);
  const ids = (f: import('nodejs-polars').DataFrame) => [...new Set(frameRows(f).map((r) => r.image_id))].sort();
  assert.deepEqual(ids(s.train), names.slice(0, 6));
  assert.deepEqual(ids(s.val), names.slice(6, 9));
  assert.deepEqual(ids(s.eval), names.slice(9));
  // only test.txt: the rest is drawn into train and val
  const onlyTest = await dataset(12, 1, { 'test.txt': names.slice(9) });
  const t = await loadCustomDataset(onlyTest);
  const s2 = splitForProfile({ ...cfg, data: { ...cfg.data, valFraction: 0.25 } }, t.df, t.summary.splitFiles);
  assert.deepEqual(ids(s2.eval), names.slice(9));
  assert.equal(ids(s2.val).length, 2);
  assert.equal(ids(s2.train).length, 7);
  // train.txt and val.txt but no test.txt: the photos in neither are the evaluation pool
  const noTest = await dataset(12, 1, { 'train.txt': names.slice(0, 8), 'val.txt': names.slice(8, 10) });
  const u = await loadCustomDataset(noTest);
  const s3 = splitForProfile(cfg, u.df, u.summary.splitFiles);
  assert.equal(ids(s3.eval).length, 1); // one in ten of the two left, at least one
  assert.ok(names.slice(10).includes(ids(s3.eval)[0]));
  assert.deepEqual(ids(s3.train), names.slice(0, 8));
  // every photo in train.txt or val.txt, no test.txt: nothing to evaluate on, said clearly
  const full = await dataset(4, 1, { 'train.txt': names.slice(0, 3), 'val.txt': names.slice(3, 4) });
  const v = await loadCustomDataset(full);
  assert.throws(() => customSplitSpec(v.df, cfg.data, v.summary.splitFiles), /no evaluation photos: every photo is in splits\/train\.txt or val\.txt.*add splits\/test\.txt/);
});

test('buildSubsets on your own dataset: its own artifact folder, the dataset and its problems in the manifest', async () => {
  const root = tmp();
  const names = Array.from({ length: 20 }, (_, k) => `p${String(k).padStart(2, '0')}.${k % 3 === 1 ? 'png' : 'jpg'}`);
  const dir = await dataset(20, 2);
  fs.appendFileSync(path.join(dir, 'captions.csv'), 'missing.jpg,A missing photo.\n');
  const cfg = withCustomDataset(profileConfig('smoke'), dir);
  const built = await buildSubsets(cfg, { root });
  const key = customDatasetKey(dir);
  assert.equal(built.dir, path.join(root, 'data', 'smoke', 'custom', key, 'subsets'));
  const m = built.manifest;
  assert.equal(m.source, 'custom');
  assert.equal(m.config.custom, dir);
  assert.equal(m.dataset?.name, path.basename(dir));
  assert.equal(m.dataset?.photos, 20);
  assert.equal(m.dataset?.problems.missingPhoto?.count, 1);
  assert.deepEqual(m.inputs, [path.join(dir, 'captions.csv')]);
  assert.equal(m.notes?.length, 1);
  assert.match(m.notes![0], /1 rows whose photo is not in images\/, left out \(captions\.csv line 42: "missing\.jpg"/);
  assert.deepEqual([m.sizes.eval.images, m.sizes.val.images, m.sizes.train.images], [2, 2, 16]);
  const back = loadSubsets(cfg, root);
  assert.equal(back.manifest.dataset?.captions, 40);
  assert.deepEqual([...new Set(frameRows(back.train).map((r) => r.image_id))].every((id) => names.includes(id)), true);
  // the language model's corpus (smoke: the training captions alone, never a val or eval caption)
  const corpus = captionCorpusForProfile(cfg, { root });
  assert.equal(corpus.records.length, 32);
  assert.deepEqual(corpus.counts.map((c) => c.source), [`${path.basename(dir)} (train)`]);
  // offline: the mirror's caption text is added where there is a mirror; without one, the training captions alone
  const offline = withCustomDataset(profileConfig('offline'), dir);
  await buildSubsets(offline, { root });
  const alone = captionCorpusForProfile(offline, { root, mirror: path.join(root, 'no-mirror') });
  assert.equal(alone.records.length, 32);
});

test('CLIPCAP_DATASET: the profile trains on the folder, its artifacts apart; without it every profile is unchanged', async () => {
  const dir = await dataset(3, 1);
  for (const name of PROFILE_NAMES) {
    const plain = await resolveProfile({ CLIPCAP_PROFILE: name }, { choiceFile: null, quiet: true, gpu: () => ({ gpu: true, detail: 'test' }) });
    assert.deepEqual(plain, profileConfig(name), `${name}: unchanged without CLIPCAP_DATASET`);
    assert.equal(plain.data.custom, undefined);
    assert.equal(JSON.stringify(plain.data).includes('custom'), false, `${name}: no custom key in the data config (manifests stay byte-identical)`);
    assert.equal(artifactPaths(plain).root, artifactPaths(name).root);
    assert.equal(artifactPaths(plain).report, artifactPaths(name).report);
    const own = await resolveProfile({ CLIPCAP_PROFILE: name, CLIPCAP_DATASET: dir }, { choiceFile: null, quiet: true, gpu: () => ({ gpu: true, detail: 'test' }) });
    assert.equal(own.data.source, 'custom');
    assert.equal(own.data.custom, dir);
    assert.equal(own.data.evalImages, 0);
    assert.ok(own.data.valFraction > 0);
    assert.deepEqual(profileProblems(own), [], `${name}: a valid configuration`);
    assert.deepEqual([own.encoder, own.lm, own.mlp, own.transformer, own.eval], [plain.encoder, plain.lm, plain.mlp, plain.transformer, plain.eval], `${name}: the profile's models and recipe`);
    const a = artifactPaths(own);
    const base = path.join(artifactPaths(name).root, 'custom', customDatasetKey(dir));
    assert.deepEqual([a.root, a.subsets, a.runs, a.report, a.figures, a.models], [base, path.join(base, 'subsets'), path.join(base, 'runs'), path.join(base, 'REPORT.md'), path.join(base, 'figures'), artifactPaths(name).models]);
    assert.equal(runDirectory(own, 'mlp_finetune'), path.join(base, 'runs', 'mlp_finetune'));
    assert.equal(pretrainedLMDir(own), path.join(base, 'lm', 'model'));
  }
  // notebook 01's table shows data.custom only when it is set
  assert.equal(configRows({ ...profileConfig('offline').data, custom: undefined }).some(([k]) => k === 'custom'), false);
  // data.custom edited in notebook 01 alone would not reach notebooks 02-06: refused, naming CLIPCAP_DATASET
  const edited = profileConfig('offline');
  edited.data.custom = dir;
  assert.match(profileProblems(edited).join('\n'), /data\.custom = .*: set CLIPCAP_DATASET=.* instead/);
  const noFolder = withCustomDataset(profileConfig('offline'), dir);
  noFolder.data.custom = '';
  assert.match(profileProblems(noFolder).join('\n'), /data\.source "custom" needs the folder of your dataset; set CLIPCAP_DATASET/);
  // two folders of the same name never share artifacts
  assert.notEqual(customDatasetKey('/a/photos'), customDatasetKey('/b/photos'));
  assert.match(customDatasetKey('/a/my photos'), /^my_photos-[0-9a-f]{8}$/);
  // the evaluation set is named after the dataset
  assert.deepEqual(evalSetOf('custom', 'holiday'), { key: 'custom-test', label: 'holiday (your dataset)', order: 0 });
});

test('notebooks 01-06 in code on your own dataset (smoke profile), then `clipcap caption` on one of its photos', async () => {
  const { spawnSync } = await import('child_process');
  const { imagesFromSubsets, extractEmbeddings } = await import('../src/lib/embed/extract');
  const { encoderName } = await import('../src/lib/embed/encoders/index');
  const { storeDir } = await import('../src/lib/paths');
  const { pretrainLM } = await import('../src/lib/train/pretrain');
  const { trainVariant } = await import('../src/lib/train/run');
  const { evaluateProfile } = await import('../src/lib/eval/evaluate');
  const { writeReport } = await import('../src/lib/notebook/report');
  const { ensureBackend } = await import('../src/lib/tfjs/backend');
  const dir = await dataset(24, 3);
  fs.appendFileSync(path.join(dir, 'captions.csv'), 'missing.jpg,A photo that is not there.\n');
  const base = withCustomDataset(profileConfig('smoke'), dir);
  const cfg = { ...base, lmPretrain: { ...base.lmPretrain, epochs: 1 }, mlp: { ...base.mlp, epochs: 1 }, eval: { ...base.eval, beam: 1, maxNewTokens: 6, retrievalK: 2 } };
  const paths = artifactPaths(cfg);
  fs.rmSync(paths.root, { recursive: true, force: true });
  try {
    // 01
    const subsets = await buildSubsets(cfg);
    assert.equal(subsets.manifest.dataset?.problems.missingPhoto?.count, 1);
    // 02
    for (const [source, images] of imagesFromSubsets(paths.subsets)) {
      await extractEmbeddings({ encoder: cfg.encoder, images, storeDir: storeDir(paths.embeddings, encoderName(cfg.encoder), source), dataset: source, models: paths.models, workers: 1, progress: false });
    }
    // 02b
    const corpus = captionCorpusForProfile(cfg);
    await pretrainLM({ arch: cfg.lm.arch, cfg: cfg.lmPretrain, texts: corpus.records.map((r) => r.text), restrictVocab: cfg.lm.restrictVocab, modelDir: pretrainedLMDir(cfg), runDir: path.join(paths.lm, 'run'), run: { write: () => {} } });
    // 03: the run records the dataset it was trained on, and the image-use gap is measured
    const run = await trainVariant({ profile: cfg, train: cfg.mlp, run: { write: () => {} } });
    assert.ok(run.runDir.startsWith(paths.runs + path.sep));
    assert.deepEqual(run.config.data.dataset, { name: path.basename(dir), folder: dir });
    assert.equal(typeof run.summary.finalValLossShuffled, 'number');
    // 06: one evaluation set named after the dataset, with the retrieval baseline; REPORT.md in the dataset's folder
    const evaluation = await evaluateProfile(cfg, { decode: { beam: 1, maxNewTokens: 6 }, retrievalK: 2, variants: [cfg.mlp] });
    assert.deepEqual(evaluation.sets.map((s) => [s.key, s.label, s.evalImages.length]), [['custom-test', `${path.basename(dir)} (your dataset)`, 2]]);
    assert.deepEqual(evaluation.sets[0].systems.map((s) => s.key), ['mlp_finetune', 'nn_retrieval']);
    assert.ok(evaluation.sets[0].dir.startsWith(paths.eval));
    const report = writeReport({ profile: cfg, evaluation, samples: 2, backend: (await ensureBackend({ quiet: true })).name });
    assert.equal(report.file, path.join(paths.root, 'REPORT.md'));
    const text = fs.readFileSync(report.file, 'utf8');
    assert.match(text, new RegExp(`^# ClipCap in TypeScript: results on your dataset "${path.basename(dir)}" \\(smoke profile\\)`));
    assert.match(text, /\| dataset \| ".*" \(.*\): 24 photos with 72 captions, from 73 rows of captions\.csv; a seeded split by photo \(seed 7, valFraction 0\.1, evalImages 0: one photo in ten\); left out: 1 rows with a missing photo \(see the data notes\) \|/);
    assert.match(text, /\| data \(images \/ captions\) \| train 20 \/ 60; val 2 \/ 6; eval 2 \/ 6 \|/);
    assert.match(text, /> \*\*Data note:\*\* your dataset .*: 1 rows whose photo is not in images\//);
    assert.match(text, /image-use gap/);
    assert.doesNotMatch(text, /The mirror lacked the full Flickr8k/);
    // clipcap caption on a run trained this way, with a photo of the dataset
    const photoFile = path.join(dir, 'images', 'p00.jpg');
    const out = spawnSync(process.execPath, [path.resolve(__dirname, '..', 'bin', 'clipcap.js'), 'caption', '--run', runDirectory(cfg, 'mlp_finetune'), '--beam', '2', '--max-new-tokens', '6', '--json', photoFile], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    const parsed = JSON.parse(out.stdout.trim().split('\n').pop()!) as { file: string; caption: string }[];
    assert.equal(parsed[0].file, photoFile);
    assert.equal(typeof parsed[0].caption, 'string');
  } finally {
    fs.rmSync(paths.root, { recursive: true, force: true });
  }
});
