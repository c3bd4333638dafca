// GPT-2 small (random weights) speed: one training step (forward, loss, backward, AdamW) at batch
// 8 x 40 tokens in full fine-tuning and frozen (gradient to the input embeddings only) modes, and
// greedy generation ms/token (10-token prefix, 20 new tokens) with and without the KV cache.
//
//   npm run bench                       # every bench/*.ts
//   npx tsx bench/gpt2.ts [--modes full,frozen,gen,matmul] [--steps 3] [--micro 8] [--layers 12]
//                         [--profile] [--torch]
//
// --torch also runs the same measurements in PyTorch when python3 with torch is installed
// (Debian: apt-get install python3-torch), in this process's run, for a side-by-side comparison.
// Settings of the wasm backend: CLIPCAP_MATMUL=auto|blas|ort|wasm|stock, CLIPCAP_BLAS_THREADS, CLIPCAP_ORT_THREADS, CLIPCAP_WASM_THREADS.
import { spawnSync } from 'child_process';
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import { printKernelProfile } from './lib/kernels';
import { ensureBackend, describeBackend } from '../src/lib/tfjs/backend';
import { GPT2, GPT2_SMALL } from '../src/lib/model/gpt2';
import { greedy } from '../src/lib/model/generate';
import { accumulateGrads, AdamW } from '../src/lib/train/optim';
import { wasmPatchStatus } from '../src/lib/tfjs/patch-status';

interface Opts {
  modes: string[];
  steps: number;
  micro: number;
  layers: number;
  profile: boolean;
  torch: boolean;
}

function parse(argv: string[]): Opts {
  const o: Opts = { modes: ['full', 'frozen', 'gen'], steps: 3, micro: 8, layers: GPT2_SMALL.nLayer, profile: false, torch: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--modes') o.modes = argv[++i].split(',');
    else if (a === '--steps') o.steps = Number(argv[++i]);
    else if (a === '--micro') o.micro = Number(argv[++i]);
    else if (a === '--layers') o.layers = Number(argv[++i]);
    else if (a === '--profile') o.profile = true;
    else if (a === '--torch') o.torch = true;
    else throw new Error(`bench/gpt2: unknown argument ${a}`);
  }
  return o;
}

const B = 8;
const T = 40;

/** ms for 1e8 iterations of an integer loop: how fast this machine is right now (it varies on shared hosts). */
export function cpuCalibration(): number {
  const t0 = performance.now();
  let s = 0;
  for (let i = 0; i < 1e8; i++) s = (s + i) | 0;
  if (s === 42) console.log('');
  return performance.now() - t0;
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function randomIds(n: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x % GPT2_SMALL.vocabSize;
  });
}

