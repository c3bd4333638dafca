import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { centerL2, EmbeddingSet, fitPartMeans } from '../src/lib/embed/embedding-set';
import { EmbeddingStore, INDEX_FILE, mergeStores, ROWS_FILE, type EncoderSignature } from '../src/lib/embed/store';

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-emb-'));
}

const SIG: EncoderSignature = { encoder: 'fake', dim: 4, preprocessing: { size: 8 }, postprocess: { kind: 'none' } };

/** A vector determined by the id, so any row can be checked after the fact. */
function vec(id: string, dim = 4): Float32Array {
  const v = new Float32Array(dim);
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) % 1000;
  for (let i = 0; i < dim; i++) v[i] = h + i / 10;
  return v;
}

test('append, reopen, lookups, rejects and the rerun skip', () => {
  const dir = path.join(tmp(), 'fake', 'ds');
  const w = EmbeddingStore.openForAppend(dir, { ...SIG, dataset: 'ds' });
  assert.deepEqual(w.append([{ id: 'a', vector: vec('a') }, { id: 'b', vector: vec('b') }]), { added: 2, rejected: 0 });
  assert.deepEqual(w.append([{ id: 'b', vector: vec('b') }, { id: 'c', vector: vec('c') }], [{ image_id: 'bad', file: '/x/bad.jpg', reason: 'not an image' }]), {
    added: 1,
    rejected: 1,
  });
  // a second writer is refused while the first holds the lock
  assert.throws(() => EmbeddingStore.openForAppend(dir, { ...SIG, dataset: 'ds' }), /already open|being written/);
  w.close();

  const r = EmbeddingStore.open(dir);
  assert.equal(r.dim, 4);
  assert.deepEqual(r.ids(), ['a', 'b', 'c']);
  assert.ok(r.has('c') && !r.has('bad') && r.isRejected('bad') && r.isDone('bad'));
  assert.deepEqual(r.get('c'), vec('c'));
  assert.deepEqual(r.rejects(), [{ image_id: 'bad', file: '/x/bad.jpg', reason: 'not an image' }]);
  assert.equal(r.meta.rows, 3);
  assert.equal(r.meta.rejects, 1);
  assert.equal(r.meta.encoder, 'fake');
  assert.throws(() => r.get('zzz'), /zzz.*not in the embedding store/);
  assert.throws(() => r.append([{ id: 'd', vector: vec('d') }]), /read-only/);
  // rows.f32 is exactly n * dim float32
  assert.equal(fs.statSync(path.join(dir, ROWS_FILE)).size, 3 * 4 * 4);

  // Reopening with another encoder signature is refused; wrong dims are refused.
  assert.throws(() => EmbeddingStore.openForAppend(dir, { ...SIG, dim: 5, dataset: 'ds' }), /other settings/);
  const w2 = EmbeddingStore.openForAppend(dir, { ...SIG, dataset: 'ds' });
  assert.throws(() => w2.append([{ id: 'e', vector: new Float32Array(3) }]), /has 3 values/);
  assert.throws(() => w2.append([{ id: 'e', vector: new Float32Array([1, NaN, 0, 0]) }]), /non-finite/);
  w2.close();
  assert.throws(() => EmbeddingStore.open(path.join(dir, 'nope')), /no embedding store/);
});

