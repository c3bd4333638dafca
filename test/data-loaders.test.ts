import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import {
  COLUMNS,
  frameColumns,
  frameRows,
  groupImages,
  loadCocoCaptions,
  loadCocoMini,
  loadFlickr30kCaptions,
  loadFlickr8k,
  loadKarpathySplit,
  loadMirrorDataset,
  checkMirror,
  mirrorImageIndex,
  mirrorLayout,
  parseCsvLine,
  cleanCaption,
  normaliseCaption,
  captionFrame,
} from '../src/lib/data';
import { makeMirror, karpathyCoco, tmpDir, cocoName } from './helpers/data-fixtures';

function assertSchema(df: ReturnType<typeof captionFrame>): void {
  assert.deepEqual(df.columns, [...COLUMNS]);
  for (const c of COLUMNS) assert.match(String(df.getColumn(c).dtype), /String|Utf8/);
}

function write(dir: string, name: string, content: string | object): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content, null, 1));
  return f;
}

test('official COCO captions json: one row per annotation, split and source from the file name', () => {
  const d = tmpDir('coco');
  const f = write(d, 'captions_val2014.json', {
    images: [
      { id: 42, file_name: 'COCO_val2014_000000000042.jpg' },
      { id: 7, file_name: 'COCO_val2014_000000000007.jpg' },
      { id: 8, file_name: 'COCO_val2014_000000000008.jpg' },
    ],
    annotations: [
      { image_id: 7, id: 1, caption: ' A  cat\non a mat. ' },
      { image_id: 42, id: 2, caption: 'A dog.' },
      { image_id: 7, id: 3, caption: 'Another cat.' },
    ],
  });
  const df = loadCocoCaptions(f, { imagesDir: path.join(d, 'val2014') });
  assertSchema(df);
  const rows = frameRows(df);
  assert.deepEqual(
    rows.map((r) => [r.image_id, r.caption]),
    [
      ['42', 'A dog.'],
      ['7', 'A cat on a mat.'],
      ['7', 'Another cat.'],
    ],
  );
  assert.equal(rows[0].file, path.join(d, 'val2014', 'COCO_val2014_000000000042.jpg'));
  assert.ok(rows.every((r) => r.split === 'val2014' && r.source === 'coco2014'));
  const df17 = loadCocoCaptions(write(d, 'captions_train2017.json', { images: [{ id: 1, file_name: 'a.jpg' }], annotations: [{ image_id: 1, caption: 'x' }] }), { imagesDir: d });
  assert.deepEqual(frameRows(df17).map((r) => [r.split, r.source]), [['train2017', 'coco2017']]);
});

test('malformed COCO json: the error names the file, the entry and the problem', () => {
  const d = tmpDir('coco-bad');
  const cases: [object | string, RegExp][] = [
    ['{"images": [', /captions_val2014\.json: line 1 column \d+: not valid JSON/],
    ['', /the file is empty/],
    [{ images: [] }, /top level: "annotations" is missing/],
    [{ images: [{ id: 1 }], annotations: [] }, /images\[0\]: "file_name" is missing/],
    [{ images: [{ id: 1, file_name: 'a.jpg' }], annotations: [{ image_id: 2, caption: 'x' }] }, /annotations\[0\]: image_id 2 is not in "images"/],
    [{ images: [{ id: 1, file_name: 'a.jpg' }], annotations: [{ image_id: 1 }, { image_id: 1, caption: 3 }] }, /annotations\[0\]: "caption" is missing/],
    [{ images: [{ id: 1, file_name: 'a.jpg' }, { id: 1, file_name: 'b.jpg' }], annotations: [] }, /images\[1\]: image id 1 appears twice/],
  ];
  for (const [content, re] of cases) {
    const f = write(d, 'captions_val2014.json', content);
    assert.throws(() => loadCocoCaptions(f, { imagesDir: d }), (e: Error) => {
      assert.match(e.message, re);
      assert.ok(e.message.includes(f), e.message);
      return true;
    });
  }
  assert.throws(() => loadCocoCaptions(path.join(d, 'nope.json'), { imagesDir: d }), /nope\.json: file not found/);
});

