// A worker thread of data-parallel training (started by train/parallel.ts): builds its replica of the
// task on the training thread's backend, then, for each step, takes the trainable weights from shared
// memory, computes the gradients of its shards and writes them to shared memory.
import * as fs from 'fs';
import { parentPort, workerData } from 'worker_threads';
import { ensureBackend } from '../tfjs/backend';
import { settings } from '../settings';
import { assignFromFlat, chunkLossSum, copyToFlat, flatLayout, shardGradients, type FromShardWorker, type ShardWorkerInit, type ToShardWorker } from './parallel';
import type { TrainTask } from './task';
import * as tf from '@tensorflow/tfjs';

const init = workerData as ShardWorkerInit;
const port = parentPort!;
const send = (m: FromShardWorker): void => port.postMessage(m);

/**
 * The module to load: as named, or its TypeScript source where the name is a module compiled in
 * memory (tslab names the modules it compiles `.js` beside their `.ts` sources).
 */
function sourceFile(file: string): string {
  if (fs.existsSync(file) || !file.endsWith('.js')) return file;
  const ts = file.slice(0, -3) + '.ts';
  return fs.existsSync(ts) ? ts : file;
}

async function start(): Promise<void> {
  await ensureBackend({ env: settings().childEnv({ set: { CLIPCAP_BACKEND: init.backend, CLIPCAP_QUIET_BACKEND: '1' } }), quiet: true });
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const mod = require(sourceFile(init.replica.module)) as Record<string, (data: unknown) => TrainTask | Promise<TrainTask>>;
  const make = mod[init.replica.exportName];
  if (typeof make !== 'function') throw new Error(`${init.replica.module} does not export a function ${init.replica.exportName}`);
  const task = await make(init.replica.data);
  const named = task.trainable();
  const names = named.map((v) => v.name);
  const shapes = named.map((v) => v.variable.shape);
  if (JSON.stringify(names) !== JSON.stringify(init.names) || JSON.stringify(shapes) !== JSON.stringify(init.shapes)) {
    throw new Error(`the replica's trainable variables differ from the training thread's (${names.length} vs ${init.names.length} variables)`);
  }
  const vars = named.map((v) => v.variable);
  const layout = flatLayout(init.shapes);
  const weights = new Float32Array(init.weights);
  const grads = init.grads.map((b) => new Float32Array(b));
  port.on('message', (m: ToShardWorker) => {
    try {
      assignFromFlat(vars, weights, layout);
      if (m.type === 'losses') {
        send({ type: 'done', losses: m.chunks.map((c) => chunkLossSum(task, m.split, c, m.shuffledImages)) });
        return;
      }
      const losses: number[] = [];
      for (const { s, micro } of m.shards) {
        const r = shardGradients(task, vars, micro, m.tokens);
        copyToFlat(r.grads, grads[s], layout);
        tf.dispose(r.grads);
        losses.push(r.lossSum);
      }
      send({ type: 'done', losses });
    } catch (e) {
      send({ type: 'error', message: e instanceof Error ? e.message : String(e) });
    }
  });
  send({ type: 'ready' });
}

start().catch((e) => send({ type: 'error', message: e instanceof Error ? e.message : String(e) }));
