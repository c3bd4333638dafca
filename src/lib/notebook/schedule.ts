// How `npm run main` (scripts/run-notebooks.ts) orders the notebooks, and how long a run of them took.
//
// The notebooks run top to bottom, except for two pairs that need nothing of each other. Image
// embedding extraction (02) and the caption LM's pretraining (02b) both need only 01's subsets; the
// two trainings (03: MLP + fine-tuned GPT-2, 04: Transformer mapper + frozen GPT-2) need only what 01,
// 02 and 02b made. On a machine with two cores or more each pair runs at the same time, one process
// each: a training uses one core (two threads of one process use two cores worse than two processes
// do: train/parallel.ts), so the second core would otherwise sit idle for the longest part of the run.
import * as os from 'os';

/** Notebooks (by their two-digit prefix) that may run at the same time as each other. */
export const CONCURRENT_NOTEBOOKS: readonly (readonly string[])[] = [
  ['02', '02b'],
  ['03', '04'],
];

/** One notebook's wall time, as scripts/run-notebooks.ts records it in timings.json. */
export interface NotebookTiming {
  notebook: string;
  seconds: number;
  ok: boolean;
  finishedAt: string;
  /** Absent in records written before notebooks ran concurrently (then finishedAt - seconds). */
  startedAt?: string;
}

/**
 * Whether the trainings run concurrently here: CLIPCAP_NOTEBOOKS_CONCURRENT=0/1 decides; else on two
 * cores or more, unless they train on a GPU (`gpu`: a native GPU backend loads), where two trainings
 * would share one device's memory and time.
 */
export function runConcurrently(env: NodeJS.ProcessEnv = process.env, cores = os.cpus().length, gpu = false): boolean {
  const v = env.CLIPCAP_NOTEBOOKS_CONCURRENT;
  if (v === undefined || v === '') return cores >= 2 && !gpu;
  if (v === '0' || v === '1') return v === '1';
  throw new Error(`CLIPCAP_NOTEBOOKS_CONCURRENT must be 0 or 1, got ${JSON.stringify(v)}`);
}

/**
 * The environment of each of `together` notebooks that run at the same time on `cores` cores: their
 * share of the cores for data-parallel training threads (CLIPCAP_TRAIN_THREADS, at least 1), unless
 * the user set it. Two trainings side by side on two cores each keep one thread: separate processes
 * use both cores better than threads of one process do (train/parallel.ts).
 */
export function stageEnv(env: NodeJS.ProcessEnv, together: number, cores = os.cpus().length): NodeJS.ProcessEnv {
  if (together <= 1 || (env.CLIPCAP_TRAIN_THREADS ?? '') !== '') return env;
  return { ...env, CLIPCAP_TRAIN_THREADS: String(Math.max(1, Math.floor(cores / together))) };
}

/** A notebook's key: its number with an optional letter ('02b_pretrain_lm.ipynb' -> '02b'). */
export function notebookKey(file: string): string {
  return /^\d\d[a-z]?/.exec(file)?.[0] ?? file;
}

/**
 * The notebooks in stages, in order: a stage's notebooks run at the same time, the next stage starts
 * when all of them are done. `books` are file names (sorted); with `concurrent` false, one per stage.
 */
export function notebookStages(books: readonly string[], concurrent: boolean): string[][] {
  const stages: string[][] = [];
  const groupOf = (b: string) => (concurrent ? CONCURRENT_NOTEBOOKS.findIndex((g) => g.includes(notebookKey(b))) : -1);
  for (const b of books) {
    const g = groupOf(b);
    const last = stages[stages.length - 1];
    if (g >= 0 && last && groupOf(last[0]) === g) last.push(b);
    else stages.push([b]);
  }
  return stages;
}

type Timed = Pick<NotebookTiming, 'seconds' | 'finishedAt' | 'startedAt'>;

/** A notebook's [start, finish] in ms (start from finish - seconds in records without startedAt). */
function span(t: Timed): [number, number] {
  const end = Date.parse(t.finishedAt);
  return [t.startedAt ? Date.parse(t.startedAt) : end - t.seconds * 1000, end];
}

/**
 * The wall-clock time the notebooks took together: the length of the union of their [start, finish]
 * intervals, so that notebooks that ran at the same time count once.
 */
export function wallClockSeconds(timings: readonly Timed[]): number {
  const spans = timings
    .map(span)
    .filter(([s, e]) => Number.isFinite(s) && Number.isFinite(e) && e >= s)
    .sort((a, b) => a[0] - b[0]);
  let total = 0;
  let cur: [number, number] | null = null;
  for (const [s, e] of spans) {
    if (cur && s <= cur[1]) cur[1] = Math.max(cur[1], e);
    else {
      if (cur) total += cur[1] - cur[0];
      cur = [s, e];
    }
  }
  if (cur) total += cur[1] - cur[0];
  return total / 1000;
}

/**
 * The notebooks that ran at the same time, in groups (each group's members overlap in time, directly
 * or through another member; groups in order of start), by name. Notebooks that ran alone are left out.
 */
export function overlapGroups(timings: Record<string, Timed>): string[][] {
  const spans = Object.entries(timings)
    .map(([name, t]) => ({ name, s: span(t) }))
    .sort((a, b) => a.s[0] - b.s[0] || a.name.localeCompare(b.name));
  const groups: { names: string[]; end: number }[] = [];
  for (const { name, s } of spans) {
    const last = groups[groups.length - 1];
    if (last && s[0] < last.end) {
      last.names.push(name);
      last.end = Math.max(last.end, s[1]);
    } else groups.push({ names: [name], end: s[1] });
  }
  return groups.filter((g) => g.names.length > 1).map((g) => g.names.sort());
}

/**
 * Splits streamed text into lines and prefixes each (progress lines end in '\r' or '\n'); `flush()`
 * writes a last unterminated line. Used to tell two notebooks' output apart when they run together.
 */
export function linePrefixer(prefix: string, write: (s: string) => void): { push(chunk: string): void; flush(): void } {
  let buf = '';
  return {
    push(chunk: string) {
      buf += chunk;
      let i: number;
      while ((i = buf.search(/[\r\n]/)) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) write(`${prefix}${line}\n`);
      }
    },
    flush() {
      if (buf.trim()) write(`${prefix}${buf}\n`);
      buf = '';
    },
  };
}

