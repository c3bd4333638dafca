// The full-size dry run: the closest we get to the real paper run without the real weights.
//
// GPT-2 124M and CLIP ViT-B/32 with random weights, written in their exact hub layouts (`gpt2`:
// config.json, model.safetensors with Conv1D weights and attn.bias buffers, vocab.json, merges.txt;
// `Xenova/clip-vit-base-patch32`: config.json, preprocessor_config.json, onnx/vision_model.onnx), are
// served by a loopback hub and loaded through the project's hub code (transformers.js conventions,
// atomic cache). Then, for each profile (paper, coco-cpu) and variant, in a process of its own (the
// wasm heap only grows, so each case gets a fresh one): the examples per pass that `microBatchSize:
// 'auto'` chooses, a worst-case training step (every caption at maxCaptionTokens) through the training
// loop with its checkpoint, the validation pass, typical steps (coco-mini's real captions), and beam
// search. Reported: peak heap against the memory estimate and the backend's limit, seconds per step,
// and the extrapolated time of notebooks 01-06 (estimate.ts). Results: bench/out/dryrun.json, which
// estimate.ts then uses on this machine.
//
//   npx tsx bench/dryrun.ts [--profiles paper,coco-cpu] [--variants mlp,transformer] [--steps 3]
//                           [--layers N]   (N < 12: a shallower GPT-2, to try the bench quickly)
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { profileConfig, type ProfileConfig, type TrainConfig } from '../src/lib/config';
import { estimateProfile, formatHours, type SpeedReference, type VariantSpeed } from '../src/lib/estimate';
import { backendMemoryBytes } from '../src/lib/machine';
import { ensureBackend } from '../src/lib/tfjs/backend';
import { wasmHeapBytes } from '../src/lib/tfjs/wasm-internals';
import { loadLanguageModel } from '../src/lib/model/gpt2-hf';
import { gpt2TokenizerFiles } from '../src/lib/model/tokenizer';
import { createMapper } from '../src/lib/model/mapper';
import { ClipCapModel } from '../src/lib/model/clipcap';
import { beamSearchBatch } from '../src/lib/model/generate';
import { BEAM_CHUNK } from '../src/lib/eval/caption';
import { clipCapTask, captionTokens, type CaptionExample } from '../src/lib/train/examples';
import { evaluateLoss, runTraining } from '../src/lib/train/loop';
import { chooseMicroBatch } from '../src/lib/train/memory';
import { loopConfigFor, mapperConfigFor } from '../src/lib/train/run';
import { ensureRandomClip, VIT_B32_SPEC } from '../src/lib/embed/encoders/tiny-clip';
import { extractEmbeddings, type ExtractImage } from '../src/lib/embed/extract';
import { writeSafetensors } from '../src/lib/io/safetensors';
import { mulberry32 } from '../src/lib/util/rng';
import { writeJsonAtomic } from '../src/lib/util/files';
import { mirrorDir, repoRoot } from '../src/lib/paths';
import { tableText } from '../src/lib/notebook/display';
import { startHubServer } from '../test/helpers/hub-server';
import { hfConfigJson, writeTinyGPT2 } from '../test/helpers/gpt2-fixture';

const OUT = path.join(repoRoot(), 'bench', 'out');
const HUB = path.join(OUT, 'hub');
const CLIP_DIM = 512;

interface Opts {
  profiles: string[];
  variants: ('mlp' | 'transformer')[];
  steps: number;
  layers: number;
  images: number;
  caseName?: string;
  /** Only the memory calibration (1 and 2 examples per pass) of each case. */
  calibrateOnly?: boolean;
}

function parse(argv: string[]): Opts {
  const o: Opts = { profiles: ['paper', 'coco-cpu'], variants: ['mlp', 'transformer'], steps: 3, layers: 12, images: 48 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--profiles') o.profiles = argv[++i].split(',');
    else if (a === '--variants') o.variants = argv[++i].split(',') as Opts['variants'];
    else if (a === '--steps') o.steps = Number(argv[++i]);
    else if (a === '--layers') o.layers = Number(argv[++i]);
    else if (a === '--images') o.images = Number(argv[++i]);
    else if (a === '--case') o.caseName = argv[++i];
    else if (a === '--calibrate-only') o.calibrateOnly = true;
    // `npm run bench -- --torch` passes --torch to every benchmark: the dry run has no PyTorch side
    // (its reference is the hub profiles' time budget), so it says so and runs as usual
    else if (a === '--torch') console.log('bench/dryrun: no PyTorch comparison here (--torch applies to bench/steps and bench/gpt2)');
    else throw new Error(`bench/dryrun: unknown argument ${a}`);
  }
  return o;
}

