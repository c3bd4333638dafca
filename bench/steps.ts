// Training-step speed at the shapes the notebooks train (issue: training at PyTorch speed).
//
//   npx tsx bench/steps.ts [--profile offline|smoke|coco-cpu] [--kinds lm,mlp,transformer,val,beam]
//                          [--steps 6] [--kernels] [--products] [--phases] [--torch] [--shards N] [--threads N]
//                          [--rounds N]   (the whole comparison N times; median ratios at the end)
//
// Training kinds are timed as the loop trains (train/loop.ts, train/parallel.ts): each batch cut into
// the profile's data-parallel shards (--shards), whose gradients are computed on 1 thread and on as
// many threads as the cores allow (worker threads; --threads picks one count). The result is the same
// at every thread count (bit for bit; test/parallel.test.ts); only the time differs.
//
// beam: captions/s of beam search at the eval settings, one image at a time and in captionEmbeddings'
// batches of images (beam-batch), and where the eval settings decode by consensus, the time its
// samples add per image (samples-batch).
//
// For the profile's caption LM (02b), MLP + fine-tuned GPT-2 (03), Transformer mapper + frozen GPT-2
// (04), the validation pass and beam-search captioning (06): random weights of the profile's sizes,
// caption lengths drawn from the length distribution of Flickr8k training captions (GPT-2 BPE, EOS
// included, mean 13.6, cut at the profile's maxCaptionTokens), batches bucketed by length as the
// training loop does. Reports ms/step, real caption tokens/s and the share of padded positions.
// --products also times the matrix products run natively, on OpenBLAS or onnxruntime (ms/step, their share of the step,
// GFLOP/s): the floor that the rest of the step (element-wise kernels, JS) sits on. --phases prints
// where a training step's time goes on the training thread: copying weights out to the worker threads,
// its own shards, waiting for the workers, adding their gradients, the clipping norm and AdamW.
// --torch runs the same steps in PyTorch (Debian's python3 with torch) at 1 and 2 threads, in this run,
// and prints our ratio to PyTorch's best thread count; also on one core (OpenBLAS limited to one thread:
// at one intra-op thread PyTorch's products still use every core), for our one-thread steps.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { printKernelProfile } from './lib/kernels';
import { startOrtProfile, takeOrtTotals } from '../src/lib/tfjs/ort-profile';
import { wasmPatchStatus } from '../src/lib/tfjs/patch-status';
import { profileConfig } from '../src/lib/config';
import { ensureBackend, describeBackend } from '../src/lib/tfjs/backend';
import { GPT2, type GPT2Config } from '../src/lib/model/gpt2';
import { ClipCapModel } from '../src/lib/model/clipcap';
import { createMapper, defaultMapperConfig } from '../src/lib/model/mapper';
import { AdamW, clipScale } from '../src/lib/train/optim';
import { shardPlan, DataParallel } from '../src/lib/train/parallel';
import { clipCapTask } from '../src/lib/train/examples';
import { lmTask, packCaptionGroups } from '../src/lib/train/pretrain';
import type { TrainTask } from '../src/lib/train/task';
import { padBatch } from '../src/lib/train/examples';
import { beamSearch, beamSearchBatch, sampleBatch } from '../src/lib/model/generate';
import { BEAM_CHUNK } from '../src/lib/eval/caption';
import { mulberry32 } from '../src/lib/util/rng';

interface Opts {
  profile: string;
  kinds: string[];
  steps: number;
  kernels: boolean;
  products: boolean;
  /** Print where a training step's time goes on the training thread (parallel.ts phases, clipping, AdamW). */
  phases: boolean;
  torch: boolean;
  vocab: number;
  dim: number;
  /** Shards of a training step (default: the profile's). */
  shards?: number;
  /** Time the training kinds at this many threads only (default: 1 and the cores the shards can use). */
  threads?: number;
  /** Run the whole comparison this many times (default 1) and print the median ratios. */
  rounds: number;
}

