// Execute the notebooks top to bottom, headless (nbclient with the tslab kernel, through
// scripts/execute_notebook.py, which echoes cell output live and keeps the executed copy on failure).
//
//   tsx scripts/run-notebooks.ts [--profile paper|coco-cpu|offline|smoke] [--from 03] [--only 05]
//                                [--timeout S] [--sequential]
//
// The profile is resolved once (CLIPCAP_PROFILE, else data/profile.json, else what the machine can do:
// src/lib/profile.ts) and passed to every notebook. Executed copies (with outputs) go to
// data/<profile>/notebooks/; the notebooks in notebooks/ stay as they are. A failing cell stops the
// run with a non-zero exit status. Start and finish times are recorded in
// data/<profile>/notebooks/timings.json (REPORT.md reads them).
//
// The two trainings (03 and 04) depend on 01, 02 and 02b but not on each other. On a CPU backend
// they run at the same time, one process per core (each with its share of the cores' threads), which
// keeps both cores busy where one training cannot (its element-wise kernels are single-threaded).
// Their output lines are prefixed with the notebook's number. `--sequential` (or
// CLIPCAP_PARALLEL_TRAINING=0) runs them one after the other; the paper profile (a GPU) always does.
import { spawn, spawnSync } from 'child_process';
import * as os from 'os';
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
  sequential: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { timeout: -1, sequential: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--profile') (a.profile = v), i++;
    else if (k === '--from') (a.from = v), i++;
    else if (k === '--only') (a.only = v), i++;
    else if (k === '--timeout') (a.timeout = Number(v)), i++;
    else if (k === '--sequential') a.sequential = true;
    else throw new Error(`unknown argument ${k}; usage: run-notebooks [--profile P] [--from NN] [--only NN] [--timeout S] [--sequential]`);
  }
  return a;
}

export interface NotebookTiming {
  notebook: string;
  seconds: number;
  ok: boolean;
  /** ISO time; with finishedAt, lets REPORT.md add up notebooks that ran at the same time. */
  startedAt?: string;
  finishedAt: string;
}

/** Notebooks that may run at the same time (the two trainings), as consecutive groups of the run. */
export function stages(books: string[], parallel: boolean): string[][] {
  const out: string[][] = [];
  for (const b of books) {
    const last = out[out.length - 1];
    const together = (x: string) => x.startsWith('03') || x.startsWith('04');
    if (parallel && last && together(b) && last.every(together)) last.push(b);
    else out.push([b]);
  }
  return out;
}

interface Outcome {
  ok: boolean;
  seconds: number;
  stderr: string;
}

/** Run one notebook in a child process; lines of its output are prefixed with `tag` when given. */
function execute(python: string, script: string, src: string, dst: string, timeout: number, env: NodeJS.ProcessEnv, tag: string | null): Promise<Outcome> {
  const start = Date.now();
  return new Promise((resolve) => {
    const child = spawn(python, [script, src, dst, '--timeout', String(timeout)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const relay = (stream: NodeJS.ReadableStream, sink: NodeJS.WriteStream, keep: boolean) => {
      let pending = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        if (keep) stderr = (stderr + chunk).slice(-200_000);
        if (!tag) return void sink.write(chunk);
        pending += chunk;
        const lines = pending.split('\n');
        pending = lines.pop()!;
        for (const l of lines) sink.write(`[${tag}] ${l}\n`);
      });
      stream.on('end', () => {
        if (tag && pending) sink.write(`[${tag}] ${pending}\n`);
      });
    };
    relay(child.stdout!, process.stdout, false);
    relay(child.stderr!, process.stderr, true);
    child.on('close', (code) => resolve({ ok: code === 0, seconds: (Date.now() - start) / 1000, stderr }));
  });
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
  const profile = (await resolveProfile(env)).name;
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
  const out = artifactPaths(profile, root).executed;
  fs.mkdirSync(out, { recursive: true });
  const timingsFile = path.join(out, 'timings.json');
  const timings: Record<string, NotebookTiming> = fs.existsSync(timingsFile) ? JSON.parse(fs.readFileSync(timingsFile, 'utf8')) : {};
  const parallel = !args.sequential && env.CLIPCAP_PARALLEL_TRAINING !== '0' && profile !== 'paper' && os.cpus().length >= 2;
  const groups = stages(books, parallel);
  console.log(`[notebooks] profile ${profile}: ${groups.map((g) => g.join(' + ')).join(', ')}`);
  const t0 = Date.now();
  for (const group of groups) {
    const startedAt = new Date().toISOString();
    // notebooks side by side share the cores: each gets its part of onnxruntime's threads
    const share = Math.max(1, Math.floor(os.cpus().length / group.length));
    const runEnv = group.length > 1 ? { ...env, CLIPCAP_ORT_THREADS: env.CLIPCAP_ORT_THREADS ?? String(share) } : env;
    if (group.length > 1) console.log(`[notebooks] ${group.join(' and ')} side by side (${share} onnxruntime thread(s) each) ...`);
    else console.log(`[notebooks] ${group[0]} ...`);
    const outcomes = await Promise.all(
      group.map((b) => execute(python, path.join(root, 'scripts', 'execute_notebook.py'), path.join(nbDir, b), path.join(out, b), args.timeout, runEnv, group.length > 1 ? b.slice(0, 2) : null)),
    );
    const failed: string[] = [];
    group.forEach((b, k) => {
      const r = outcomes[k];
      timings[b] = { notebook: b, seconds: r.seconds, ok: r.ok, startedAt, finishedAt: new Date(Date.parse(startedAt) + r.seconds * 1000).toISOString() };
      if (!r.ok) {
        console.error(r.stderr.split('\n').slice(-40).join('\n'));
        failed.push(`${b} failed after ${formatDuration(r.seconds)} (profile ${profile}); executed copy: ${path.join(out, b)}`);
      } else console.log(`[notebooks] ${b} done in ${formatDuration(r.seconds)}`);
    });
    writeJsonAtomic(timingsFile, timings);
    if (failed.length) throw new Error(failed.join('; '));
  }
  console.log(`[notebooks] all ${books.length} notebooks ran in ${formatDuration((Date.now() - t0) / 1000)} (profile ${profile})`);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(`[notebooks] ${(e as Error).message}`);
    process.exit(1);
  });
}
