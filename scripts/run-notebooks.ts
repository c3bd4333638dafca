// Execute the notebooks top to bottom, in order, headless (nbclient with the tslab kernel, through
// scripts/execute_notebook.py, which echoes cell output live and keeps the executed copy on failure).
// On two cores or more, embedding extraction (02) and LM pretraining (02b) run at the same time, and
// then the two trainings (03 and 04), one process each, their output lines prefixed with the
// notebook's number (src/lib/notebook/schedule.ts; CLIPCAP_NOTEBOOKS_CONCURRENT=0 runs them in turn).
//
//   tsx scripts/run-notebooks.ts [--profile paper|coco-cpu|offline|smoke] [--from 03] [--until 05] [--only 05] [--timeout S]
//
// The profile is resolved once (CLIPCAP_PROFILE, else data/profile.json, else what the machine can do:
// src/lib/profile.ts) and passed to every
// notebook, and so is CLIPCAP_DATASET (your own dataset). Executed copies (with outputs) go to
// data/<profile>/notebooks/ (your own dataset: data/<profile>/custom/<name>-<hash>/notebooks/); the notebooks in
// notebooks/ stay as they are. A failing cell stops the run with a non-zero exit status.
// Wall times are appended to data/<profile>/notebooks/timings.json (REPORT.md reads them).
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isProfileName, PROFILE_NAMES } from '../src/lib/config';
import { resolveProfile } from '../src/lib/profile';
import { artifactPaths, repoRoot } from '../src/lib/paths';
import { probeNativeGpu } from '../src/lib/machine';
import { writeJsonAtomic } from '../src/lib/util/files';
import { formatDuration } from '../src/lib/util/progress';
import { linePrefixer, notebookKey, notebookStages, runConcurrently, stageEnv, wallClockSeconds, type NotebookTiming } from '../src/lib/notebook/schedule';

interface Args {
  profile?: string;
  from?: string;
  until?: string;
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
    else if (k === '--until') (a.until = v), i++;
    else if (k === '--only') (a.only = v), i++;
    else if (k === '--timeout') (a.timeout = Number(v)), i++;
    else throw new Error(`unknown argument ${k}; usage: run-notebooks [--profile P] [--from NN] [--until NN] [--only NN] [--timeout S]`);
  }
  return a;
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
  if (args.until) books = books.filter((b) => b < args.until! || b.startsWith(args.until!));
  if (books.length === 0) throw new Error('no notebooks selected');
  const python = nbclientPython();
  // (with CLIPCAP_DATASET, passed on to every notebook, under that dataset's own artifacts)
  const out = artifactPaths(cfg, root).executed;
  fs.mkdirSync(out, { recursive: true });
  const timingsFile = path.join(out, 'timings.json');
  const timings: Record<string, NotebookTiming> = fs.existsSync(timingsFile) ? JSON.parse(fs.readFileSync(timingsFile, 'utf8')) : {};
  const stages = notebookStages(books, runConcurrently(env, os.cpus().length, probeNativeGpu(env).gpu));
  console.log(`[notebooks] profile ${profile}: ${stages.map((st) => st.join(' + ')).join(', ')}`);
  const t0 = Date.now();
  const ran: NotebookTiming[] = [];
  for (const stage of stages) {
    const together = stage.length > 1;
    if (together) console.log(`[notebooks] ${stage.join(' and ')} at the same time (one process each; CLIPCAP_NOTEBOOKS_CONCURRENT=0 runs them in turn)`);
    const results = await Promise.all(
      stage.map(async (b) => {
        const started = new Date();
        console.log(`[notebooks] ${b} ...`);
        const r = await execute(python, [path.join(root, 'scripts', 'execute_notebook.py'), path.join(nbDir, b), path.join(out, b), '--timeout', String(args.timeout)], stageEnv(env, stage.length), together ? `[${notebookKey(b)}] ` : '');
        const seconds = (Date.now() - started.getTime()) / 1000;
        const timing: NotebookTiming = { notebook: b, seconds, ok: r.ok, finishedAt: new Date().toISOString(), startedAt: started.toISOString() };
        timings[b] = timing;
        ran.push(timing);
        writeJsonAtomic(timingsFile, timings);
        if (r.ok) console.log(`[notebooks] ${b} done in ${formatDuration(seconds)}`);
        else console.error(r.stderrTail);
        return { b, seconds, ok: r.ok };
      }),
    );
    const failed = results.filter((r) => !r.ok);
    if (failed.length) {
      throw new Error(failed.map((f) => `${f.b} failed after ${formatDuration(f.seconds)} (profile ${profile}); executed copy: ${path.join(out, f.b)}`).join('; '));
    }
  }
  const wall = (Date.now() - t0) / 1000;
  const overlap = ran.reduce((a, t) => a + t.seconds, 0) - wallClockSeconds(ran);
  console.log(`[notebooks] all ${books.length} notebooks ran in ${formatDuration(wall)} (profile ${profile}${overlap > 1 ? `; ${formatDuration(overlap)} saved by running ${stages.filter((st) => st.length > 1).map((st) => st.join(' and ')).join(', ')} together` : ''})`);
}

/**
 * Run one notebook's executor; its stdout is echoed live (each line prefixed when `prefix` is set),
 * the last 40 lines of its stderr are kept for the error message.
 */
function execute(python: string, argv: string[], env: NodeJS.ProcessEnv, prefix: string): Promise<{ ok: boolean; stderrTail: string }> {
  return new Promise((resolve) => {
    const child = spawn(python, argv, { env, stdio: ['ignore', prefix ? 'pipe' : 'inherit', 'pipe'] });
    const out = prefix ? linePrefixer(prefix, (s) => process.stdout.write(s)) : null;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => out!.push(d));
    const err: string[] = [];
    const errLines = linePrefixer(prefix, (s) => {
      err.push(s);
      if (err.length > 400) err.splice(0, err.length - 40);
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => errLines.push(d));
    child.on('error', (e) => {
      err.push(`could not start ${python}: ${e.message}\n`);
    });
    child.on('close', (code) => {
      out?.flush();
      errLines.flush();
      resolve({ ok: code === 0, stderrTail: err.slice(-40).join('') });
    });
  });
}

main().catch((e) => {
  console.error(`[notebooks] ${(e as Error).message}`);
  process.exit(1);
});
