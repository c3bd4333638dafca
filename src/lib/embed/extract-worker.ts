// An extraction worker process (started by extract.ts with child_process.fork): loads its own
// encoder (its own tfjs wasm runtime or onnxruntime session), then embeds the batches the parent
// sends. Each batch starts decoding as soon as it arrives, so the second batch in flight is decoded
// while the first one is inferred. The parent owns the store; this process only computes.
import { createEncoder } from './encoders/index';
import type { ImageEncoder } from './encoders/encoder';
import { inferBatch, prepareBatch, type ExtractImage, type WorkerInit } from './extract';

type ToWorker = { type: 'init'; init: WorkerInit } | { type: 'batch'; seq: number; items: ExtractImage[] };

let encoder: ImageEncoder | null = null;
/** CPU time at 'ready': results report the CPU spent since (model loading left out). */
let cpuAtReady = process.cpuUsage();
const queue: { seq: number; prepared: ReturnType<typeof prepareBatch> }[] = [];
let running = false;

function send(msg: unknown): void {
  if (process.send) process.send(msg);
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function drain(): Promise<void> {
  if (running) return;
  running = true;
  try {
    while (queue.length) {
      const job = queue.shift()!;
      const out = await inferBatch(encoder!, await job.prepared);
      const cpu = process.cpuUsage(cpuAtReady);
      send({ type: 'result', seq: job.seq, rows: out.rows.map((r) => ({ id: r.id, vector: r.vector })), rejects: out.rejects, cpuSeconds: (cpu.user + cpu.system) / 1e6 });
    }
  } catch (e) {
    send({ type: 'error', message: errorMessage(e) });
    process.exitCode = 1;
  } finally {
    running = false;
  }
}

process.on('message', (m: ToWorker) => {
  if (m.type === 'init') {
    const { encoder: cfg, models, threads } = m.init;
    createEncoder({ ...cfg, threads }, { models })
      .then((enc) => {
        encoder = enc;
        cpuAtReady = process.cpuUsage();
        send({ type: 'ready', signature: { name: enc.name, encoder: enc.name, dim: enc.dim, preprocessing: enc.preprocessing, postprocess: enc.postprocess } });
      })
      .catch((e) => send({ type: 'error', message: errorMessage(e) }));
  } else if (m.type === 'batch') {
    if (!encoder) {
      send({ type: 'error', message: 'batch before init' });
      return;
    }
    queue.push({ seq: m.seq, prepared: prepareBatch(encoder, m.items) });
    void drain();
  }
});

// The parent went away (finished or killed): stop.
process.on('disconnect', () => process.exit(0));
