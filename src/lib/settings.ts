// Every environment variable the project reads, parsed and checked in one place (the README's
// "Environment variables" table lists them for users). The rest of src/lib asks `settings(env)` and
// never reads the environment itself; functions that take an `env` (for tests) pass it here.
//
// | variable                         | value (default)                                                         | read by                         |
// |----------------------------------|-------------------------------------------------------------------------|---------------------------------|
// | CLIPCAP_PROFILE                  | paper, coco-cpu, offline, smoke, auto (unset / auto: chosen)            | profile.ts                      |
// | CLIPCAP_CONFIRM_PAPER_ON_CPU     | 1: start the paper profile without a GPU backend (off)                  | profile.ts                      |
// | CLIPCAP_DATA_DIR                 | the local data mirror (../shared/data)                                  | paths.ts                        |
// | CLIPCAP_DATASET                  | your own dataset folder (images/ + captions); unset: the profile's data | profile.ts                      |
// | CLIPCAP_CACHE                    | download cache (data/cache)                                             | paths.ts                        |
// | CLIPCAP_HUB_URL, HF_ENDPOINT     | another hub host, the first set wins (https://huggingface.co/)          | machine.ts, io/hub.ts           |
// | HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE | 1: hub cache only (off)                                             | profile.ts, io/hub.ts           |
// | HF_TOKEN                         | hub token, sent by transformers.js itself (which reads it)              | transformers.js                 |
// | CLIPCAP_BACKEND                  | tfjs-node-gpu (gpu), tfjs-node (node, tensorflow), wasm, cpu, auto      | tfjs/backend.ts, machine.ts, profile.ts |
// | CLIPCAP_QUIET_BACKEND            | any non-empty value: do not print the backend (off)                     | tfjs/backend.ts                 |
// | CLIPCAP_MATMUL                   | auto, blas, ort, wasm, stock (auto: OpenBLAS if it loads, else ort)     | tfjs/wasm-patches.ts            |
// | CLIPCAP_BLAS_THREADS             | a positive integer (1)                                                  | tfjs/wasm-patches.ts, extraction workers |
// | CLIPCAP_BLAS_LIB                 | the BLAS library's file name or path (libopenblas.so.0, ...)            | tfjs/wasm-patches.ts            |
// | CLIPCAP_ORT_THREADS              | a positive integer (the number of cores)                                | tfjs/wasm-patches.ts, extraction workers |
// | CLIPCAP_WASM_THREADS             | a positive integer (1)                                                  | tfjs/wasm-patches.ts            |
// | CLIPCAP_TRAIN_THREADS            | a positive integer (the cores): threads that compute a step's shards     | train/parallel.ts               |
// | CLIPCAP_CAPTION_WORKERS          | a positive integer (the cores on wasm/cpu, else 1): captioning processes | eval/caption.ts                |
// | CLIPCAP_CACHE_TRANSPOSES         | 0: no cached transposes of frozen weights (on)                          | tfjs/wasm-patches.ts            |
// | CLIPCAP_FUSED                    | 0: GELU, LayerNorm, attention composed of tfjs ops, not fused (on)      | tfjs/wasm-patches.ts            |
// | CLIPCAP_ORT_PROFILE              | any non-empty value: time the onnxruntime products (off; read at load)  | tfjs/ort-profile.ts             |
// | UV_THREADPOOL_SIZE               | passed to extraction workers (2 unless set)                             | embed/extract.ts (childEnv)     |
// | JPY_PARENT_PID                   | set by Jupyter in a kernel                                              | (jupyterKernel)                 |
//
// Values are parsed when read, so a bad value fails where it is used (as before this module existed),
// with an error naming the variable and the values it takes. This module imports nothing from src/lib.
import * as os from 'os';
import * as path from 'path';

/** An environment: process.env, or a plain object in tests. */
export type Environment = Readonly<Record<string, string | undefined>>;

/** TensorFlow.js backends, in preference order. */
export const BACKEND_NAMES = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** CLIPCAP_BACKEND's accepted spellings (case-insensitive). */
const BACKEND_ALIASES: Record<string, BackendName> = {
  gpu: 'tfjs-node-gpu',
  'tfjs-node-gpu': 'tfjs-node-gpu',
  node: 'tfjs-node',
  tensorflow: 'tfjs-node',
  'tfjs-node': 'tfjs-node',
  wasm: 'wasm',
  cpu: 'cpu',
};