/**
 * A random GPT-2 124M (std 0.02) in the hub layout of `gpt2`: config.json, model.safetensors with the
 * Conv1D weights and the attn.bias / attn.masked_bias buffers, vocab.json and merges.txt. `nLayer` < 12
 * gives a shallower model for a quick try.
 */
function writeRandomGPT2(dir: string, nLayer: number): void {
  const marker = path.join(dir, 'clipcap_generated.json');
  if (fs.existsSync(marker) && JSON.parse(fs.readFileSync(marker, 'utf8')).nLayer === nLayer) return;
  console.log(`[dryrun] writing a random GPT-2 (${nLayer} layers) in the hub layout to ${dir} ...`);
  fs.rmSync(dir, { recursive: true, force: true });
  const shape = { vocabSize: 50257, nPositions: 1024, nEmbd: 768, nLayer, nHead: 12, layerNormEpsilon: 1e-5 };
  writeTinyGPT2(dir, shape, { buffers: true, scale: 0.02, seed: 124 });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfigJson(shape, { n_ctx: 1024, task_specific_params: { 'text-generation': { do_sample: true, max_length: 50 } } }), null, 2));
  for (const [name, text] of Object.entries(gpt2TokenizerFiles())) fs.writeFileSync(path.join(dir, name), text);
  fs.writeFileSync(marker, JSON.stringify({ nLayer, note: 'random weights in the layout of the hub repository gpt2; not a trained model' }));
}

/** coco-mini's photos and captions (real lengths), or generated ones when there is no mirror. */
function cocoMini(): { images: ExtractImage[]; captions: string[] } {
  const mirror = mirrorDir();
  const dir = mirror ? path.join(mirror, 'coco-mini') : '';
  if (!dir || !fs.existsSync(path.join(dir, 'captions.json'))) return { images: [], captions: [] };
  const j = JSON.parse(fs.readFileSync(path.join(dir, 'captions.json'), 'utf8')) as { images?: { file_name: string; id: number }[]; annotations?: { caption: string }[] };
  const files = fs.readdirSync(path.join(dir, 'images')).filter((f) => /\.jpe?g$/i.test(f)).sort();
  return {
    images: files.map((f) => ({ image_id: path.parse(f).name, file: path.join(dir, 'images', f) })),
    captions: (j.annotations ?? []).map((a) => a.caption),
  };
}

interface CaseResult extends VariantSpeed {
  case: string;
  chosen: string;
  estimateBytes: number;
  memoryBytes: number;
  peakRssBytes: number;
  worstSecondsPerStep: number;
  /** Heap after one pass of one example (the fixed part plus one example). */
  peakAfterOneBytes: number;
  loadSeconds: number;
}