test('Karpathy split json: cocoid ids, photo paths from filepath/filename, native splits', () => {
  const d = tmpDir('karpathy');
  const f = write(d, 'dataset_coco.json', karpathyCoco({ train: 2, restval: 1, val: 1, test: 1 }));
  const df = loadKarpathySplit(f, { imagesRoot: path.join(d, 'images') });
  assertSchema(df);
  const groups = groupImages(frameColumns(df));
  assert.deepEqual(
    groups.map((g) => [g.image_id, g.split, g.captions.length]),
    [
      ['100', 'train', 5],
      ['101', 'train', 5],
      ['102', 'restval', 5 + 1],
      ['103', 'val', 5],
      ['104', 'test', 5],
    ],
  );
  assert.equal(groups[3].file, path.join(d, 'images', 'val2014', 'COCO_val2014_000000000103.jpg'));
  assert.ok(groups.every((g) => g.source === 'coco2014'));

  // Flickr30k flavour: no filepath, no cocoid, id = file stem.
  const f30 = write(d, 'dataset_flickr30k.json', { dataset: 'flickr30k', images: [{ filename: '1000092795.jpg', imgid: 0, split: 'train', sentences: [{ raw: 'Two men .' }] }] });
  assert.deepEqual(frameRows(loadKarpathySplit(f30, { imagesRoot: d })), [
    { image_id: '1000092795', file: path.join(d, '1000092795.jpg'), split: 'train', caption: 'Two men .', source: 'flickr30k' },
  ]);

  const bad: [object, RegExp][] = [
    [{ images: [] }, /top level: "dataset" is missing: cannot tell the source/],
    [{ dataset: 'coco', images: {} }, /"images" is an object, not an array/],
    [{ dataset: 'coco', images: [{ filename: 'a.jpg', split: 'train', sentences: [] }] }, /images\[0\]: "cocoid" is missing/],
    [{ dataset: 'coco', images: [{ filename: 'a.jpg', split: 'train', cocoid: 1, sentences: [{ raw: 'x' }, { tokens: [] }] }] }, /images\[0\]\.sentences\[1\]: "raw" is missing/],
  ];
  for (const [content, re] of bad) {
    const g = write(d, 'dataset_bad.json', content);
    assert.throws(() => loadKarpathySplit(g, { imagesRoot: d }), (e: Error) => re.test(e.message) && e.message.includes(g));
  }
});

test('coco-mini captions.json', async () => {
  const m = await makeMirror({ val: 3, train: 2, flickr: 1 });
  const df = loadCocoMini(path.join(m.root, 'coco-mini'));
  assertSchema(df);
  assert.equal(df.height, 5 * 5);
  const g = groupImages(frameColumns(df));
  assert.deepEqual(
    g.map((x) => x.split),
    ['val2017', 'val2017', 'val2017', 'train2017', 'train2017'],
  );
  assert.equal(g[0].file, path.join(m.root, 'coco-mini', 'images', cocoName(m.cocoIds.val[0])));
  assert.equal(g[0].captions[0], `coco ${m.cocoIds.val[0]} caption 0`); // trailing space trimmed
  const f = path.join(m.root, 'coco-mini', 'captions.json');
  fs.writeFileSync(f, JSON.stringify({ images: [{ image_id: 1, file_name: 'a.jpg', split: 'val2017', captions: ['ok', null] }] }));
  assert.throws(() => loadCocoMini(path.join(m.root, 'coco-mini')), /captions\.json: images\[0\]\.captions\[1\]: is null, expected a string/);
});

test('CSV lines: quotes, doubled quotes, commas inside quotes; bad quoting is an error', () => {
  assert.deepEqual(parseCsvLine('a.jpg,A dog runs .'), ['a.jpg', 'A dog runs .']);
  assert.deepEqual(parseCsvLine('a.jpg,"A dog , a ""ball"" ."'), ['a.jpg', 'A dog , a "ball" .']);
  assert.deepEqual(parseCsvLine('a.jpg,'), ['a.jpg', '']);
  assert.deepEqual(parseCsvLine('a,b,c'), ['a', 'b', 'c']);
  assert.throws(() => parseCsvLine('a.jpg,"unterminated'), /unterminated quoted field/);
  assert.throws(() => parseCsvLine('a.jpg,"x"y'), /after a closing quote/);
  assert.throws(() => parseCsvLine('a.jpg,say "hi"'), /stray quote/);
});

