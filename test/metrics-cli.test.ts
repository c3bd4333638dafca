// `clipcap score` through the real command line (node bin/clipcap.js score ...).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFile } from 'child_process';

const ROOT = path.resolve(__dirname, '..');
const ex = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'metrics', 'clipscore-example.json'), 'utf8'));

function clipcap(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'bin', 'clipcap.js'), 'score', ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-score-'));
const write = (name: string, data: unknown) => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, typeof data === 'string' ? data : JSON.stringify(data));
  return f;
};
// The clipscore example in COCO formats: numeric ids, an extra annotated image without a result.
const ids: Record<string, number> = { image1: 11, image2: 12 };
const annotations = write('annotations.json', {
  images: [{ id: 11 }, { id: 12 }, { id: 13 }],
  annotations: [
    ...Object.entries(ex.refs as Record<string, string[]>).flatMap(([k, refs]) => refs.map((caption) => ({ image_id: ids[k], caption }))),
    { image_id: 13, caption: 'an unrelated photo' },
  ],
});
const results = (set: string) => Object.entries(ex.candidates[set] as Record<string, string>).map(([k, caption]) => ({ image_id: ids[k], caption }));
const good = write('good.json', results('good'));
const bad = write('bad.json', results('bad'));

test('--json prints the toolkit keys with the toolkit values', async () => {
  const [g, b] = await Promise.all([clipcap(['--results', good, '--annotations', annotations, '--json']), clipcap(['--annotations', annotations, '--results', bad, '--json'])]);
  for (const [r, set] of [[g, 'good'], [b, 'bad']] as const) {
    assert.equal(r.code, 0, r.stderr);
    const obj = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(obj), ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'ROUGE_L', 'CIDEr']);
    for (const [k, v] of Object.entries(obj)) assert.ok(Math.abs((v as number) - ex.toolkit[set][k]) < 1e-9, `${set} ${k}: ${v} vs ${ex.toolkit[set][k]}`);
  }
});

test('table output and the note about annotated images without a result', async () => {
  const r = await clipcap(['--results', good, '--annotations', annotations]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /CIDEr\s+0\.5637/);
  assert.match(r.stdout, /Bleu_1\s+0\.6667/);
  assert.match(r.stdout, /2 image\(s\) scored; 1 annotated image\(s\) without a result left out/);
});

test('clear errors: malformed files, duplicates, ids missing from the annotations, usage', async () => {
  const cases: [string[], RegExp, number][] = [
    [['--results', write('broken.json', '[{"image_id": 11,'), '--annotations', annotations], /broken\.json \(--results\) is not valid JSON/, 1],
    [['--results', write('obj.json', { image_id: 11, caption: 'x' }), '--annotations', annotations], /obj\.json \(--results\) must be a JSON array/, 1],
    [['--results', write('nocap.json', [{ image_id: 11, caption: 'a' }, { image_id: 12 }]), '--annotations', annotations], /nocap\.json \(--results\) entry 1: "caption" must be a string/, 1],
    [['--results', write('dup.json', [{ image_id: 11, caption: 'a' }, { image_id: 12, caption: 'b' }, { image_id: 11, caption: 'c' }]), '--annotations', annotations], /image_id 11 appears more than once \(entries 0 and 2\)/, 1],
    [['--results', write('missing.json', [{ image_id: 11, caption: 'a' }, { image_id: 99, caption: 'b' }, { image_id: '12', caption: 'c' }]), '--annotations', annotations], /2 of 3 image_id\(s\) in .*missing\.json have no reference captions in .*annotations\.json, e\.g\. 99, "12" \(ids differ in type/, 1],
    [['--results', good, '--annotations', write('anns.json', [{ image_id: 11, caption: 'x' }])], /anns\.json \(--annotations\) must be a COCO captions file: an object with an "annotations" array/, 1],
    [['--results', good, '--annotations', write('badann.json', { annotations: [{ image_id: 11, caption: 5 }] })], /badann\.json \(--annotations\) annotations\[0\]: "caption" must be a string, got number 5/, 1],
    [['--results', path.join(dir, 'nope.json'), '--annotations', annotations], /cannot read the --results file .*nope\.json: ENOENT/, 1],
    [['--results', good], /both --results and --annotations are required/, 2],
  ];
  const out = await Promise.all(cases.map(([args]) => clipcap(args)));
  out.forEach((r, i) => {
    assert.equal(r.code, cases[i][2], `case ${i}: ${r.stderr}`);
    assert.match(r.stderr, cases[i][1], `case ${i}`);
    assert.equal(r.stdout, '', `case ${i} prints nothing on stdout`);
  });
});
