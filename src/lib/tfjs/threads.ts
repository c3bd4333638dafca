// Patch 1 of the wasm backend (see wasm-patches.ts): XNNPACK threads under Node.
//
// What it works around: tfjs-backend-wasm turns multithreading off under Node. Its pthread workers are
// given a Blob URL and a `Function.toString()` main script, which `worker_threads` cannot run; and its
// C++ caps the thread pool at half the logical cores. Only XNNPACK ops would use a pool (element-wise
// kernels stay single-threaded), so this is optional (CLIPCAP_WASM_THREADS=n, default 1): the heavy
// matMuls go to onnxruntime instead (matmul.ts). Here the threaded SIMD binary is loaded with a real
// worker file, the main script given by path, and the core count the C++ sees doubled.
// Facts and measurements: docs/tfjs-wasm-in-node.md (property 1).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { writeFileAtomic } from '../util/files';

/**
 * Replace the 'wasm' backend factory by one that loads the threaded SIMD binary with `threads`
 * XNNPACK threads. Call before tf.setBackend('wasm').
 */
export function registerThreadedWasm(threads: number): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const wasmPkg = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js'));
  const mainJs = path.join(dir, 'tfjs-backend-wasm-threaded-simd.js');
  // The package ships the pthread worker as a JS string (meant for a Blob URL); Node's workers need a file.
  const { wasmWorkerContents } = require(path.join(dir, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  const contents = wasmWorkerContents.replace(/\n/g, '\\n');
  const workerFile = path.join(os.tmpdir(), `clipcap-tfjs-wasm-${tf.version_core}-worker.js`);
  if (!fs.existsSync(workerFile) || fs.readFileSync(workerFile, 'utf8') !== contents) writeFileAtomic(workerFile, contents);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const factory = require(mainJs) as (cfg: Record<string, unknown>) => Promise<Record<string, unknown> & { cwrap: (...a: unknown[]) => unknown }>;
  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      // The C++ caps the pool at emscripten_num_logical_cores() / 2, read from os.cpus() while the module starts.
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const nodeOs = require('os') as { cpus: () => os.CpuInfo[] };
      const cpus = nodeOs.cpus;
      nodeOs.cpus = () => {
        const c = cpus();
        return Array.from({ length: 2 * threads }, (_, i) => c[i % c.length]);
      };
      try {
        const module = await factory({
          locateFile: (p: string) => (p.endsWith('.worker.js') ? workerFile : path.join(dir, p)),
          mainScriptUrlOrBlob: mainJs,
        });
        module.tfjs = {
          init: module.cwrap('init', null, []),
          initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
          getThreadsCount: module.cwrap('get_threads_count', 'number', []),
          registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
          disposeData: module.cwrap('dispose_data', null, ['number']),
          dispose: module.cwrap('dispose', null, []),
        };
        wasmPkg.setThreadsCount(threads);
        const backend = new wasmPkg.BackendWasm(module as never);
        // XNNPACK's pool threads run for good; their workers must not keep the process alive.
        const pt = module.PThread as { runningWorkers?: { unref?: () => void }[]; unusedWorkers?: { unref?: () => void }[] } | undefined;
        for (const w of [...(pt?.runningWorkers ?? []), ...(pt?.unusedWorkers ?? [])]) w.unref?.();
        return backend;
      } finally {
        nodeOs.cpus = cpus;
      }
    },
    2,
  );
}