function parse(argv: string[]): Opts {
  const o: Opts = { profile: 'offline', kinds: ['lm', 'mlp', 'transformer', 'val', 'beam'], steps: 6, kernels: false, products: false, phases: false, torch: false, vocab: 8489, dim: 1640, rounds: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--profile') o.profile = argv[++i];
    else if (a === '--kinds') o.kinds = argv[++i].split(',');
    else if (a === '--steps') o.steps = Number(argv[++i]);
    else if (a === '--kernels') o.kernels = true;
    else if (a === '--products') o.products = true;
    else if (a === '--phases') o.phases = true;
    else if (a === '--torch') o.torch = true;
    else if (a === '--vocab') o.vocab = Number(argv[++i]);
    else if (a === '--shards') o.shards = Number(argv[++i]);
    else if (a === '--threads') o.threads = Number(argv[++i]);
    else if (a === '--rounds') o.rounds = Number(argv[++i]);
    else throw new Error(`bench/steps: unknown argument ${a}`);
  }
  return o;
}

// Token-length histogram of Flickr8k training captions (GPT-2 BPE + EOS), lengths 4..32 (cut).
const LENGTH_WEIGHTS: Record<number, number> = {
  5: 1, 6: 3, 7: 6, 8: 9, 9: 12, 10: 14, 11: 15, 12: 15, 13: 14, 14: 12, 15: 11, 16: 9, 17: 8, 18: 6, 19: 5, 20: 4, 21: 3, 22: 3, 23: 2, 24: 2, 26: 1, 28: 1, 32: 1,
};

function sampleLengths(n: number, maxTokens: number, seed: number): number[] {
  const rand = mulberry32(seed);
  const items = Object.entries(LENGTH_WEIGHTS).map(([l, w]) => [Math.min(Number(l), maxTokens), w] as const);
  const total = items.reduce((a, [, w]) => a + w, 0);
  return Array.from({ length: n }, () => {
    let r = rand() * total;
    for (const [l, w] of items) if ((r -= w) <= 0) return l;
    return items[items.length - 1][0];
  });
}

/** Batches of one bucketed pool (as the loop's bucketByLength): sorted by length and cut; `count` of them spread over the lengths. */
function bucketedBatches(lengths: number[], batch: number, count: number): number[][] {
  const order = lengths.map((l, i) => [l, i] as const).sort((a, b) => a[0] - b[0]).map(([, i]) => i);
  const all: number[][] = [];
  for (let i = 0; i + batch <= order.length; i += batch) all.push(order.slice(i, i + batch));
  // `count` of them evenly spaced over the lengths (a training epoch sees them all), longest first: the
  // first is the warm-up, which grows the heap for the rest
  const n = Math.min(count, all.length);
  return Array.from({ length: n }, (_, k) => all[Math.floor(((n - k - 0.5) * all.length) / n)]);
}

function randomTokens(len: number, vocab: number, rand: () => number): number[] {
  return Array.from({ length: len }, () => Math.floor(rand() * vocab));
}

interface Result {
  kind: string;
  /** The PyTorch step it compares with (the kind, without our thread count). */
  torchKind: string;
  msPerStep: number;
  tokensPerSecond: number;
  paddedShare: number;
  note: string;
  /** --products: ms/step of the matrix products run natively (OpenBLAS or onnxruntime). */
  productsMs?: number;
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}


/** The thread counts to time a training kind at: --threads, else 1 and the cores a step of `shards` shards can use. */
function threadCounts(o: Opts, shards: number | undefined): number[] {
  if (o.threads) return [o.threads];
  const s = o.shards ?? shards ?? 1;
  return [...new Set([1, Math.min(s, os.cpus().length)])];
}

/** `lm` for the shards on all the threads they can use; `lm, 1 thread` when fewer were asked for. */
function kindLabel(kind: string, asked: number, used: number): string {
  return asked === 1 && used === 1 ? `${kind}, 1 thread` : kind;
}

function shardNote(s: { shards: number; threads: number }): string {
  return s.shards > 1 ? `, ${s.shards} shards on ${s.threads} thread${s.threads > 1 ? 's' : ''}` : '';
}

/**
 * A training step as the loop takes it (train/loop.ts): the shard plan, the shards' gradients on
 * `threads` threads (train/parallel.ts), gradient clipping, AdamW.
 */
