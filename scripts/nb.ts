// Notebook authoring helper: convert between .ipynb (tslab kernel) and a plain "percent" script.
//
//   tsx scripts/nb.ts to-ipynb notebooks/src.ts notebooks/01_x.ipynb   (script -> notebook)
//   tsx scripts/nb.ts to-percent notebooks/01_x.ipynb                  (notebook -> script on stdout)
//
// Percent format: a line `// %%` starts a code cell, `// %% [markdown]` a markdown cell whose lines
// are written as `// text`. The .ipynb files in notebooks/ are the source of truth; this tool only
// makes editing and reviewing them easier. Outputs are never written into notebooks/.
import * as fs from 'fs';

interface Cell {
  cell_type: 'code' | 'markdown';
  metadata: Record<string, unknown>;
  source: string[];
  outputs?: unknown[];
  execution_count?: number | null;
}

function splitSource(text: string): string[] {
  const lines = text.split('\n');
  return lines.map((l, i) => (i < lines.length - 1 ? l + '\n' : l)).filter((l, i, a) => !(i === a.length - 1 && l === ''));
}

export function percentToNotebook(script: string): object {
  const cells: Cell[] = [];
  let cur: { type: 'code' | 'markdown'; lines: string[] } | null = null;
  const flush = () => {
    if (!cur) return;
    while (cur.lines.length && cur.lines[cur.lines.length - 1].trim() === '') cur.lines.pop();
    while (cur.lines.length && cur.lines[0].trim() === '') cur.lines.shift();
    const text = cur.lines.join('\n');
    if (cur.type === 'markdown') cells.push({ cell_type: 'markdown', metadata: {}, source: splitSource(text) });
    else cells.push({ cell_type: 'code', metadata: {}, source: splitSource(text), outputs: [], execution_count: null });
  };
  for (const line of script.split('\n')) {
    const m = /^\/\/ %%( \[markdown\])?\s*$/.exec(line);
    if (m) {
      flush();
      cur = { type: m[1] ? 'markdown' : 'code', lines: [] };
      continue;
    }
    if (!cur) cur = { type: 'code', lines: [] };
    cur.lines.push(cur.type === 'markdown' ? line.replace(/^\/\/ ?/, '') : line);
  }
  flush();
  return {
    cells,
    metadata: {
      kernelspec: { display_name: 'TypeScript', language: 'typescript', name: 'tslab' },
      language_info: { codemirror_mode: { mode: 'typescript', name: 'javascript', typescript: true }, file_extension: '.ts', mimetype: 'text/typescript', name: 'typescript', version: '5.0.4' },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

export function notebookToPercent(nb: { cells: Cell[] }): string {
  const out: string[] = [];
  for (const c of nb.cells) {
    const src = c.source.join('');
    if (c.cell_type === 'markdown') out.push('// %% [markdown]', ...src.split('\n').map((l) => (l ? `// ${l}` : '//')));
    else out.push('// %%', src);
    out.push('');
  }
  return out.join('\n');
}

function main(): void {
  const [cmd, a, b] = process.argv.slice(2);
  if (cmd === 'to-ipynb' && a && b) {
    const nb = percentToNotebook(fs.readFileSync(a, 'utf8')) as { cells: unknown[] };
    (nb.cells as { id?: string }[]).forEach((c, i) => (c.id = `cell-${i}`));
    fs.writeFileSync(b, JSON.stringify(nb, null, 1) + '\n');
  } else if (cmd === 'to-percent' && a) {
    process.stdout.write(notebookToPercent(JSON.parse(fs.readFileSync(a, 'utf8'))));
  } else {
    console.error('usage: nb.ts to-ipynb SCRIPT.ts OUT.ipynb | to-percent NOTEBOOK.ipynb');
    process.exit(2);
  }
}

if (require.main === module) main();
