// Execute the notebooks top to bottom, in order, headless (nbclient with the tslab kernel, through
// scripts/execute_notebook.py, which echoes cell output live and keeps the executed copy on failure).
//
//   tsx scripts/run-notebooks.ts [--profile paper|coco-cpu|offline|smoke] [--from 03] [--only 05] [--timeout S]
//
// The profile is resolved once (CLIPCAP_PROFILE, else data/profile.json, else what the machine can do:
// src/lib/profile.ts) and passed to every
// notebook, and so is CLIPCAP_DATASET (your own dataset). Executed copies (with outputs) go to
// data/<profile>/notebooks/ (your own dataset: data/<profile>/custom/<name>-<hash>/notebooks/); the notebooks in
// notebooks/ stay as they are. A failing cell stops the run with a non-zero exit status.
// Wall times are appended to data/<profile>/notebooks/timings.json (REPORT.md reads them).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { isProfileName, PROFILE_NAMES } from '../src/lib/config';
import { resolveProfile } from '../src/lib/profile';
import { artifactPaths, repoRoot } from '../src/lib/paths';
import { writeJsonAtomic } from '../src/lib/util/files';
import { formatDuration } from '../src/lib/util/progress';

interface Args {
  profile?: string;
  from?: string;
  only?: string;
  timeout: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { timeout: -1 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--profile') (a.profile = v), i++;
    else if (k === '--from') (a.from = v), i++;
    else if (k === '--only') (a.only = v), i++;
    else if (k === '--timeout') (a.timeout = Number(v)), i++;
    else throw new Error(`unknown argument ${k}; usage: run-notebooks [--profile P] [--from NN] [--only NN] [--timeout S]`);
  }
  return a;
}

export interface NotebookTiming {
  notebook: string;
  seconds: number;
  ok: boolean;
  finishedAt: string;
}

/** A Python with nbclient (Jupyter's notebook executor). */
function nbclientPython(): string {
  for (const py of ['/usr/bin/python3', 'python3']) {
    if (spawnSync(py, ['-c', 'import nbclient, nbformat'], { stdio: 'ignore' }).status === 0) return py;
  }
  throw new Error('no Python with nbclient found: run `npm run setup` (installs jupyter-nbconvert, which brings nbclient)');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const root = repoRoot();
  if (args.profile && !isProfileName(args.profile)) throw new Error(`unknown profile "${args.profile}": use ${PROFILE_NAMES.join(', ')}`);
  const env = { ...process.env };
  if (args.profile) env.CLIPCAP_PROFILE = args.profile;
  // Resolved once for the whole run (recorded in data/profile.json when chosen automatically, so that
  // notebooks opened by hand afterwards use the same profile) and passed to every notebook.
  const cfg = await resolveProfile(env);
  const profile = cfg.name;
  env.CLIPCAP_PROFILE = profile;
  env.PATH = `${path.join(root, 'node_modules', '.bin')}${path.delimiter}${env.PATH ?? ''}`;
  const nbDir = path.join(root, 'notebooks');
  let books = fs
    .readdirSync(nbDir)
    .filter((f) => /^\d\d.*\.ipynb$/.test(f))
    .sort();
  if (args.only) books = books.filter((b) => b.startsWith(args.only!));
  if (args.from) books = books.filter((b) => b >= args.from!);
  if (books.length === 0) throw new Error('no notebooks selected');
  const python = nbclientPython();
  // (with CLIPCAP_DATASET, passed on to every notebook, under that dataset's own artifacts)
  const out = artifactPaths(cfg, root).executed;
  fs.mkdirSync(out, { recursive: true });
  const timingsFile = path.join(out, 'timings.json');
  const timings: Record<string, NotebookTiming> = fs.existsSync(timingsFile) ? JSON.parse(fs.readFileSync(timingsFile, 'utf8')) : {};
  console.log(`[notebooks] profile ${profile}: ${books.join(', ')}`);
  const t0 = Date.now();
  for (const b of books) {
    const start = Date.now();
    console.log(`[notebooks] ${b} ...`);
    const r = spawnSync(python, [path.join(root, 'scripts', 'execute_notebook.py'), path.join(nbDir, b), path.join(out, b), '--timeout', String(args.timeout)], {
      env,
      stdio: ['ignore', 'inherit', 'pipe'],
      encoding: 'utf8',
      maxBuffer: 256 * 2 ** 20,
    });
    const seconds = (Date.now() - start) / 1000;
    const ok = r.status === 0;
    timings[b] = { notebook: b, seconds, ok, finishedAt: new Date().toISOString() };
    writeJsonAtomic(timingsFile, timings);
    if (!ok) {
      const tail = (r.stderr ?? '').split('\n').slice(-40).join('\n');
      console.error(tail);
      throw new Error(`${b} failed after ${formatDuration(seconds)} (profile ${profile}); executed copy: ${path.join(out, b)}`);
    }
    console.log(`[notebooks] ${b} done in ${formatDuration(seconds)}`);
  }
  console.log(`[notebooks] all ${books.length} notebooks ran in ${formatDuration((Date.now() - t0) / 1000)} (profile ${profile})`);
}

main().catch((e) => {
  console.error(`[notebooks] ${(e as Error).message}`);
  process.exit(1);
});