/** One profile x variant, in this (fresh) process. */
async function runCase(name: string, steps: number): Promise<CaseResult> {
  const [profileName, variant] = name.split('/') as [string, 'mlp' | 'transformer'];
  const backend = await ensureBackend({ quiet: true });
  const profile: ProfileConfig = profileConfig(profileName);
  const train: TrainConfig = profile[variant];
  let rss = 0;
  const sample = () => (rss = Math.max(rss, process.memoryUsage().rss));
  const t0 = Date.now();
  const lm = await loadLanguageModel(profile.lm.modelId, { progress: false });
  const loadSeconds = (Date.now() - t0) / 1000;
  const passes = chooseMicroBatch(train, lm.model.config, CLIP_DIM, backend.name);
  const micro = passes.examples;
  const estimateFor = (m: number) => chooseMicroBatch({ ...train, microBatchSize: m }, lm.model.config, CLIP_DIM, backend.name).estimateBytes;
  console.log(`DRYRUN-CHOICE ${JSON.stringify({ case: name, why: passes.why })}`);
  const mapper = createMapper(mapperConfigFor(train, CLIP_DIM, lm.model.config), train.seed);
  const model = new ClipCapModel(lm.model, mapper, train.finetuneLM);
  const rand = mulberry32(7);
  const emb = () => Float32Array.from({ length: CLIP_DIM }, () => rand() * 2 - 1);
  const eos = lm.tokenizer.eosId;
  const longest = (i: number): CaptionExample => ({ imageId: `w${i}`, embedding: emb(), tokens: captionTokens(Array.from({ length: train.maxCaptionTokens }, (_, k) => (k * 7919 + i) % eos), eos, train.maxCaptionTokens) });
  const real = cocoMini().captions;
  const typical = (i: number): CaptionExample => {
    const text = real.length ? real[i % real.length] : 'a man riding a wave on top of a surfboard in the ocean';
    return { imageId: `t${i % 97}`, embedding: emb(), tokens: captionTokens(lm.tokenizer.encode(text.trim()), eos, train.maxCaptionTokens) };
  };
  const io = { saveWeights: async () => undefined, loadWeights: async () => undefined };
  const runRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-dryrun-'));
  try {
    // calibration: one step of the training loop (AdamW, accumulators, clipping, checkpoint) on 1, then
    // 2 worst-case examples in one pass; the heap only grows, so each reading is that pass's peak
    const heapAt: number[] = [];
    for (const m of [1, 2]) {
      const cal = clipCapTask(model, Array.from({ length: m }, (_, i) => longest(i)), [], io);
      await runTraining(cal, { ...loopConfigFor(train, m, 0), batchSize: m, maxSteps: 1, checkpointEverySteps: 1000 }, path.join(runRoot, `cal${m}`), { write: () => undefined });
      heapAt.push(wasmHeapBytes() ?? 0);
      console.log(`DRYRUN-HEAP ${JSON.stringify({ case: name, examples: m, heapBytes: heapAt[heapAt.length - 1], estimateBytes: estimateFor(m) })}`);
    }
    const peakAfterOne = heapAt[0];
    sample();
    if (process.env.CLIPCAP_DRYRUN_CALIBRATE_ONLY === '1') process.exit(0);

    // worst case: one step of the training loop on captions of maxCaptionTokens, then the validation pass
    const worst = clipCapTask(model, Array.from({ length: train.batchSize }, (_, i) => longest(i)), Array.from({ length: micro * 2 }, (_, i) => longest(1000 + i)), io);
    const loopW = { ...loopConfigFor(train, train.batchSize, passes.microBatchSize), maxSteps: 1, checkpointEverySteps: 1000 };
    const w0 = Date.now();
    await runTraining(worst, loopW, path.join(runRoot, 'worst'), { write: () => undefined });
    const worstSeconds = (Date.now() - w0) / 1000;
    sample();
    const v0 = Date.now();
    await evaluateLoss(worst, 'val', micro);
    const valSecondsPerExample = (Date.now() - v0) / 1000 / (micro * 2);
    sample();
    const peak = wasmHeapBytes() ?? 0;

    // typical steps (real caption lengths, batches bucketed by length as in training), with the loop's checkpoint
    const n = train.batchSize * (steps + 1);
    const typ = clipCapTask(model, Array.from({ length: n }, (_, i) => typical(i)), [], {
      saveWeights: async (dir) => {
        fs.mkdirSync(dir, { recursive: true });
        writeSafetensors(path.join(dir, 'weights.safetensors'), new Map(model.trainable().map((v) => [v.name, { shape: v.variable.shape, data: v.variable.dataSync() as Float32Array }])), { format: 'pt' });
      },
      loadWeights: async () => undefined,
    });
    const stepSeconds: number[] = [];
    const loopT = { ...loopConfigFor(train, n, passes.microBatchSize), maxSteps: steps + 1, checkpointEverySteps: 100_000 };
    const s0 = Date.now();
    await runTraining(typ, loopT, path.join(runRoot, 'typical'), { write: () => undefined, onStep: (l) => stepSeconds.push(l.seconds) });
    const wall = (Date.now() - s0) / 1000;
    sample();
    const timed = stepSeconds.slice(1).sort((a, b) => a - b);
    const secondsPerStep = timed.length ? timed[Math.floor(timed.length / 2)] : stepSeconds[0];
    const checkpointSeconds = Math.max(0, wall - stepSeconds.reduce((a, b) => a + b, 0));

    // beam search of one batch of photos as notebook 06 decodes them (BEAM_CHUNK prefixes in one
    // GPT-2 batch); its steps per photo: the longest beam (a stopped beam stops growing)
    const g0 = Date.now();
    const prefix = tf.tidy(() => model.prefix(tf.tensor2d(Float32Array.from(Array.from({ length: BEAM_CHUNK }, () => [...emb()]).flat()), [BEAM_CHUNK, CLIP_DIM])));
    const all = beamSearchBatch(model.lm, prefix, { maxNewTokens: profile.eval.maxNewTokens, eosId: eos, beamSize: profile.eval.beam });
    prefix.dispose();
    const generated = all.reduce((a, beams) => a + Math.min(profile.eval.maxNewTokens, Math.max(...beams.map((b) => b.ids.length + 1))), 0);
    const generateSecondsPerImage = (Date.now() - g0) / 1000 / BEAM_CHUNK;
    const generateTokens = generated / BEAM_CHUNK;
    sample();
    return {
      case: name,
      chosen: passes.why,
      estimateBytes: passes.estimateBytes,
      memoryBytes: passes.memoryBytes,
      peakBytes: Math.max(peak, wasmHeapBytes() ?? 0),
      peakAfterOneBytes: peakAfterOne,
      peakRssBytes: rss,
      secondsPerStep,
      worstSecondsPerStep: worstSeconds,
      batchSize: train.batchSize,
      microBatchSize: passes.microBatchSize,
      valSecondsPerExample,
      checkpointSeconds,
      generateSecondsPerImage,
      generateTokens,
      loadSeconds,
    };
  } finally {
    fs.rmSync(runRoot, { recursive: true, force: true });
  }
}