test('a batch half-written by a killed writer is ignored and cut off; stale temp files are removed', () => {
  const dir = tmp();
  const w = EmbeddingStore.openForAppend(dir, { ...SIG, dataset: 'ds' });
  w.append([{ id: 'a', vector: vec('a') }]);
  w.close();
  // Simulate a kill after the rows of the next batch hit the disk but before the index commit,
  // with a stale temp file of an index write and a stale lock of a dead process.
  fs.appendFileSync(path.join(dir, ROWS_FILE), Buffer.alloc(4 * 4 * 2 + 3, 7));
  fs.writeFileSync(path.join(dir, `${INDEX_FILE}.tmp-999999-abc-1`), 'partial');
  fs.writeFileSync(path.join(dir, 'writer.lock'), '999999999\n');
  const r = EmbeddingStore.open(dir);
  assert.deepEqual(r.ids(), ['a']);
  assert.deepEqual(r.get('a'), vec('a'));
  const w2 = EmbeddingStore.openForAppend(dir, { ...SIG, dataset: 'ds' });
  assert.equal(fs.statSync(path.join(dir, ROWS_FILE)).size, 16);
  assert.ok(!fs.readdirSync(dir).some((f) => f.includes('.tmp-')));
  w2.append([{ id: 'b', vector: vec('b') }]);
  w2.close();
  assert.deepEqual(EmbeddingStore.open(dir).get('b'), vec('b'));
  // A store whose rows file lost committed bytes is reported, not misread.
  fs.truncateSync(path.join(dir, ROWS_FILE), 20);
  assert.throws(() => EmbeddingStore.open(dir), /damaged/);
  // A damaged index names the file and the fix, not only the parquet reader's message.
  const dir2 = tmp();
  const w3 = EmbeddingStore.openForAppend(dir2, { ...SIG, dataset: 'ds' });
  w3.append([{ id: 'a', vector: vec('a') }]);
  w3.close();
  fs.writeFileSync(path.join(dir2, INDEX_FILE), 'PAR1 not really parquet');
  assert.throws(() => EmbeddingStore.open(dir2), new RegExp(`the embedding store index .*${INDEX_FILE} is damaged .*rerun the extraction \\(notebook 02\\)`));
});

test('a writer killed with SIGKILL at random moments never corrupts the store, and a rerun completes it', async () => {
  const dir = tmp();
  const script = path.join(tmp(), 'writer.ts');
  const lib = path.resolve(__dirname, '../src/lib/embed/store');
  fs.writeFileSync(
    script,
    `import { EmbeddingStore } from ${JSON.stringify(lib)};
const sig = { encoder: 'fake', dim: 64, preprocessing: {}, postprocess: { kind: 'none' as const }, dataset: 'ds' };
const s = EmbeddingStore.openForAppend(process.argv[2], sig);
for (let b = 0; b < 150; b++) {
  const rows = [];
  for (let k = 0; k < 5; k++) {
    const id = 'img' + (b * 5 + k);
    if (s.has(id)) continue;
    const v = new Float32Array(64).fill(b * 5 + k);
    rows.push({ id, vector: v });
  }
  s.append(rows);
  if (b === 2) process.stdout.write('started\\n');
}
s.close();
`,
  );
  const runOnce = (killAfterMs: number | null) =>
    new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script, dir], { stdio: ['ignore', 'pipe', 'inherit'], cwd: path.resolve(__dirname, '..') });
      child.stdout.on('data', () => {
        if (killAfterMs !== null) setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      });
      child.on('exit', (code) => resolve(code));
    });
  const check = () => {
    const s = EmbeddingStore.open(dir);
    const ids = s.ids();
    ids.forEach((id, i) => {
      assert.equal(id, `img${i}`, 'rows are committed in order with no gaps');
      const v = s.row(i);
      assert.ok(v.every((x) => x === i), `row ${i} holds its own values`);
    });
    return ids.length;
  };
  const counts: number[] = [];
  for (const ms of [5, 40]) {
    await runOnce(ms);
    counts.push(check());
  }
  assert.equal(await runOnce(null), 0);
  assert.equal(check(), 750);
  assert.ok(counts[0] < 750, 'the first run was killed before it finished');
});

