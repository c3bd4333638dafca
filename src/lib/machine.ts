// What this machine can do, asked without loading a backend into this process: is the Hugging Face
// hub reachable, does a native GPU backend (tfjs-node-gpu on CUDA) load, and how much memory does each
// TensorFlow.js backend have for tensors, and how many processes caption a set of photos. The profile
// choice (profile.ts), the size of a training pass (train/memory.ts) and the captioning workers
// (eval/caption.ts, estimate.ts) are decided from these answers.
import { spawnSync } from 'child_process';
import * as dns from 'dns';
import * as os from 'os';
import { settings, type Environment } from './settings';

/**
 * Is the Hugging Face hub reachable? With CLIPCAP_HUB_URL / HF_ENDPOINT set (a mirror, or a loopback
 * hub in tests), one HTTP HEAD request to it: any HTTP answer counts. Otherwise a DNS lookup of
 * huggingface.co, and nothing else: no traffic when it fails.
 */
export async function hubReachable(env?: Environment, timeoutMs = 3000): Promise<boolean> {
  const endpoint = settings(env).hubEndpoint;
  if (endpoint) {
    try {
      await fetch(endpoint, { method: 'HEAD', signal: AbortSignal.timeout(timeoutMs) });
      return true;
    } catch {
      return false;
    }
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    dns.lookup('huggingface.co', (err) => {
      clearTimeout(timer);
      resolve(!err);
    });
  });
}

export interface GpuProbe {
  gpu: boolean;
  /** In words: what was found, or why there is no GPU backend. */
  detail: string;
}

let gpuProbeCache: GpuProbe | null = null;

/**
 * Does a native GPU backend load here? `@tensorflow/tfjs-node-gpu` is loaded in a child process (so
 * that this process keeps its own backend choice) and must run a product on a CUDA device: TensorFlow
 * logs the GPU devices it creates, and `nvidia-smi -L` must list one. CLIPCAP_BACKEND forcing a
 * non-GPU backend answers no without probing. Cached per process.
 */
export function probeNativeGpu(env?: Environment): GpuProbe {
  const s = settings(env);
  const forced = s.backend;
  if (forced && forced !== 'tfjs-node-gpu') {
    return { gpu: false, detail: `CLIPCAP_BACKEND=${forced}` };
  }
  if (gpuProbeCache) return gpuProbeCache;
  let resolved = true;
  try {
    require.resolve('@tensorflow/tfjs-node-gpu');
  } catch {
    resolved = false;
  }
  if (!resolved) return (gpuProbeCache = { gpu: false, detail: '@tensorflow/tfjs-node-gpu is not installed' });
  const script =
    "const tf=require('@tensorflow/tfjs-node-gpu');const a=tf.ones([64,64]);tf.matMul(a,a).dataSync();console.log('backend='+tf.getBackend())";
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000, env: s.childEnv({ set: { TF_CPP_MIN_LOG_LEVEL: '0' } }) });
  if (r.status !== 0) {
    return (gpuProbeCache = { gpu: false, detail: `@tensorflow/tfjs-node-gpu does not load: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()?.slice(0, 200)}` });
  }
  const smi = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 30_000 });
  const listed = smi.status === 0 && /GPU \d+:/.test(smi.stdout);
  const created = /device:GPU:\d/.test(r.stderr);
  if (listed && created) return (gpuProbeCache = { gpu: true, detail: `tfjs-node-gpu runs on ${smi.stdout.trim().split('\n')[0]}` });
  return (gpuProbeCache = { gpu: false, detail: `tfjs-node-gpu loads but finds no CUDA device${listed ? ' (nvidia-smi lists one: check the CUDA and cuDNN libraries)' : ''}` });
}

/** The wasm backend's heap: wasm32 addresses at most 4 GiB. */
export const WASM_HEAP_BYTES = 4 * 1024 ** 3;

/**
 * Memory a TensorFlow.js backend can give to tensors: the wasm heap (4 GiB, whatever the machine has);
 * for tfjs-node, the machine's memory less 2 GiB for everything else; for tfjs-node-gpu, the GPU's
 * memory (nvidia-smi), or 8 GiB when it cannot be read; the pure-JS cpu backend lives in the JS heap,
 * bounded like tfjs-node.
 */
export function backendMemoryBytes(backend: string): number {
  if (backend === 'wasm') return WASM_HEAP_BYTES;
  if (backend === 'tfjs-node-gpu') {
    const q = spawnSync('nvidia-smi', ['--query-gpu=memory.total', '--format=csv,noheader,nounits'], { encoding: 'utf8', timeout: 30_000 });
    const mib = q.status === 0 ? Number(q.stdout.trim().split('\n')[0]) : NaN;
    return Number.isFinite(mib) && mib > 0 ? mib * 1024 ** 2 : 8 * 1024 ** 3;
  }
  return Math.max(os.totalmem() - 2 * 1024 ** 3, 1024 ** 3);
}

/** Below this many photos captions are made in this process (starting workers costs a few seconds). */
export const MIN_PHOTOS_FOR_WORKERS = 64;

/**
 * The captioning worker processes for `photos` photos on `backend`: CLIPCAP_CAPTION_WORKERS when set,
 * else one per core on the wasm and cpu backends (one thread each, like the trainings) and 1 on the
 * others (a GPU does better alone); 1 (this process) below MIN_PHOTOS_FOR_WORKERS photos.
 */
export function captionWorkers(photos: number, backend: string, opts: { cores?: number; env?: Environment } = {}): number {
  if (photos < MIN_PHOTOS_FOR_WORKERS) return 1;
  const set = settings(opts.env ?? process.env).captionWorkers;
  if (set !== undefined) return set;
  return backend === 'wasm' || backend === 'cpu' ? Math.max(1, opts.cores ?? os.cpus().length) : 1;
}
