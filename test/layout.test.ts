// The layout of src/lib (see src/lib/README.md): folders follow the pipeline, imports point down it,
// and there is no import cycle between files.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';

const libDir = path.resolve(__dirname, '..', 'src', 'lib');
/** The pipeline order of src/lib's top-level entries; an entry may import only entries before it. */
const ORDER = ['settings', 'paths', 'machine', 'config', 'estimate', 'profile', 'validate', 'util', 'tfjs', 'io', 'data', 'embed', 'model', 'run', 'train', 'eval', 'notebook'];

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tsFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** file -> the src/lib files it imports (type-only imports included: they tie concepts together too). */
function importGraph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of tsFiles(libDir)) {
    const deps: string[] = [];
    for (const m of fs.readFileSync(f, 'utf8').matchAll(/(?:from|import\(|require\()\s*'(\.{1,2}\/[^']+)'/g)) {
      const base = path.resolve(path.dirname(f), m[1]);
      if (fs.existsSync(base + '.ts')) deps.push(base + '.ts');
    }
    g.set(f, deps);
  }
  return g;
}

const top = (f: string) => path.relative(libDir, f).split(path.sep)[0].replace(/\.ts$/, '');

test('every top-level entry of src/lib has its place in the pipeline order', () => {
  const entries = fs.readdirSync(libDir).filter((e) => e !== 'README.md').map((e) => e.replace(/\.ts$/, ''));
  assert.deepEqual(entries.filter((e) => !ORDER.includes(e)), []);
});

test('src/lib folders import only the stages before them', () => {
  const bad: string[] = [];
  for (const [f, deps] of importGraph()) {
    for (const d of deps) {
      const a = ORDER.indexOf(top(f));
      const b = ORDER.indexOf(top(d));
      if (a !== b && b > a) bad.push(`${path.relative(libDir, f)} imports ${path.relative(libDir, d)}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('no import cycle between src/lib files', () => {
  const g = importGraph();
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, stack: string[]) => {
    state.set(f, 'open');
    for (const d of g.get(f) ?? []) {
      if (state.get(d) === 'open') cycles.push([...stack.slice(stack.indexOf(d)), d].map((x) => path.relative(libDir, x)).join(' -> '));
      else if (!state.has(d)) visit(d, [...stack, d]);
    }
    state.set(f, 'done');
  };
  for (const f of g.keys()) if (!state.has(f)) visit(f, [f]);
  assert.deepEqual(cycles, []);
});
