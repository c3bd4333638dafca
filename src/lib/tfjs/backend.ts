// TensorFlow.js backend selection.
//
// Preference order: tfjs-node-gpu (CUDA), tfjs-node (native TensorFlow on CPU), wasm (XNNPACK,
// SIMD), cpu (pure JavaScript). The two native packages are optional dependencies: their install
// downloads libtensorflow and may fail, and the project must still run. `CLIPCAP_BACKEND` forces one
// (an error if it cannot be loaded; parsed by settings.ts). The choice is printed once per process.
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { settings, type BackendName, type Environment } from '../settings';
import { describeWasmPatches } from './patch-status';
import { installWasmPatches, prepareWasm } from './wasm-patches';

export type { BackendName };

export interface BackendCandidate {
  name: BackendName;
  /** Load the package and make its backend current; throw when unavailable. */
  activate: () => Promise<void>;
}

export interface BackendChoice {
  name: BackendName;
  /** tf.getBackend() after activation ('tensorflow', 'wasm', 'cpu'). */
  tfBackend: string;
  /** Why each preferred candidate before it was skipped. */
  skipped: { name: BackendName; reason: string }[];
}

function firstLine(e: unknown): string {
  if ((e as { code?: string })?.code === 'MODULE_NOT_FOUND') return 'not installed';
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].slice(0, 200);
}

/**
 * Try candidates in order (or only the forced one) and return the first that activates.
 * Pure apart from the candidates' own effects, so the order is unit-tested with fakes.
 */
export async function selectBackend(candidates: readonly BackendCandidate[], force?: BackendName): Promise<BackendChoice> {
  const skipped: { name: BackendName; reason: string }[] = [];
  const list = force ? candidates.filter((c) => c.name === force) : candidates;
  if (force && list.length === 0) throw new Error(`backend ${force} is not among the candidates`);
  for (const c of list) {
    try {
      await c.activate();
      return { name: c.name, tfBackend: tf.getBackend(), skipped };
    } catch (e) {
      if (force) {
        throw new Error(
          `CLIPCAP_BACKEND=${force} was requested but could not be loaded: ${firstLine(e)}` +
            (force.startsWith('tfjs-node')
              ? ` (install it with \`npm install @tensorflow/${force}\`; it downloads libtensorflow)`
              : ''),
        );
      }
      skipped.push({ name: c.name, reason: firstLine(e) });
    }
  }
  throw new Error(`no TensorFlow.js backend could be loaded: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`);
}

function wasmDistDir(): string {
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
}

/** The real candidates, in preference order. */
export function defaultCandidates(): BackendCandidate[] {
  return [
    {
      name: 'tfjs-node-gpu',
      activate: async () => {
        require('@tensorflow/tfjs-node-gpu');
        if (!(await tf.setBackend('tensorflow'))) throw new Error('tensorflow backend failed to initialise');
      },
    },
    {
      name: 'tfjs-node',
      activate: async () => {
        require('@tensorflow/tfjs-node');
        if (!(await tf.setBackend('tensorflow'))) throw new Error('tensorflow backend failed to initialise');
      },
    },
    {
      name: 'wasm',
      activate: async () => {
        // eslint-disable-next-line @typescript-eslint/no-var-requires
        const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
        wasm.setWasmPaths(wasmDistDir() + path.sep);
        prepareWasm(); // optional XNNPACK threads (CLIPCAP_WASM_THREADS)
        if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend failed to initialise');
      },
    },
    {
      name: 'cpu',
      activate: async () => {
        if (!(await tf.setBackend('cpu'))) throw new Error('cpu backend failed to initialise');
      },
    },
  ];
}

let current: BackendChoice | null = null;
let pending: Promise<BackendChoice> | null = null;

/**
 * Select (once per process) and return the backend. `CLIPCAP_BACKEND` forces one; `quiet`
 * suppresses the one-line report.
 */
export function ensureBackend(opts: { env?: Environment; quiet?: boolean } = {}): Promise<BackendChoice> {
  if (current) return Promise.resolve(current);
  if (!pending) {
    const env = opts.env;
    const s = settings(env);
    pending = (async () => {
      const choice = await selectBackend(defaultCandidates(), s.backend);
      await tf.ready();
      if (choice.name === 'wasm') installWasmPatches(env); // matMul via onnxruntime, Identity, UnsortedSegmentSum
      current = choice;
      if (!opts.quiet && !s.quietBackend) console.log(describeBackend(choice));
      return choice;
    })();
    pending.catch(() => {
      pending = null;
    });
  }
  return pending;
}

export function describeBackend(choice: BackendChoice): string {
  const skipped = choice.skipped.length ? ` (skipped: ${choice.skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')})` : '';
  const patches = choice.name === 'wasm' ? `; ${describeWasmPatches()}` : '';
  return `[clipcap] TensorFlow.js backend: ${choice.name}${skipped}${patches}`;
}