/** Who computes the wasm backend's matMuls: OpenBLAS else onnxruntime (auto), OpenBLAS, onnxruntime, XNNPACK with explicit transposes, or tfjs's own kernels. */
export type MatMulMode = 'auto' | 'blas' | 'ort' | 'wasm' | 'stock';
const MATMUL_MODES: readonly MatMulMode[] = ['auto', 'blas', 'ort', 'wasm', 'stock'];

/** The settings of one environment; each property parses its variable when read. */
export class Settings {
  constructor(private readonly env: Environment) {}

  /**
   * CLIPCAP_PROFILE: the profile forced by the user, checked against `names` (config.ts's
   * PROFILE_NAMES); undefined when unset, empty or `auto` (the profile is chosen automatically).
   */
  forcedProfile<T extends string>(names: readonly T[]): T | undefined {
    const v = this.env.CLIPCAP_PROFILE;
    if (!v || v === 'auto') return undefined;
    if (!(names as readonly string[]).includes(v)) throw new Error(`CLIPCAP_PROFILE=${v} is not a profile: use one of ${names.join(', ')} (or leave it unset)`);
    return v as T;
  }

  /** CLIPCAP_CONFIRM_PAPER_ON_CPU=1: start the paper profile without a GPU backend. */
  get confirmPaperOnCpu(): boolean {
    return this.env.CLIPCAP_CONFIRM_PAPER_ON_CPU === '1';
  }

  /** CLIPCAP_DATA_DIR as an absolute path: the local data mirror; undefined when unset. */
  get dataDir(): string | undefined {
    return this.absolute('CLIPCAP_DATA_DIR');
  }

  /**
   * CLIPCAP_DATASET as an absolute path: a dataset folder of the user's own (images/ plus captions.csv,
   * captions.txt or captions.json; data/custom.ts) that every notebook trains and evaluates on instead
   * of the profile's data; undefined when unset or empty.
   */
  get dataset(): string | undefined {
    return this.absolute('CLIPCAP_DATASET');
  }

  /** CLIPCAP_CACHE as an absolute path: the download cache; undefined when unset. */
  get cacheDir(): string | undefined {
    return this.absolute('CLIPCAP_CACHE');
  }

  /** CLIPCAP_HUB_URL, else HF_ENDPOINT: another Hugging Face hub host, as written; undefined when neither is set. */
  get hubEndpoint(): string | undefined {
    return this.env.CLIPCAP_HUB_URL || this.env.HF_ENDPOINT || undefined;
  }

  /** HF_TOKEN: the hub token. transformers.js reads and sends it itself; listed for completeness. */
  get hfToken(): string | undefined {
    return this.env.HF_TOKEN || undefined;
  }

  /** HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1: no network, the hub cache and local files only. */
  get offline(): boolean {
    return this.env.HF_HUB_OFFLINE === '1' || this.env.TRANSFORMERS_OFFLINE === '1';
  }

  /** CLIPCAP_BACKEND: the forced TensorFlow.js backend; undefined when unset, empty or `auto`. */
  get backend(): BackendName | undefined {
    const v = this.env.CLIPCAP_BACKEND;
    if (v === undefined || v === '' || v === 'auto') return undefined;
    const name = BACKEND_ALIASES[v.toLowerCase()];
    if (!name) throw new Error(`CLIPCAP_BACKEND=${v} is not a backend; use one of ${BACKEND_NAMES.join(', ')} (or auto)`);
    return name;
  }

  /** CLIPCAP_QUIET_BACKEND (any non-empty value): do not print the chosen backend. */
  get quietBackend(): boolean {
    return !!this.env.CLIPCAP_QUIET_BACKEND;
  }