test('merging shard stores; sets across datasets; centring fitted on train ids', () => {
  const root = tmp();
  const sig: EncoderSignature = {
    encoder: 'cn',
    dim: 4,
    preprocessing: {},
    postprocess: { kind: 'center-l2', parts: [{ name: 'p', length: 2 }, { name: 'q', length: 2 }] },
  };
  const s0 = EmbeddingStore.openForAppend(path.join(root, 'shards', '0'), { ...sig, dataset: 'ds1' });
  const s1 = EmbeddingStore.openForAppend(path.join(root, 'shards', '1'), { ...sig, dataset: 'ds1' });
  s0.append([{ id: 'a', vector: [1, 2, 3, 4] }, { id: 'b', vector: [3, 2, 1, 0] }], [{ image_id: 'x', file: 'x.jpg', reason: 'bad' }]);
  s1.append([{ id: 'c', vector: [5, 6, 7, 9] }]);
  s0.close();
  s1.close();
  const merged = mergeStores([path.join(root, 'shards', '0'), path.join(root, 'shards', '1')], path.join(root, 'cn', 'ds1'));
  assert.deepEqual(merged.ids().sort(), ['a', 'b', 'c']);
  assert.deepEqual(EmbeddingStore.open(path.join(root, 'cn', 'ds1')).rejects().map((r) => r.image_id), ['x']);
  // merging again adds nothing
  assert.equal(mergeStores([path.join(root, 'shards', '0')], path.join(root, 'cn', 'ds1')).size, 3);
  const s2 = EmbeddingStore.openForAppend(path.join(root, 'cn', 'ds2'), { ...sig, dataset: 'ds2' });
  s2.append([{ id: 'd', vector: [0, 0, 1, 1] }]);
  s2.close();

  const set = EmbeddingSet.open(path.join(root, 'cn'));
  assert.deepEqual([...set.stores.keys()], ['ds1', 'ds2']);
  assert.equal(set.datasetOf('d'), 'ds2');
  assert.deepEqual(set.raw('c'), new Float32Array([5, 6, 7, 9]));
  assert.throws(() => set.get('a'), /centring means/);
  const center = set.fitCentering(['b', 'a', 'nope'])!;
  assert.deepEqual(center.parts.map((p) => p.mean), [[2, 2], [2, 2]]);
  assert.equal(center.fit.images, 2);
  assert.deepEqual(center.fit.datasets, ['ds1']);
  const e = set.get('c'); // (5-2, 6-2)/5 and (7-2, 9-2)/sqrt(74)
  const close = (x: number, y: number) => assert.ok(Math.abs(x - y) < 1e-6, `${x} vs ${y}`);
  close(e[0], 3 / 5);
  close(e[1], 4 / 5);
  close(e[2], 5 / Math.sqrt(74));
  close(e[3], 7 / Math.sqrt(74));
  // centre.json persists and the same ids give the same file contents
  const again = EmbeddingSet.open(path.join(root, 'cn'), ['ds1', 'ds2']);
  assert.deepEqual(again.get('c'), e);
  assert.equal(again.fitCentering(['a', 'b'])!.fit.idsSha256, center.fit.idsSha256);
  assert.equal(again.matrix(['a', 'd']).length, 8);
  assert.throws(() => again.raw('zz'), /zz.*no embedding/);
  // pure helpers
  assert.deepEqual(fitPartMeans([new Float32Array([1, 3]), new Float32Array([3, 5])], [{ name: 'x', length: 2 }]), [[2, 4]]);
  const z = centerL2(new Float32Array([2, 4]), { parts: [{ name: 'x', length: 2, offset: 0, mean: [2, 4] }] });
  assert.deepEqual([...z], [0, 0]);
});

test('ids that appear in two datasets are reported', () => {
  const root = tmp();
  for (const ds of ['x', 'y']) {
    const s = EmbeddingStore.openForAppend(path.join(root, ds), { ...SIG, dataset: ds });
    s.append([{ id: 'same', vector: vec('same') }]);
    s.close();
  }
  assert.throws(() => EmbeddingSet.open(root), /same.*two embedding stores/);
  assert.throws(() => EmbeddingSet.open(path.join(root, 'none')), /no embedding stores/);
});


test('a run records the fingerprint of its embeddings; opening them after they changed is refused', async () => {
  const { openEmbeddingsOfRun } = await import('../src/lib/run/run');
  const root = tmp();
  const w = EmbeddingStore.openForAppend(path.join(root, 'ds'), { ...SIG, dataset: 'ds' });
  w.append([{ id: 'a', vector: vec('a') }]);
  w.close();
  const set = EmbeddingSet.open(root);
  const config = { name: 'r', encoder: { name: 'fake', embeddingsDir: root, dim: 4, fingerprint: set.fingerprint } } as unknown as Parameters<typeof openEmbeddingsOfRun>[0];
  assert.equal(openEmbeddingsOfRun(config).fingerprint, set.fingerprint);
  // extracted again with other encoder settings
  fs.rmSync(path.join(root, 'ds'), { recursive: true });
  const w2 = EmbeddingStore.openForAppend(path.join(root, 'ds'), { ...SIG, preprocessing: { size: 16 }, dataset: 'ds' });
  w2.append([{ id: 'a', vector: vec('a') }]);
  w2.close();
  assert.throws(() => openEmbeddingsOfRun(config), new RegExp(`trained on embeddings ${set.fingerprint} \\(fake\\), but .* now holds [0-9a-f]{16} .*Retrain the run`));
});