async function loopStep(task: TrainTask, c: { shards: number; threads: number; microBatchSize: number; gradClip: number; lr: number; opt: AdamW; scales?: number[] }) {
  const vars = task.trainable();
  const parallel = await DataParallel.create(task, vars, { shards: c.shards, threads: c.threads });
  const after = { clip: 0, adamw: 0 };
  const step = async (b: number[]): Promise<void> => {
    const plan = shardPlan(b, c.shards, c.microBatchSize, (m) => 5 + m);
    const { grads } = await parallel.gradients(plan, task.tokenCount('train', b));
    const t0 = performance.now();
    // as the training loop: the clipping factor applied inside the AdamW update
    const gradScale = c.gradClip > 0 ? clipScale(grads, c.gradClip).scale : 1;
    const t1 = performance.now();
    c.opt.step(vars.map((v) => v.variable), grads, c.lr, c.scales, gradScale);
    tf.dispose(grads);
    after.clip += t1 - t0;
    after.adamw += performance.now() - t1;
  };
  const phases = (): Record<string, number> => ({ ...parallel.phaseMs, ...after });
  return { step, phases, shards: c.shards, threads: parallel.threads, dispose: () => parallel.dispose() };
}

/** One round: every kind of ours, then (--torch) PyTorch's; returns our ratio to PyTorch's best by kind. */
async function round(o: Opts): Promise<Record<string, number>> {
  const backend = await ensureBackend({ quiet: true });
  const p = profileConfig(o.profile);
  const arch = p.lm.arch;
  const V = o.profile === 'smoke' ? 300 : o.vocab;
  console.log(`bench/steps: profile ${o.profile}, ${describeBackend(backend)}; GPT-2 ${arch.nLayer} layers x ${arch.nEmbd}, ${arch.nHead} heads, vocabulary ${V}`);
  const rand = mulberry32(1234);
  const results: Result[] = [];
  const cfg: GPT2Config = { vocabSize: V, nPositions: arch.nPositions, nEmbd: arch.nEmbd, nLayer: arch.nLayer, nHead: arch.nHead, layerNormEpsilon: 1e-5, activation: 'gelu_new', embdPdrop: 0.1, residPdrop: 0.1, attnPdrop: 0.1 };
  // dim: the image embedding size, the same in both (the offline profile's CenterNet embedding: 1,640)
  const spec: Record<string, unknown> = { profile: o.profile, vocab: V, arch, steps: o.steps, dim: o.dim };

  // batchesPerStep: a timed step covers that many batches; ms are reported per batch
  const timeSteps = async (kind: string, batches: number[][], lengths: number[], step: (b: number[]) => void | Promise<void>, note: string, torchKind = kind, batchesPerStep = 1, phases?: () => Record<string, number>): Promise<void> => {
    await step(batches[0]); // warm-up (kernels, transposes cached)
    if (o.kernels) {
      await step(batches[1 % batches.length]); // a second warm-up: the first steps still grow the wasm heap
      await printKernelProfile(kind, () => step(batches[1 % batches.length]));
    }
    if (o.products) startOrtProfile();
    takeOrtTotals(); // (the warm-up's products are not counted)
    const ms: number[] = [];
    const phaseSteps: Record<string, number>[] = [];
    let real = 0;
    let padded = 0;
    for (let s = 0; s < o.steps; s++) {
      const b = batches[(s + 1) % batches.length];
      const p0 = phases?.();
      const t0 = performance.now();
      await step(b);
      ms.push(performance.now() - t0);
      if (p0) {
        const p1 = phases!();
        phaseSteps.push(Object.fromEntries(Object.keys(p1).map((k) => [k, p1[k] - p0[k]])));
      }
      const T = Math.max(...b.map((i) => lengths[i]));
      real += b.reduce((a, i) => a + lengths[i], 0);
      padded += b.length * T;
    }
    const tokens = real / o.steps / batchesPerStep;
    const m = median(ms) / batchesPerStep;
    const prod = takeOrtTotals();
    const productsMs = o.products ? prod.ms / o.steps : undefined;
    results.push({ kind, torchKind, msPerStep: m, tokensPerSecond: (tokens / m) * 1000, paddedShare: 1 - real / padded, note, productsMs });
    console.log(`  ${kind.padEnd(22)} ${m.toFixed(0).padStart(6)} ms/step  ${((tokens / m) * 1000).toFixed(0).padStart(6)} caption tokens/s  padding ${((1 - real / padded) * 100).toFixed(1)}%  (${note})`);
    if (o.phases && phaseSteps.length) {
      // medians over the steps, as the step time: a step on a batch shape seen for the first time
      // (kernel set-up in one thread and not the other) would otherwise weigh on the means
      console.log(`  ${''.padEnd(12)} phases, ms/step (medians): ${Object.keys(phaseSteps[0]).map((k) => `${k} ${median(phaseSteps.map((p) => p[k])).toFixed(1)}`).join(', ')}`);
    }
    if (productsMs !== undefined) {
      const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
      console.log(`  ${''.padEnd(12)} matrix products on ${wasmPatchStatus().matmul}: ${productsMs.toFixed(0)} ms/step (${((productsMs / mean) * 100).toFixed(0)}% of the mean step), ${(prod.calls / o.steps).toFixed(0)} calls, ${(prod.flop / prod.ms / 1e6).toFixed(1)} GFLOP/s`);
      for (const [key, e] of prod.rows.slice(0, 6)) console.log(`  ${''.padEnd(14)} ${key.padEnd(44)} ${(e.ms / o.steps).toFixed(1).padStart(6)} ms/step ${String(Math.round(e.n / o.steps)).padStart(4)} calls ${(e.flop / e.ms / 1e6).toFixed(1).padStart(6)} GFLOP/s`);
    }
  };

  // One pool of caption lengths per kind, bucketed as training does.
  if (o.kinds.includes('lm')) {
    const lp = p.lmPretrain;
    // lmTask feeds EOS + sequence and predicts sequence + EOS: a sequence of length l - 2 gives the
    // l - 1 positions (and targets) of a caption of l tokens, as PyTorch's side computes them. With
    // lmPretrain.captionsPerSequence above 1, the captions of a photo (five here) are packed as 02b
    // packs them (packCaptionGroups), and l is the packed sequence's length + 2.
    const perSequence = lp.captionsPerSequence ?? 1;
    const captions = sampleLengths(lp.batchSize * 32 * (perSequence > 1 ? 5 : 1), lp.maxTokens, 11).map((l) => randomTokens(l - 2, V - 1, rand));
    const seqs = packCaptionGroups(captions, captions.map((_, i) => String(Math.floor(i / 5))), { perSequence, maxLength: arch.nPositions - 1, eosId: V - 1 });
    const lens = seqs.map((q) => q.length + 2);
    const gpt = new GPT2(cfg, undefined, { seed: 1 });
    gpt.setTrainable(true);
    const task = lmTask(gpt, seqs, [], V - 1, { saveWeights: async () => {}, loadWeights: async () => {} });
    const batches = bucketedBatches(lens, lp.batchSize, o.steps + 2);
    for (const threads of threadCounts(o, lp.shards)) {
      const opt = new AdamW({ lr: 1e-4, weightDecay: lp.weightDecay });
      const s = await loopStep(task, { shards: o.shards ?? lp.shards ?? 1, threads, microBatchSize: 0, gradClip: 0, lr: 1e-4, opt });
      await timeSteps(kindLabel('lm', threads, s.threads), batches, lens, s.step, `batch ${lp.batchSize}, full training, AdamW${shardNote(s)}`, 'lm', 1, s.phases);
      await s.dispose();
    }
    spec.lm = { batch: lp.batchSize, maxTokens: lp.maxTokens, lr: lp.lr, weightDecay: lp.weightDecay, adamEps: 1e-8, lengths: batches.slice(1, o.steps + 1).map((b) => b.map((i) => lens[i])) };
    gpt.dispose();
  }

  for (const kind of ['mlp', 'transformer'] as const) {
    if (!o.kinds.includes(kind) && !(kind === 'mlp' && (o.kinds.includes('val') || o.kinds.includes('beam')))) continue;
    const t = kind === 'mlp' ? p.mlp : p.transformer;
    const lens = sampleLengths(t.batchSize * 32, t.maxCaptionTokens, 21);
    const toks = lens.map((l) => randomTokens(l, V, rand));
    const embs = lens.map(() => Float32Array.from({ length: o.dim }, () => rand() * 2 - 1));
    const gpt = new GPT2(cfg, undefined, { seed: 2 });
    const mapper = createMapper(defaultMapperConfig({ kind, inputDim: o.dim, embedDim: arch.nEmbd, prefixLength: t.prefixLength, clipLength: t.clipLength, numLayers: t.numLayers, numHeads: t.numHeads }), 3);
    const model = new ClipCapModel(gpt, mapper, t.finetuneLM);
    const vars = model.trainable();
    const scales = t.finetuneLM ? vars.map((v) => (v.name.startsWith('lm.') ? t.lmLrScale : 1)) : undefined;
    const opt = new AdamW({ lr: t.lr, weightDecay: t.weightDecay, eps: t.adamEps });
    const batches = bucketedBatches(lens, t.batchSize, o.steps + 2);
    const emb = (b: number[]) => tf.tensor2d(Float32Array.from(b.flatMap((i) => [...embs[i]])), [b.length, o.dim]);
    if (o.kinds.includes(kind)) {
      const examples = lens.map((_, i) => ({ imageId: String(i), embedding: embs[i], tokens: toks[i] }));
      const task = clipCapTask(model, examples, [], { saveWeights: async () => {}, loadWeights: async () => {} });
      for (const threads of threadCounts(o, t.shards)) {
        const opt = new AdamW({ lr: t.lr, weightDecay: t.weightDecay, eps: t.adamEps });
        const s = await loopStep(task, { shards: o.shards ?? t.shards ?? 1, threads, microBatchSize: 0, gradClip: t.gradClip, lr: t.lr, opt, scales });
        const note = `batch ${t.batchSize}, prefix ${t.prefixLength}, ${kind === 'mlp' ? 'GPT-2 fine-tuned' : `${t.numLayers}-layer mapper, GPT-2 frozen`}${shardNote(s)}`;
        await timeSteps(kindLabel(kind, threads, s.threads), batches, lens, s.step, note, kind, 1, s.phases);
        await s.dispose();
      }
      spec[kind] = { batch: t.batchSize, lr: t.lr, weightDecay: t.weightDecay, adamEps: t.adamEps, prefix: t.prefixLength, clip: t.clipLength, layers: t.numLayers, heads: t.numHeads, finetune: t.finetuneLM, lmLrScale: t.lmLrScale, gradClip: t.gradClip, lengths: batches.slice(1, o.steps + 1).map((b) => b.map((i) => lens[i])) };
    }
    if (kind === 'mlp' && o.kinds.includes('val')) {
      // the validation pass as the loop runs it (evaluateLoss): batches of examples forward, without
      // dropout, spread over the threads (train/parallel.ts lossSums). A timed step is one lossSums call
      // of VAL_PER_THREAD batches per thread; ms are reported per batch. The loop's pass is one call for
      // all its batches (about 160 on Flickr8k dev), so the weights' copy to the worker threads, once a
      // call, weighs more here than there.
      const VAL_PER_THREAD = 2;
      const examples = lens.map((_, i) => ({ imageId: String(i), embedding: embs[i], tokens: toks[i] }));
      const task = clipCapTask(model, examples, [], { saveWeights: async () => {}, loadWeights: async () => {} });
      for (const threads of threadCounts(o, t.shards)) {
        const parallel = await DataParallel.create(task, task.trainable(), { shards: threads, threads });
        const T = parallel.threads;
        const G = T * VAL_PER_THREAD;
        const single = bucketedBatches(lens, t.batchSize, (o.steps + 2) * G);
        const grouped = Array.from({ length: Math.floor(single.length / G) }, (_, g) => single.slice(g * G, (g + 1) * G).flat());
        const note = `batch ${t.batchSize}, forward only, ${G} batches a call${T > 1 ? ` on ${T} threads` : ''}`;
        await timeSteps(kindLabel('val', threads, T), grouped, lens, async (b) => {
          await parallel.lossSums('train', Array.from({ length: G }, (_, k) => b.slice(k * t.batchSize, (k + 1) * t.batchSize)));
        }, note, 'val', G);
        await parallel.dispose();
      }
    }
    if (kind === 'mlp' && o.kinds.includes('beam')) {
      model.lm.setTrainable(false);
      const ev = p.eval;
      const beamOpts = { beamSize: ev.beam, maxNewTokens: 14, eosId: V - 1, noRepeatNgram: ev.noRepeatNgram, lengthPenalty: ev.lengthPenalty };
      const n = BEAM_CHUNK;
      const ids = Array.from({ length: n }, (_, i) => i);
      // one image at a time, then the same images as one batch (captionEmbeddings' chunks), alternating
      const single: number[] = [];
      const batched: number[] = [];
      for (let rep = 0; rep < 2; rep++) {
        let t0 = performance.now();
        for (const i of ids) {
          const prefix = tf.tidy(() => model.prefix(emb([i])));
          beamSearch(model.lm, prefix, beamOpts);
          prefix.dispose();
        }
        single.push((performance.now() - t0) / n);
        t0 = performance.now();
        const prefix = tf.tidy(() => model.prefix(emb(ids)));
        beamSearchBatch(model.lm, prefix, beamOpts);
        prefix.dispose();
        batched.push((performance.now() - t0) / n);
      }
      for (const [label, ms, how] of [['beam', Math.min(...single), 'one image at a time'], ['beam-batch', Math.min(...batched), `${n} images a batch`]] as const) {
        results.push({ kind: label, torchKind: label, msPerStep: ms, tokensPerSecond: 0, paddedShare: 0, note: `beam ${ev.beam}, 14 new tokens a caption, ${how}` });
        console.log(`  ${label.padEnd(12)} ${ms.toFixed(0).padStart(6)} ms/caption  ${(1000 / ms).toFixed(2)} captions/s  (beam ${ev.beam}, 14 new tokens, ${how})`);
      }
      // consensus decoding's samples (eval.mbrSamples, the largest of the variants'), on top of the beams
      // (and their contrast, eval.mbrContrast: a contrast row per sample, the largest of the variants')
      const S = Math.max(ev.mbrSamples, ...Object.values(ev.byVariant ?? {}).map((d) => d?.mbrSamples ?? 0));
      const W = Math.max(ev.mbrContrast, ...Object.values(ev.byVariant ?? {}).map((d) => d?.mbrContrast ?? 0));
      if (S > 0) {
        const T = ev.mbrTemperature;
        const sampled: number[] = [];
        const avg = W > 0 ? tf.tidy(() => model.prefix(tf.zeros([1, o.dim]) as tf.Tensor2D)) : null;
        for (let rep = 0; rep < 2; rep++) {
          const t0 = performance.now();
          const prefix = tf.tidy(() => model.prefix(emb(ids)));
          sampleBatch(model.lm, prefix, { samples: S, temperature: T, maxNewTokens: 14, eosId: V - 1, seeds: ids, ...(avg ? { contrast: { prefix: avg, weight: W } } : {}) });
          prefix.dispose();
          sampled.push((performance.now() - t0) / n);
        }
        avg?.dispose();
        const ms = Math.min(...sampled);
        const how = `${S} samples at temperature ${T}${W > 0 ? ` with contrast ${W}` : ''}`;
        results.push({ kind: 'samples-batch', torchKind: 'samples-batch', msPerStep: ms, tokensPerSecond: 0, paddedShare: 0, note: `${how} per image, 14 new tokens, ${n} images a batch (consensus decoding adds this to beam-batch)` });
        console.log(`  ${'samples-batch'.padEnd(12)} ${ms.toFixed(0).padStart(6)} ms/image    (${how}, 14 new tokens, ${n} images a batch: consensus decoding adds this to beam-batch)`);
      }
    }
    mapper.dispose();
    gpt.dispose();
  }

  const ratios = o.torch ? runTorch(spec, results) : {};
  const outDir = path.join(__dirname, 'out');
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, `steps-${o.profile}.json`), JSON.stringify({ backend: backend.name, results, ratios, at: new Date().toISOString() }, null, 1));
  return ratios;
}