  /** CLIPCAP_MATMUL: `auto` (default when unset or empty), `blas`, `ort`, `wasm` or `stock`; any other value is refused. */
  get matmul(): MatMulMode {
    const v = this.env.CLIPCAP_MATMUL;
    if (v === undefined || v === '') return 'auto';
    if ((MATMUL_MODES as readonly string[]).includes(v)) return v as MatMulMode;
    throw new Error(`CLIPCAP_MATMUL=${v} is not a matMul provider: use one of ${MATMUL_MODES.join(', ')} (or leave it unset)`);
  }

  /** CLIPCAP_BLAS_THREADS: OpenBLAS's threads for the wasm backend's matMuls; default 1. */
  get blasThreads(): number {
    return this.positiveInteger('CLIPCAP_BLAS_THREADS', () => 1);
  }

  /** CLIPCAP_BLAS_LIB: the BLAS library to load (a file name or path); undefined: the usual OpenBLAS names. */
  get blasLibrary(): string | undefined {
    return this.env.CLIPCAP_BLAS_LIB || undefined;
  }

  /** CLIPCAP_ORT_THREADS: onnxruntime's threads for the wasm backend's matMuls; default the cores (extraction workers: their share). */
  get ortThreads(): number {
    return this.positiveInteger('CLIPCAP_ORT_THREADS', () => os.cpus().length);
  }

  /** CLIPCAP_WASM_THREADS: XNNPACK threads of the wasm backend; default 1. */
  get wasmThreads(): number {
    return this.positiveInteger('CLIPCAP_WASM_THREADS', () => 1);
  }

  /**
   * CLIPCAP_TRAIN_THREADS: threads (this one and worker threads) that compute the shards of a training
   * step (LoopConfig.shards) on the wasm and cpu backends; default the number of cores. 1 computes every
   * shard in this thread: the same numbers, more slowly.
   */
  get trainThreads(): number {
    return this.positiveInteger('CLIPCAP_TRAIN_THREADS', () => os.cpus().length);
  }

  /**
   * CLIPCAP_CAPTION_WORKERS: child processes that caption the photos of an evaluation or a dev
   * scoring (eval/caption.ts); undefined when unset (then one per core on the wasm and cpu backends).
   */
  get captionWorkers(): number | undefined {
    return this.env.CLIPCAP_CAPTION_WORKERS ? this.positiveInteger('CLIPCAP_CAPTION_WORKERS', () => 1) : undefined;
  }

  /** CLIPCAP_CACHE_TRANSPOSES (on unless `0`): keep transposes of frozen weights. */
  get cacheTransposes(): boolean {
    return this.env.CLIPCAP_CACHE_TRANSPOSES !== '0';
  }

  /** CLIPCAP_FUSED (on unless `0`): GELU, LayerNorm and attention as fused kernels on the wasm backend (tfjs/fused.ts). */
  get fusedKernels(): boolean {
    return this.env.CLIPCAP_FUSED !== '0';
  }

  /** CLIPCAP_ORT_PROFILE (any non-empty value): time every onnxruntime product, printed at exit. */
  get ortProfile(): boolean {
    return !!this.env.CLIPCAP_ORT_PROFILE;
  }

  /** JPY_PARENT_PID is set: this process is a Jupyter kernel. */
  get jupyterKernel(): boolean {
    return !!this.env.JPY_PARENT_PID;
  }

  /**
   * The environment of a child process: this one, with `unlessSet` for the variables it does not
   * define, then `set` over everything.
   */
  childEnv(changes: { set?: Record<string, string>; unlessSet?: Record<string, string> }): NodeJS.ProcessEnv {
    const out: NodeJS.ProcessEnv = { ...this.env };
    for (const [k, v] of Object.entries(changes.unlessSet ?? {})) if (out[k] === undefined) out[k] = v;
    return Object.assign(out, changes.set);
  }

  private absolute(name: string): string | undefined {
    const v = this.env[name];
    return v ? path.resolve(v) : undefined;
  }

  /** A positive integer; unset or empty gives the default. */
  private positiveInteger(name: string, fallback: () => number): number {
    const v = this.env[name];
    if (!v) return fallback();
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${v} must be a positive integer`);
    return n;
  }
}

/** The settings of `env` (default: this process's environment, read at each property access). */
export function settings(env: Environment = process.env): Settings {
  return new Settings(env);
}