test('Flickr8k captions.txt with its split files (dev -> val, unlisted -> none)', async () => {
  const m = await makeMirror({ val: 1, train: 1, flickr: 4 });
  const dir = path.join(m.root, 'flickr8k-mini');
  const df = loadFlickr8k(dir, { source: 'flickr8k-mini' });
  assertSchema(df);
  assert.equal(df.height, (4 + 2) * 5);
  const g = groupImages(frameColumns(df));
  assert.deepEqual(
    g.map((x) => [x.image_id, x.split]),
    [
      [m.flickrWithPhoto[0], 'train'],
      [m.flickrWithPhoto[1], 'train'],
      [m.flickrWithPhoto[2], 'val'],
      [m.flickrWithPhoto[3], 'val'],
      [m.flickrNoPhoto[0], 'test'],
      [m.flickrNoPhoto[1], 'none'],
    ],
  );
  assert.equal(g[0].captions[1], `A dog , with a "ball" ${m.flickrWithPhoto[0]} 1 .`);
  assert.equal(g[0].file, path.join(dir, 'images', `${m.flickrWithPhoto[0]}.jpg`));
  assert.ok(g.every((x) => x.source === 'flickr8k-mini'));
  // Only the photos on disk, through the mirror loader.
  const present = loadMirrorDataset(mirrorLayout(m.root), 'flickr8k-mini');
  assert.deepEqual(
    [...new Set(frameColumns(present).image_id)],
    m.flickrWithPhoto,
  );
});

test('malformed Flickr8k files: the error names the file and the line', () => {
  const d = tmpDir('f8k-bad');
  const cases: [string, RegExp][] = [
    ['image;caption\na.jpg,x\n', /captions\.txt: line 1: header is "image;caption", expected "image,caption"/],
    ['image,caption\na.jpg,ok\nb.jpg,"unterminated\n', /captions\.txt: line 3: unterminated quoted field/],
    ['image,caption\na.jpg,ok\n\nb.jpg,x,y\n', /captions\.txt: line 4: 3 fields, expected 2/],
    ['image,caption\nnot an image,ok\n', /captions\.txt: line 2: "not an image" is not an image file name/],
    ['image,caption\na.jpg,   \n', /captions\.txt: line 2: empty caption/],
    ['image,caption\r\na.jpg,no comma here\r\nb.jpg\r\n', /captions\.txt: line 3: 1 fields, expected 2/],
  ];
  for (const [content, re] of cases) {
    write(d, 'captions.txt', content);
    assert.throws(() => loadFlickr8k(d), re);
  }
  write(d, 'captions.txt', 'image,caption\na.jpg,ok\n');
  write(d, 'Flickr_8k.trainImages.txt', 'a.jpg\nb.jpg\n');
  write(d, 'Flickr_8k.devImages.txt', 'c.jpg\na.jpg\n');
  assert.throws(() => loadFlickr8k(d), /Flickr_8k\.devImages\.txt: a\.jpg is also in the train split/);
  write(d, 'Flickr_8k.devImages.txt', 'c.jpg\n\nsome words\n');
  assert.throws(() => loadFlickr8k(d), /Flickr_8k\.devImages\.txt: line 3: "some words" is not an image file name/);
  fs.rmSync(path.join(d, 'captions.txt'));
  assert.throws(() => loadFlickr8k(d), /captions\.txt: file not found/);
});