function heapMiB(): string {
  const b = (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm;
  return b ? `${(b.HEAPU8.buffer.byteLength / 2 ** 20).toFixed(0)} MiB wasm heap` : `${(tf.memory().numBytes / 2 ** 20).toFixed(0)} MiB tensors`;
}


function trainStep(model: GPT2, opt: AdamW | null, ids: tf.Tensor2D, targets: tf.Tensor2D, mask: tf.Tensor2D, micro: number, embeds: tf.Tensor3D | null): void {
  const vars = model.trainableVariables();
  if (opt) {
    // full fine-tuning: gradients of every weight, accumulated over micro-batches, then AdamW
    let acc: tf.Tensor[] | null = null;
    for (let s = 0; s < B; s += micro) {
      const n = Math.min(micro, B - s);
      const { value, grads } = tf.variableGrads(() => {
        const x = ids.slice([s, 0], [n, T]) as tf.Tensor2D;
        const hid = model.hidden({ inputIds: x, training: true }).reshape([n * T, -1]) as tf.Tensor2D;
        return tf.mul(model.headLoss(hid, targets.slice([s, 0], [n, T]).reshape([n * T]) as tf.Tensor1D, mask.slice([s, 0], [n, T]).reshape([n * T]) as tf.Tensor1D), n / B) as tf.Scalar;
      }, vars);
      value.dispose();
      acc = accumulateGrads(acc, vars.map((v) => grads[v.name]));
    }
    opt.step(vars, acc!);
    tf.dispose(acc!);
  } else {
    // frozen: gradient to the input embeddings only
    const g = tf.grad((e: tf.Tensor) => model.headLoss(model.hidden({ inputsEmbeds: e as tf.Tensor3D, training: true }).reshape([B * T, -1]) as tf.Tensor2D, targets.reshape([B * T]) as tf.Tensor1D, mask.reshape([B * T]) as tf.Tensor1D))(embeds!);
    g.dataSync();
    g.dispose();
  }
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const choice = await ensureBackend({ quiet: true });
  const st = choice.name === 'wasm' ? wasmPatchStatus() : null;
  console.log(describeBackend(choice));
  console.log(`GPT-2 small shapes (${o.layers} layers), random weights; batch ${B} x ${T} tokens; ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}); load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  if (st) console.log(`threads: XNNPACK ${st.threads}, ${st.matmul} matMul ${st.ortThreads || '-'}; patches: ${st.patched.join(', ')}`);
  const results: Record<string, number> = {};
  const config = { ...GPT2_SMALL, nLayer: o.layers };
  const calib: number[] = [cpuCalibration()];

  if (o.modes.includes('matmul')) matmulProbe(results);

  if (o.modes.includes('full') || o.modes.includes('frozen')) {
    const model = new GPT2(config, undefined, { seed: 1 });
    const ids = tf.tensor2d(randomIds(B * T, 7), [B, T], 'int32');
    const targets = tf.tensor2d(randomIds(B * T, 8), [B, T], 'int32');
    const mask = tf.ones([B, T]) as tf.Tensor2D;
    for (const mode of ['full', 'frozen']) {
      if (!o.modes.includes(mode)) continue;
      const frozen = mode === 'frozen';
      model.setTrainable(!frozen);
      const opt = frozen ? null : new AdamW({ lr: 1e-4, weightDecay: 0.01 });
      const embeds = frozen ? (tf.randomNormal([B, T, config.nEmbd], 0, 0.1) as tf.Tensor3D) : null;
      const times: number[] = [];
      for (let s = 0; s < o.steps + 1; s++) {
        const t0 = performance.now();
        trainStep(model, opt, ids, targets, mask, o.micro, embeds);
        if (s > 0) times.push(performance.now() - t0); // the first step warms up
      }
      const ms = median(times);
      results[`${mode}_tokens_per_s`] = (B * T) / (ms / 1000);
      console.log(
        `train step, ${frozen ? 'frozen GPT-2 (grad to input embeddings)' : `full fine-tuning (AdamW, micro-batch ${o.micro})`}: ` +
          `${(ms / 1000).toFixed(2)} s/step, ${results[`${mode}_tokens_per_s`].toFixed(1)} tokens/s (median of ${times.length}; ${times.map((t) => (t / 1000).toFixed(2)).join(' ')} s; ${heapMiB()})`,
      );
      calib.push(cpuCalibration());
      if (o.profile) await printKernelProfile(mode, () => trainStep(model, opt, ids, targets, mask, o.micro, embeds));
      embeds?.dispose();
    }
    model.dispose();
    tf.dispose([ids, targets, mask]);
  }

  if (o.modes.includes('gen')) {
    const model = new GPT2(config, undefined, { seed: 2 });
    model.setTrainable(false);
    const prefix = tf.randomNormal([1, 10, config.nEmbd], 0, 0.1) as tf.Tensor3D;
    for (const useCache of [true, false]) {
      greedy(model, prefix, { maxNewTokens: 3, eosId: -1, useCache }); // warm-up
      const times: number[] = [];
      for (let r = 0; r < Math.max(2, o.steps); r++) {
        const t0 = performance.now();
        const out = greedy(model, prefix, { maxNewTokens: 20, eosId: -1, useCache });
        if (out[0].length !== 20) throw new Error('generation stopped early');
        times.push((performance.now() - t0) / 20);
      }
      results[useCache ? 'gen_ms_per_token_cache' : 'gen_ms_per_token_nocache'] = median(times);
      console.log(`greedy generation, 10-token prefix + 20 tokens, ${useCache ? 'KV cache' : 'no cache (recompute)'}: ${median(times).toFixed(1)} ms/token`);
    }
    console.log(`KV cache speed-up: ${(results.gen_ms_per_token_nocache / results.gen_ms_per_token_cache).toFixed(1)}x`);
    calib.push(cpuCalibration());
    prefix.dispose();
    model.dispose();
  }

  results.cpu_calibration_ms = median(calib);
  console.log(
    `CPU calibration (1e8-iteration integer loop, lower is faster): ${calib.map((c) => c.toFixed(0)).join(' ')} ms ` +
      '(on shared hosts this varies several-fold; compare figures taken at similar calibration)',
  );
  if (o.torch) torchBench(o, results);
  console.log(`RESULT ${JSON.stringify({ bench: 'gpt2', backend: choice.name, threads: st ? { xnnpack: st.threads, native: st.ortThreads } : null, matmul: st?.matmul, ...results })}`);
}

/** Why a plain tf.matMul can look slow: the variants of one 512x768x3072 product. */
function matmulProbe(results: Record<string, number>): void {
  const [M, K, N] = [512, 768, 3072];
  const flop = 2 * M * K * N;
  const a = tf.randomNormal([M, K]);
  const b = tf.randomNormal([K, N]);
  const run = (label: string, f: () => void, reps = 5): number => {
    f();
    const ts: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      f();
      ts.push(performance.now() - t0);
    }
    const gf = flop / median(ts) / 1e6;
    console.log(`  matMul ${M}x${K}x${N} ${label.padEnd(52)} ${median(ts).toFixed(1).padStart(7)} ms  ${gf.toFixed(1).padStart(6)} GFLOP/s`);
    return gf;
  };
  console.log('matMul probe (median of 5):');
  results.matmul_gflops = run('tf.matMul(a, b) + dataSync', () => {
    const c = tf.matMul(a, b);
    c.dataSync();
    c.dispose();
  });
  run('same, b transposed (transposeB)', () => {
    const c = tf.matMul(a, b.transpose(), false, true);
    c.dataSync();
    tf.dispose(c);
  });
  run('a new b every call (weights packed again)', () => {
    const b2 = tf.add(b, 0);
    const c = tf.matMul(a, b2);
    c.dataSync();
    tf.dispose([c, b2]);
  });
  run('tf.tidy(() => tf.matMul(a, b).dataSync())', () => {
    tf.tidy(() => tf.matMul(a, b).dataSync());
  }, 2);
  tf.dispose([a, b]);
}

const TORCH_SCRIPT = String.raw`
import sys, time, json, os, torch
from torch import nn
torch.manual_seed(0)
torch.set_num_threads(os.cpu_count())
layers, steps, micro = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
B, T, d, V, H, P = 8, 40, 768, 50257, 12, 1024
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.ln1 = nn.LayerNorm(d); s.attn = nn.Linear(d, 3*d); s.proj = nn.Linear(d, d); s.ln2 = nn.LayerNorm(d); s.fc = nn.Linear(d, 4*d); s.out = nn.Linear(4*d, d); s.drop = nn.Dropout(0.1)
    def forward(s, x, past=None):
        Bq, Tq, _ = x.shape
        q, k, v = s.attn(s.ln1(x)).split(d, 2)
        q, k, v = [t.view(Bq, Tq, H, d//H).transpose(1, 2) for t in (q, k, v)]
        if past is not None: k = torch.cat([past[0], k], 2); v = torch.cat([past[1], v], 2)
        Tk = k.shape[2]
        w = q @ k.transpose(-1, -2) / (d//H) ** 0.5
        mask = torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)
        w = s.drop(w.masked_fill(~mask, -1e9).softmax(-1))
        a = (w @ v).transpose(1, 2).reshape(Bq, Tq, d)
        x = x + s.drop(s.proj(a))
        x = x + s.drop(s.out(nn.functional.gelu(s.fc(s.ln2(x)), approximate='tanh')))
        return x, (k, v)
class GPT(nn.Module):
    def __init__(s):
        super().__init__(); s.wte = nn.Embedding(V, d); s.wpe = nn.Embedding(P, d); s.h = nn.ModuleList([Block() for _ in range(layers)]); s.lnf = nn.LayerNorm(d); s.drop = nn.Dropout(0.1)
    def forward(s, emb, past=None, off=0):
        x = s.drop(emb + s.wpe(torch.arange(off, off + emb.shape[1])))
        pres = []
        for i, blk in enumerate(s.h):
            x, kv = blk(x, None if past is None else past[i]); pres.append(kv)
        return s.lnf(x) @ s.wte.weight.t(), pres
m = GPT()
ids = torch.randint(0, V, (B, T)); tgt = torch.randint(0, V, (B, T))
res = {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
def bench(fn):
    fn(); ts = []
    for _ in range(steps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts)//2]
m.train(); opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01)
def full():
    opt.zero_grad()
    for s in range(0, B, micro):
        lg, _ = m(m.wte(ids[s:s+micro]))
        loss = nn.functional.cross_entropy(lg.reshape(-1, V), tgt[s:s+micro].reshape(-1)) * (min(micro, B - s) / B)
        loss.backward()
    opt.step()
res["full_tokens_per_s"] = B * T / bench(full)
for p in m.parameters(): p.requires_grad_(False)
emb = (torch.randn(B, T, d) * 0.1).requires_grad_(True)
def frozen():
    lg, _ = m(emb); nn.functional.cross_entropy(lg.reshape(-1, V), tgt.reshape(-1)).backward()
res["frozen_tokens_per_s"] = B * T / bench(frozen)
m.eval()
prefix = torch.randn(1, 10, d) * 0.1
def gen(cache):
    with torch.no_grad():
        seq = prefix; past = None; x = prefix; off = 0
        for _ in range(20):
            if cache:
                lg, past = m(x, past, off); off += x.shape[1]
            else:
                lg, _ = m(seq)
            nxt = lg[0, -1].argmax()
            x = m.wte(nxt).view(1, 1, d); seq = torch.cat([seq, x], 1)
res["gen_ms_per_token_cache"] = bench(lambda: gen(True)) * 1000 / 20
res["gen_ms_per_token_nocache"] = bench(lambda: gen(False)) * 1000 / 20
print("TORCH " + json.dumps(res))
`;

function torchBench(o: Opts, results: Record<string, number>): void {
  // Debian's python3-torch lives with the system python; a pyenv python3 first on PATH lacks it
  const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0) ?? 'python3';
  const r = spawnSync(python, ['-c', TORCH_SCRIPT, String(o.layers), String(Math.max(2, o.steps)), String(o.micro)], { encoding: 'utf8', timeout: 900_000 });
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('TORCH '));
  if (!line) {
    console.log(`PyTorch: not measured (${r.error?.message ?? (r.stderr ?? '').trim().split('\n').pop() ?? 'python3 with torch not found'}); install with apt-get install python3-torch`);
    return;
  }
  const t = JSON.parse(line.slice(6)) as Record<string, number | string>;
  console.log(
    `PyTorch ${t.torch_version} (${t.torch_threads} threads, OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? 'unset'}), same shapes: ` +
      `full ${(t.full_tokens_per_s as number).toFixed(1)} tokens/s, frozen ${(t.frozen_tokens_per_s as number).toFixed(1)} tokens/s, ` +
      `generation ${(t.gen_ms_per_token_cache as number).toFixed(1)} ms/token (cache) / ${(t.gen_ms_per_token_nocache as number).toFixed(1)} (no cache)`,
  );
  for (const [k, v] of Object.entries(t)) if (typeof v === 'number') results[`torch_${k}`] = v;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