/**
 * --rounds N: the whole comparison N times in a row. This VM's speed drifts from minute to minute, so
 * one round's ratio can be off by a third; the median over rounds is the figure to quote.
 */
async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const all: Record<string, number>[] = [];
  for (let r = 0; r < o.rounds; r++) {
    if (o.rounds > 1) console.log(`round ${r + 1} of ${o.rounds}`);
    all.push(await round(o));
  }
  if (o.rounds > 1 && o.torch) {
    console.log(`ratio to PyTorch's best thread count, each round and the median of ${o.rounds}:`);
    for (const kind of Object.keys(all[0])) {
      const xs = all.map((a) => a[kind]).filter((x) => x !== undefined);
      console.log(`    ${kind.padEnd(22)} ${xs.map((x) => x.toFixed(2)).join(' ')}  median ${median(xs).toFixed(2)}x`);
    }
  }
}

/**
 * PyTorch's settings: torch.set_num_threads(1) and (2), as a user would set them. With one intra-op
 * thread, PyTorch's matrix products still run on OpenBLAS's own thread pool, on every core; `1 core`
 * also limits OpenBLAS to one thread (OPENBLAS_NUM_THREADS=1), PyTorch on one core alone, to compare
 * our one-thread steps with. The best of the first two is what our steps are compared with.
 */