test('Flickr30k caption json ({file: {comments}}): split from the name; malformed entries named', () => {
  const d = tmpDir('f30k');
  const f = write(d, 'flickr30k_ann_test.json', { '36979.jpg': { comments: ['A man .', ' Two  men . '] } });
  assert.deepEqual(frameRows(loadFlickr30kCaptions(f, { imagesDir: path.join(d, 'img') })), [
    { image_id: '36979', file: path.join(d, 'img', '36979.jpg'), split: 'test', caption: 'A man .', source: 'flickr30k' },
    { image_id: '36979', file: path.join(d, 'img', '36979.jpg'), split: 'test', caption: 'Two men .', source: 'flickr30k' },
  ]);
  write(d, 'flickr30k_ann_test.json', { '1.jpg': { comments: ['ok'] }, '2.jpg': { captions: ['wrong key'] } });
  assert.throws(() => loadFlickr30kCaptions(f, { imagesDir: d }), /flickr30k_ann_test\.json: entry "2\.jpg": "comments" is missing/);
  write(d, 'flickr30k_ann_test.json', ['not', 'an', 'object']);
  assert.throws(() => loadFlickr30kCaptions(f, { imagesDir: d }), /top level: expected an object, found an array/);
});

test('mirror check names what is missing and the fix; image index keeps COCO and Flickr ids apart', async () => {
  const m = await makeMirror({ val: 2, train: 1, flickr: 2 });
  assert.throws(() => checkMirror(path.join(m.root, 'nope'), ['coco-mini']), /data mirror .*nope does not exist: set CLIPCAP_DATA_DIR/);
  fs.rmSync(path.join(m.root, 'flickr8k-mini', 'captions.txt'));
  assert.throws(() => checkMirror(m.root, ['coco-mini', 'flickr8k-mini']), /lacks flickr8k-mini\/captions\.txt: set CLIPCAP_DATA_DIR/);
  checkMirror(m.root, ['coco-mini']);
  const idx = mirrorImageIndex(m.root);
  assert.equal(idx.coco.get(String(m.cocoIds.val[0])), path.join(m.root, 'coco-mini', 'images', cocoName(m.cocoIds.val[0])));
  assert.equal(idx.coco.size, 3);
  assert.equal(idx.flickr.get(m.flickrWithPhoto[1]), path.join(m.root, 'flickr8k-mini', 'images', `${m.flickrWithPhoto[1]}.jpg`));
  assert.equal(idx.flickr.size, 2);
});

test('caption cleaning and the normalised matching key', () => {
  assert.equal(cleanCaption('  A dog\n runs .  '), 'A dog runs .');
  assert.equal(normaliseCaption('A dog runs .'), normaliseCaption('a dog runs.'));
  assert.equal(normaliseCaption("A man's hat, red!"), 'a man s hat red');
  assert.notEqual(normaliseCaption('a dog runs'), normaliseCaption('a dog sits'));
});

test('ids must be unique across sources', () => {
  const df = captionFrame([
    { image_id: '5', file: '/a/5.jpg', split: 'x', caption: 'one', source: 'coco-mini' },
    { image_id: '5', file: '/b/5.jpg', split: 'x', caption: 'two', source: 'flickr30k' },
  ]);
  assert.throws(() => groupImages(frameColumns(df)), /image_id "5" names two photos \(coco-mini: \/a\/5\.jpg and flickr30k: \/b\/5\.jpg\)/);
});

const SHARED = path.resolve(__dirname, '..', '..', 'shared', 'data');
test('the real mirror loads (when ../shared/data is here)', { skip: !fs.existsSync(SHARED) }, () => {
  const m = checkMirror(SHARED, ['coco-mini', 'flickr8k-mini']);
  const coco = loadMirrorDataset(m, 'coco-mini');
  const g = groupImages(frameColumns(coco));
  assert.equal(g.length, fs.readdirSync(m.cocoMini.images).length);
  assert.ok(g.every((x) => x.captions.length >= 5));
  const all8k = loadFlickr8k(m.flickr8kMini.dir, { source: 'flickr8k-mini' });
  const lines = fs.readFileSync(m.flickr8kMini.captions, 'utf8').split('\n').filter((l) => l.trim()).length - 1;
  assert.equal(all8k.height, lines);
  const f8k = loadMirrorDataset(m, 'flickr8k-mini');
  assert.equal(new Set(frameColumns(f8k).image_id).size, fs.readdirSync(m.flickr8kMini.images).length);
});
