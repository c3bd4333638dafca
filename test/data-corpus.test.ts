import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { profileConfig } from '../src/lib/config';
import {
  buildCaptionCorpus,
  buildSubsets,
  captionCorpusForProfile,
  exclusionsFrom,
  captionFrame,
  frameColumns,
  normaliseCaption,
  flickrPhotoId,
} from '../src/lib/data';
import { makeMirror, tmpRoot } from './helpers/data-fixtures';

test('corpus: training captions and text corpora; validation, test and evaluation photos kept out by id and by text, deduplicated, counted', async () => {
  const m = await makeMirror({ val: 4, train: 2, flickr: 3 });
  const evalId = m.cocoIds.val[0];
  // An evaluation set: one COCO photo, one Flickr8k photo; plus a caption text that also appears elsewhere.
  const evalDf = captionFrame([
    ...[0, 1, 2, 3, 4].map((k) => ({ image_id: String(evalId), file: '/x.jpg', split: 'eval', caption: `coco ${evalId} caption ${k}`, source: 'coco-mini' })),
    { image_id: m.flickrWithPhoto[2], file: '/y.jpg', split: 'eval', caption: 'Someone on a horse!', source: 'flickr8k-mini' },
  ]);
  const ex = exclusionsFrom(evalDf);
  assert.deepEqual([...ex.cocoIds], [String(evalId)]);
  assert.deepEqual([...ex.flickrIds], [flickrPhotoId(m.flickrWithPhoto[2])]);
  const c = buildCaptionCorpus({ mirror: m.root, exclude: ex });
  const by = Object.fromEntries(c.counts.map((x) => [x.source, x]));
  assert.deepEqual(Object.keys(by), ['coco-val2017', 'coco-mini', 'flickr8k', 'flickr30k']);
  // coco-val2017: 4 val photos + 3 extra, 5 captions each; the eval photo's 5 dropped by id
  assert.deepEqual(by['coco-val2017'], { source: 'coco-val2017', read: 35, evalImage: 5, evalText: 0, duplicate: 0, kept: 30 });
  // coco-mini: its train2017 photos only (2 x 5)
  assert.deepEqual(by['coco-mini'], { source: 'coco-mini', read: 10, evalImage: 0, evalText: 0, duplicate: 0, kept: 10 });
  // flickr8k: the standard train split only (1 photo; the 2 dev photos, the test and the unsplit photo are not read)
  assert.deepEqual(by['flickr8k'], { source: 'flickr8k', read: 5, evalImage: 0, evalText: 0, duplicate: 0, kept: 5 });
  // flickr30k: "Someone on a horse ." equals an eval caption once normalised; one caption repeats flickr8k
  assert.deepEqual(by['flickr30k'], { source: 'flickr30k', read: 4, evalImage: 0, evalText: 1, duplicate: 1, kept: 2 });
  assert.equal(c.records.length, 30 + 10 + 5 + 2);
  // each caption names its photo: 5 captions to a photo in coco-val2017 (6 photos kept)
  const groups = new Map<string, number>();
  for (const r of c.records) groups.set(r.group, (groups.get(r.group) ?? 0) + 1);
  assert.deepEqual([...groups].filter(([g]) => g.startsWith('coco-val2017:')).map(([, n]) => n), [5, 5, 5, 5, 5, 5]);
  assert.ok(c.records.every((r) => r.group.startsWith(`${r.source}:`) && r.group.length > r.source.length + 1));
  const texts = c.records.map((r) => normaliseCaption(r.text));
  assert.equal(new Set(texts).size, texts.length, 'no duplicates');
  for (const e of frameColumns(evalDf).caption) assert.ok(!texts.includes(normaliseCaption(e)), e);
  assert.ok(!c.records.some((r) => r.text.includes(m.flickrWithPhoto[2])));
  assert.ok(c.records.some((r) => r.text === 'A cat sleeps .' && r.source === 'flickr30k'));
  assert.equal(c.inputs.length, 5);
  // no caption of a dev or test photo of the standard split
  const heldOut = [...m.flickrWithPhoto.slice(1), ...m.flickrNoPhoto];
  assert.ok(!c.records.some((r) => heldOut.some((h) => r.text.includes(h))));
  // kept out: the 2 eval photos and the 3 dev / test photos (one of them also an eval photo here); 6 + 15 captions
  assert.deepEqual(c.excluded, { images: 4, captions: 21 });

  // text-corpus is optional
  fs.rmSync(path.join(m.root, 'text-corpus'), { recursive: true });
  assert.deepEqual(
    buildCaptionCorpus({ mirror: m.root, exclude: ex }).counts.map((x) => x.source),
    ['coco-val2017', 'coco-mini', 'flickr8k'],
  );
  // a malformed source is one clear error
  fs.writeFileSync(path.join(m.root, 'coco-mini', 'captions_val2017.json'), '{"images": [], "annotations": [{"image_id": 5, "caption": "x"}]}');
  assert.throws(() => buildCaptionCorpus({ mirror: m.root, exclude: ex }), /captions_val2017\.json: annotations\[0\]: image_id 5 is not in "images"/);
});

test('corpus for a profile: offline keeps its val and eval subsets out; smoke uses its train captions; no subsets is a clear error', async () => {
  const m = await makeMirror({ val: 6, train: 2, flickr: 3 });
  const root = tmpRoot();
  const env = { CLIPCAP_DATA_DIR: m.root };
  const cfg = profileConfig('offline');
  cfg.data.evalImages = 3;
  assert.throws(() => captionCorpusForProfile(cfg, { root, env }), /no subsets in .*offline.subsets: run notebook 01_data_subset first \(npx tsx scripts\/run-notebooks\.ts --profile offline --only 01\)/);
  const s = await buildSubsets(cfg, { root, env });
  const c = captionCorpusForProfile(cfg, { root, env });
  const evalCaps = new Set(frameColumns(s.eval).caption.map(normaliseCaption));
  assert.equal(evalCaps.size, 15);
  assert.ok(c.records.every((r) => !evalCaps.has(normaliseCaption(r.text))));
  assert.equal(c.counts.find((x) => x.source === 'coco-val2017')!.evalImage, 15);
  // 3 eval photos (COCO val2017), the 2 dev photos (the val subset) and the test photo without a file
  assert.equal(c.excluded.images, 6);
  const valCaps = frameColumns(s.val).caption.map(normaliseCaption);
  assert.ok(valCaps.length > 0 && c.records.every((r) => !valCaps.includes(normaliseCaption(r.text))));
  // every train caption is in the corpus
  const texts = new Set(c.records.map((r) => normaliseCaption(r.text)));
  for (const t of frameColumns(s.train).caption) assert.ok(texts.has(normaliseCaption(t)), t);

  const smoke = profileConfig('smoke');
  const ss = await buildSubsets(smoke, { root });
  const sc = captionCorpusForProfile(smoke, { root });
  assert.deepEqual(
    sc.counts.map((x) => [x.source, x.read]),
    [['smoke-train', ss.train.height]],
  );
  const smokeEval = new Set(frameColumns(ss.eval).caption.map(normaliseCaption));
  assert.ok(sc.records.every((r) => !smokeEval.has(normaliseCaption(r.text))));
  assert.equal(sc.excluded.images, smoke.data.evalImages + new Set(frameColumns(ss.val).image_id).size);
});
