// Static checks of the notebooks and of what they import (tslab compiles src/lib through notebooks/lib).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const libDir = path.join(root, 'src', 'lib');

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tsFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

test('src/lib imports resolve to files, as tslab requires (no directory imports, no import.meta)', () => {
  const problems: string[] = [];
  for (const f of tsFiles(libDir)) {
    const src = fs.readFileSync(f, 'utf8');
    if (/\bimport\.meta\b/.test(src)) problems.push(`${path.relative(root, f)}: uses import.meta`);
    for (const m of src.matchAll(/(?:from|import|require)\s*\(?\s*'(\.{1,2}\/[^']*)'/g)) {
      const spec = m[1];
      const base = path.resolve(path.dirname(f), spec);
      if (fs.existsSync(base + '.ts') || fs.existsSync(base + '.js') || fs.existsSync(base + '.json') || (fs.existsSync(base) && fs.statSync(base).isFile())) continue;
      problems.push(`${path.relative(root, f)}: '${spec}' ${fs.existsSync(base) ? 'is a directory (import its index explicitly)' : 'does not resolve'}`);
    }
  }
  assert.deepEqual(problems, []);
});

test('no src/lib file shadows a bare import of its folder (tslab resolves bare ids beside the importing file first)', () => {
  // tslab's require joins the importing file's folder with the id: `import * as fs from 'fs'` inside
  // src/lib/x/fs.ts would load that file itself, and recurse until the stack overflows.
  const problems: string[] = [];
  for (const f of tsFiles(libDir)) {
    const src = fs.readFileSync(f, 'utf8');
    for (const m of src.matchAll(/(?:from|import|require)\s*\(?\s*'([^'.][^']*)'/g)) {
      const shadow = path.join(path.dirname(f), m[1]);
      if (fs.existsSync(shadow + '.ts') || fs.existsSync(shadow + '.js')) problems.push(`${path.relative(root, f)}: '${m[1]}' is also ${path.relative(root, shadow)}.ts`);
    }
  }
  assert.deepEqual(problems, []);
});

test('notebooks use the tslab kernel, carry no outputs, import from ./lib, and start with a config cell', () => {
  const books = fs.readdirSync(path.join(root, 'notebooks')).filter((f) => f.endsWith('.ipynb'));
  assert.ok(books.length >= 1);
  assert.equal(fs.readlinkSync(path.join(root, 'notebooks', 'lib')), '../src/lib');
  for (const b of books) {
    const nb = JSON.parse(fs.readFileSync(path.join(root, 'notebooks', b), 'utf8'));
    assert.equal(nb.metadata.kernelspec.name, 'tslab', `${b}: kernel`);
    const code = nb.cells.filter((c: { cell_type: string }) => c.cell_type === 'code');
    for (const c of code) {
      assert.deepEqual(c.outputs, [], `${b}: a code cell has committed outputs`);
      const src = (c.source as string[]).join('');
      for (const m of src.matchAll(/from '(\.[^']*)'/g)) assert.match(m[1], /^\.\/lib\//, `${b}: imports ${m[1]} (only ./lib/...)`);
    }
    assert.match((code[0].source as string[]).join(''), /resolveProfile\(\)/, `${b}: the first code cell resolves the profile`);
  }
});

test('first cells name what a reader edits: the settings by name beside the profile, one config view, no state across distant cells', () => {
  const firstCode = (b: string) => {
    const nb = JSON.parse(fs.readFileSync(path.join(root, 'notebooks', b), 'utf8'));
    return (nb.cells.find((c: { cell_type: string }) => c.cell_type === 'code').source as string[]).join('');
  };
  const named: Record<string, string[]> = {
    '01_data_subset.ipynb': ['seed', 'evalImages', 'trainCaptions', 'valCaptions', 'valFraction'],
    '02_extract_embeddings.ipynb': ['kind', 'modelId', 'quantized', 'batchSize', 'workers'],
    '02b_pretrain_lm.ipynb': ['nLayer', 'nEmbd', 'nHead', 'nPositions', 'epochs', 'batchSize', 'lr', 'warmupSteps', 'maxTokens'],
    '03_train_mlp_finetune.ipynb': ['lr', 'lmLrScale', 'epochs', 'batchSize', 'prefixLength', 'warmupSteps', 'gradClip', 'weightDecay', 'microBatchSize', 'maxSteps', 'seed'],
    '04_train_transformer_frozen.ipynb': ['lr', 'epochs', 'batchSize', 'prefixLength', 'clipLength', 'numLayers', 'numHeads', 'warmupSteps', 'gradClip', 'weightDecay', 'microBatchSize', 'maxSteps', 'seed'],
    '06_evaluate.ipynb': ['beam', 'maxNewTokens', 'noRepeatNgram', 'lengthPenalty', 'contrastWeight', 'mbrSamples', 'mbrTemperature', 'mbrContrast', 'retrievalK', 'samples'],
  };
  for (const [b, keys] of Object.entries(named)) {
    const src = firstCode(b);
    for (const k of keys) assert.match(src, new RegExp(`\\n  ${k}: [ap]\\.${k},`), `${b}: the first code cell lists ${k} by name`);
    assert.match(src, /configTable\(/, `${b}: the configuration table comes from notebook/views.ts configTable`);
    assert.doesNotMatch(src, /configRows/, `${b}: one config view helper (configTable)`);
  }
  const evaluate = fs.readFileSync(path.join(root, 'notebooks', '06_evaluate.ipynb'), 'utf8');
  assert.doesNotMatch(evaluate, /started|## Setup/, '06: the evaluation measures its own time and the report module gives the summary');
});