const TORCH_SETTINGS: { label: string; threads: number; env: Record<string, string>; best: boolean }[] = [
  { label: '1 thread', threads: 1, env: {}, best: true },
  { label: '2 threads', threads: 2, env: {}, best: true },
  { label: '1 core', threads: 1, env: { OPENBLAS_NUM_THREADS: '1' }, best: false },
];

function runTorch(spec: Record<string, unknown>, ours: Result[]): Record<string, number> {
  const ratios: Record<string, number> = {};
  const py = '/usr/bin/python3';
  const script = path.join(__dirname, 'steps_torch.py');
  const best: Record<string, number> = {};
  const oneCore: Record<string, number> = {};
  for (const t of TORCH_SETTINGS) {
    const r = spawnSync(py, [script, JSON.stringify(spec), String(t.threads)], { encoding: 'utf8', env: { ...process.env, OPENBLAS_CORETYPE: '', OPENBLAS_L2_SIZE: '', ...t.env } });
    if (r.status !== 0) {
      console.log(`  PyTorch not run (${py} ${script}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
      return ratios;
    }
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    for (const [k, ms] of Object.entries(res)) {
      console.log(`  PyTorch ${t.label}: ${k.padEnd(12)} ${ms.toFixed(0).padStart(6)} ms/step`);
      if (t.best) best[k] = Math.min(best[k] ?? Infinity, ms);
      else oneCore[k] = ms;
    }
  }
  console.log('  ratio to PyTorch\'s best thread count (>1 = ours faster):');
  for (const r of ours) {
    const b = best[r.torchKind];
    if (b === undefined) continue;
    const products = r.productsMs === undefined ? '' : `; our matrix products alone ${r.productsMs.toFixed(0)} ms, ${(r.productsMs / b).toFixed(2)}x PyTorch's whole step`;
    // our one-thread steps also against PyTorch on one core
    const core = r.kind.endsWith(', 1 thread') && oneCore[r.torchKind] !== undefined ? `; ${(oneCore[r.torchKind] / r.msPerStep).toFixed(2)}x PyTorch on 1 core (${oneCore[r.torchKind].toFixed(0)} ms)` : '';
    console.log(`    ${r.kind.padEnd(16)} ${(b / r.msPerStep).toFixed(2)}x  (ours ${r.msPerStep.toFixed(0)} ms, PyTorch ${b.toFixed(0)} ms${products}${core})`);
    ratios[r.kind] = b / r.msPerStep;
  }
  return ratios;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
