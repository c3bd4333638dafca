import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { concurrentSeconds } from '../src/lib/estimate';
import { linePrefixer, notebookKey, notebookStages, overlapGroups, runConcurrently, stageEnv, wallClockSeconds } from '../src/lib/notebook/schedule';

const BOOKS = ['01_data_subset.ipynb', '02_extract_embeddings.ipynb', '02b_pretrain_lm.ipynb', '03_train_mlp_finetune.ipynb', '04_train_transformer_frozen.ipynb', '05_plot_losses.ipynb', '06_evaluate.ipynb'];

test('extraction and LM pretraining share a stage, and so do the two trainings, when running concurrently; everything else runs in turn', () => {
  assert.equal(notebookKey('02b_pretrain_lm.ipynb'), '02b');
  assert.equal(notebookKey('03_train_mlp_finetune.ipynb'), '03');
  assert.deepEqual(notebookStages(BOOKS, true), [[BOOKS[0]], [BOOKS[1], BOOKS[2]], [BOOKS[3], BOOKS[4]], [BOOKS[5]], [BOOKS[6]]]);
  assert.deepEqual(notebookStages(BOOKS, false), BOOKS.map((b) => [b]));
  // --only / --from selections
  assert.deepEqual(notebookStages(BOOKS.slice(3), true), [[BOOKS[3], BOOKS[4]], [BOOKS[5]], [BOOKS[6]]]);
  assert.deepEqual(notebookStages([BOOKS[4]], true), [[BOOKS[4]]]);
  assert.deepEqual(notebookStages([BOOKS[2], BOOKS[3]], true), [[BOOKS[2]], [BOOKS[3]]], "02b is not in 03's group");
  assert.deepEqual(notebookStages(BOOKS.slice(2), true), [[BOOKS[2]], [BOOKS[3], BOOKS[4]], [BOOKS[5]], [BOOKS[6]]], '--from 02b: 02b alone');
  assert.deepEqual(notebookStages(BOOKS.slice(0, 2), true), [[BOOKS[0]], [BOOKS[1]]], '--until 02: 02 alone');
});

test('CLIPCAP_NOTEBOOKS_CONCURRENT decides, else the number of cores, and never on a GPU', () => {
  assert.equal(runConcurrently({}, 2), true);
  assert.equal(runConcurrently({}, 1), false);
  assert.equal(runConcurrently({}, 16, true), false, 'not on a GPU');
  assert.equal(runConcurrently({ CLIPCAP_NOTEBOOKS_CONCURRENT: '1' }, 16, true), true);
  assert.equal(runConcurrently({ CLIPCAP_NOTEBOOKS_CONCURRENT: '0' }, 16), false);
  assert.equal(runConcurrently({ CLIPCAP_NOTEBOOKS_CONCURRENT: '1' }, 1), true);
  assert.throws(() => runConcurrently({ CLIPCAP_NOTEBOOKS_CONCURRENT: 'yes' }, 2), /must be 0 or 1/);
});

test('wall-clock time counts concurrent notebooks once; old records without startedAt still work', () => {
  const at = (min: number) => new Date(Date.UTC(2026, 11, 6, 12, min)).toISOString();
  const t = {
    a: { seconds: 600, finishedAt: at(10) }, // 12:00-12:10, no startedAt
    b: { seconds: 1200, finishedAt: at(30), startedAt: at(10) }, // 12:10-12:30
    c: { seconds: 900, finishedAt: at(25), startedAt: at(10) }, // 12:10-12:25, with b
    d: { seconds: 60, finishedAt: at(41), startedAt: at(40) }, // after a gap
  };
  assert.equal(wallClockSeconds(Object.values(t)), 600 + 1200 + 60);
  assert.deepEqual(overlapGroups(t), [['b', 'c']]);
  const e = { seconds: 300, finishedAt: at(45), startedAt: at(40) }; // 12:40-12:45, with d
  assert.deepEqual(overlapGroups({ ...t, e }), [['b', 'c'], ['d', 'e']], 'two pairs, each its own group');
  assert.equal(wallClockSeconds([]), 0);
  assert.deepEqual(overlapGroups({ a: t.a, d: t.d }), []);
});

test('line prefixing splits on newlines and carriage returns and keeps partial lines until flushed', () => {
  const out: string[] = [];
  const p = linePrefixer('[03] ', (s) => out.push(s));
  p.push('step 1\rstep');
  p.push(' 2\nhello\n\n');
  p.push('tail');
  assert.deepEqual(out, ['[03] step 1\n', '[03] step 2\n', '[03] hello\n']);
  p.flush();
  assert.deepEqual(out.slice(3), ['[03] tail\n']);
});

test('concurrent jobs: the shorter one slowed while both run, then the longer one alone', () => {
  assert.equal(concurrentSeconds([600, 1000], 1), 1000, 'no slowdown: the longer job');
  assert.equal(concurrentSeconds([600, 1000], 2), 1600, 'twice as slow: no gain over one after the other');
  assert.equal(concurrentSeconds([1000, 600], 1.25), 1.25 * 600 + 400);
  assert.equal(concurrentSeconds([300], 1.5), 300);
  assert.equal(concurrentSeconds([], 1.5), 0);
  assert.throws(() => concurrentSeconds([1, 2], 0.5), /slowdown/);
});

test('notebooks side by side share the cores for training threads, unless the user chose', () => {
  assert.equal(stageEnv({ A: '1' }, 2, 2).CLIPCAP_TRAIN_THREADS, '1');
  assert.equal(stageEnv({}, 2, 8).CLIPCAP_TRAIN_THREADS, '4');
  assert.equal(stageEnv({}, 3, 2).CLIPCAP_TRAIN_THREADS, '1');
  assert.equal(stageEnv({ CLIPCAP_TRAIN_THREADS: '2' }, 2, 2).CLIPCAP_TRAIN_THREADS, '2');
  // alone: the environment as it is (all the cores)
  const env = { A: '1' };
  assert.equal(stageEnv(env, 1, 2), env);
});
