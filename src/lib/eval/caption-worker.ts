// A captioning worker process (started by caption.ts's captionWithRun with child_process.fork): loads
// the trained run once, then captions the chunks of embeddings the parent sends, one at a time, and
// sends each chunk's captions back. Every photo's caption depends only on its embedding, the run and
// the decoding (captionEmbeddings: beams the same alone as in a batch, samples from the photo's own
// seeded stream), so the captions are the same as in one process.
import { captionEmbeddings, type CaptionWorkerMessage, type DecodeConfig } from './caption';
import { loadRun, type LoadedRun } from '../run/run';

type ToWorker = { type: 'init'; runDir: string; decode: DecodeConfig } | { type: 'chunk'; seq: number; embeddings: Float32Array[] };

let run: LoadedRun | null = null;
let decode: DecodeConfig | null = null;

function send(msg: CaptionWorkerMessage): void {
  if (process.send) process.send(msg);
}

function fail(e: unknown): void {
  send({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  process.exitCode = 1;
}

process.on('message', (m: ToWorker) => {
  if (m.type === 'init') {
    decode = m.decode;
    loadRun(m.runDir)
      .then((r) => {
        run = r;
        send({ type: 'ready' });
      })
      .catch(fail);
  } else if (m.type === 'chunk') {
    if (!run || !decode) return fail(new Error('a chunk before the run was loaded'));
    try {
      send({ type: 'result', seq: m.seq, captions: captionEmbeddings(run, m.embeddings, decode) });
    } catch (e) {
      fail(e);
    }
  }
});

// The parent went away (finished or killed): stop.
process.on('disconnect', () => {
  run?.dispose();
  process.exit(0);
});