function child(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', __filename, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      process.stdout.write(d);
    });
    p.on('close', (code) => resolve({ code, out }));
  });
}

const gib = (b: number) => (b / 1024 ** 3).toFixed(2);

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  if (o.calibrateOnly) process.env.CLIPCAP_DRYRUN_CALIBRATE_ONLY = '1';
  if (o.caseName) {
    const r = await runCase(o.caseName, o.steps);
    console.log(`DRYRUN ${JSON.stringify(r)}`);
    return;
  }
  const backend = await ensureBackend({ quiet: true });
  fs.mkdirSync(OUT, { recursive: true });
  writeRandomGPT2(path.join(HUB, 'gpt2'), o.layers);
  await ensureRandomClip(path.join(HUB, 'Xenova', 'clip-vit-base-patch32'), VIT_B32_SPEC);
  const hub = await startHubServer(HUB);
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-dryrun-cache-'));
  const env = { ...process.env, CLIPCAP_HUB_URL: hub.url, CLIPCAP_CACHE: cache, CLIPCAP_QUIET_BACKEND: '1' };
  Object.assign(process.env, { CLIPCAP_HUB_URL: hub.url, CLIPCAP_CACHE: cache });
  const started = new Date();
  try {
    // CLIP through transformers.js from the loopback hub, as notebook 02 runs it
    const { images } = cocoMini();
    let clipImagesPerSecond = 0;
    if (images.length) {
      const p = profileConfig(o.profiles[0]);
      const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-dryrun-store-'));
      const r = await extractEmbeddings({ encoder: p.encoder, images: images.slice(0, o.images), storeDir, dataset: 'dryrun', workers: p.encoder.workers, models: path.join(OUT, 'models'), progress: false });
      fs.rmSync(storeDir, { recursive: true, force: true });
      clipImagesPerSecond = r.embedded / Math.max(1e-9, r.seconds - r.loadSeconds);
      console.log(`[dryrun] CLIP ViT-B/32 (random weights, hub layout): ${r.embedded} photos, ${clipImagesPerSecond.toFixed(1)} img/s after loading (${r.loadSeconds.toFixed(1)} s)`);
    } else console.log('[dryrun] no coco-mini photos in the mirror: CLIP speed not measured');

    const results: CaseResult[] = [];
    const failures: string[] = [];
    const calibration: Record<string, unknown>[] = [];
    for (const prof of o.profiles) {
      for (const v of o.variants) {
        const name = `${prof}/${v}`;
        console.log(`[dryrun] ${name} ...`);
        const r = await child(['--case', name, '--steps', String(o.steps)], env);
        const line = r.out.split('\n').find((l) => l.startsWith('DRYRUN '));
        const heap = r.out.split('\n').filter((l) => l.startsWith('DRYRUN-HEAP ')).map((l) => JSON.parse(l.slice(12)) as { examples: number; heapBytes: number; estimateBytes: number });
        for (const h of heap) calibration.push({ case: name, 'examples/pass': h.examples, 'estimate GiB': gib(h.estimateBytes), 'peak heap GiB': gib(h.heapBytes) });
        if (heap.length === 2) {
          const per = heap[1].heapBytes - heap[0].heapBytes;
          console.log(`[dryrun] ${name}: measured fixed ${gib(heap[0].heapBytes - per)} GiB + ${(per / 1024 ** 2).toFixed(0)} MiB per worst-case example; estimate fixed ${gib(heap[0].estimateBytes - (heap[1].estimateBytes - heap[0].estimateBytes))} GiB + ${((heap[1].estimateBytes - heap[0].estimateBytes) / 1024 ** 2).toFixed(0)} MiB`);
        }
        if (r.code !== 0 || !line) {
          failures.push(`${name}: exit ${r.code} (${r.out.split('\n').filter((l) => l.startsWith('DRYRUN-CHOICE')).map((l) => JSON.parse(l.slice(14)).why).join('')})`);
          continue;
        }
        results.push(JSON.parse(line.slice(7)) as CaseResult);
      }
    }
    console.log(
      '\n' +
        tableText(
          results.map((r) => ({
            case: r.case,
            'examples/pass': r.microBatchSize || r.batchSize,
            'estimate GiB': gib(r.estimateBytes),
            'peak heap GiB': gib(r.peakBytes),
            'heap limit GiB': gib(r.memoryBytes),
            'estimate >= peak': r.estimateBytes >= r.peakBytes ? 'yes' : 'NO',
            'peak RSS GiB': gib(r.peakRssBytes),
            's/step': r.secondsPerStep.toFixed(1),
            'worst s/step': r.worstSecondsPerStep.toFixed(1),
            'val s/ex': r.valSecondsPerExample.toFixed(2),
            'ckpt s': r.checkpointSeconds.toFixed(1),
            'beam s/img': r.generateSecondsPerImage.toFixed(1),
            'beam steps': r.generateTokens,
          })),
        ),
    );
    if (calibration.length) console.log('\nmemory of one training step, worst-case captions, by examples per pass:\n' + tableText(calibration));
    const speeds: SpeedReference = {
      source: `bench/dryrun.ts on ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'CPU'}, ${started.toISOString().slice(0, 10)}${o.layers !== 12 ? ` (GPT-2 with ${o.layers} layers, not 12)` : ''}`,
      backend: backend.name,
      clipImagesPerSecond,
      variants: Object.fromEntries(
        results.map((r) => [
          r.case,
          { secondsPerStep: r.secondsPerStep, batchSize: r.batchSize, microBatchSize: r.microBatchSize, valSecondsPerExample: r.valSecondsPerExample, checkpointSeconds: r.checkpointSeconds, generateSecondsPerImage: r.generateSecondsPerImage, generateTokens: r.generateTokens, peakBytes: r.peakBytes },
        ]),
      ),
    };
    for (const prof of o.profiles) {
      const est = estimateProfile(profileConfig(prof), speeds);
      if (!est) continue;
      console.log(`\n[dryrun] profile ${prof}, extrapolated (${backend.name}, this machine): about ${formatHours(est.totalSeconds)}`);
      console.log(tableText(est.stages.map((s) => ({ notebook: s.notebook, what: s.what, time: formatHours(s.seconds) }))));
    }
    if (o.layers === 12 && failures.length === 0) writeJsonAtomic(path.join(OUT, 'dryrun.json'), { ...speeds, results, calibration, heapLimitBytes: backendMemoryBytes(backend.name) });
    if (failures.length) {
      console.log(`[dryrun] FAILED: ${failures.join('; ')}`);
      process.exitCode = 1;
    }
  } finally {
    await hub.close();
    fs.rmSync(cache, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
