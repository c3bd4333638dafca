// How long notebooks 01-06 take for a profile on a CPU backend, from speeds measured by the full-size
// dry run (bench/dryrun.ts: GPT-2 124M and CLIP ViT-B/32 with random weights, in their hub layouts,
// trained and run through the profile's own code path). The speeds of the latest dry run on this
// machine (bench/out/dryrun.json) are used when present; otherwise the reference measured by the team
// on the two-core machine this project is developed on (below). Downloads assume DOWNLOAD_MB_PER_S.
import * as fs from 'fs';
import * as path from 'path';
import type { ProfileConfig } from './config';
import { repoRoot } from './paths';
import { captionWorkers } from './machine';

/** Measured at one profile's sizes for one variant. */
export interface VariantSpeed {
  /** Seconds per optimizer step at `batchSize` (captions of typical COCO length). */
  secondsPerStep: number;
  batchSize: number;
  /** Examples per pass used (0 = the whole batch). */
  microBatchSize: number;
  /** Validation loss, seconds per example (the epoch-end pass runs twice: true and shuffled images). */
  valSecondsPerExample: number;
  /** Writing one checkpoint. */
  checkpointSeconds: number;
  /** Beam search, seconds per image, for `generateTokens` steps (the longest beam; random weights may run to maxNewTokens). */
  generateSecondsPerImage: number;
  generateTokens: number;
  /** High-water mark of the backend's memory (wasm heap) over the worst-case pass, bytes. */
  peakBytes: number;
}

export interface SpeedReference {
  /** Where the numbers come from (command, machine, date). */
  source: string;
  backend: string;
  /** CLIP ViT-B/32 image embeddings per second (transformers.js, onnxruntime). */
  clipImagesPerSecond: number;
  /** Keyed by `<profile>/<mlp|transformer>`. */
  variants: Record<string, VariantSpeed>;
}

/**
 * Steps of beam search per caption for a trained model (COCO captions: ~11 words, ~13 tokens, and EOS;
 * beam search runs until every beam has stopped): the dry run's random weights stop at arbitrary
 * lengths, so its time per image is scaled from its `generateTokens` steps to this.
 */
export const CAPTION_TOKENS = 16;
/** Assumed download speed for the COCO annotations and photos (not measurable offline). */
export const DOWNLOAD_MB_PER_S = 10;
/** COCO 2014 caption annotations zip + Karpathy splits zip, MB; a COCO photo, MB. */
const ANNOTATIONS_MB = 241 + 36;
const PHOTO_MB = 0.16;

/**
 * Speeds measured by bench/dryrun.ts on the 2-vCPU machine this project is developed on (wasm
 * backend with its matMuls, 1x1 convolutions and row sums on OpenBLAS, GPT-2 124M and CLIP ViT-B/32
 * with random weights, beam search in batches of 8 photos); bench/out/dryrun.json replaces them where
 * the dry run has been run on this machine. One run on idle cores (`npm run bench -- --only dryrun`,
 * 2026-12-07, with the fused GELU, LayerNorm and attention kernels of tfjs/fused.ts), on a day this
 * VM ran about 1.5x slower than the day before (PyTorch's own reference step in bench/steps.ts took
 * 185 ms against 124). The reference before (2026-12-06, OpenBLAS, no fused kernels) was 16.4 /
 * 24.0 / 11.2 / 6.0 s a step; the one before that (2026-12-02, onnxruntime products, one photo at a
 * time) 48.7 / 68.1 / 32.8 / 16.2.
 */
export const REFERENCE_SPEEDS: SpeedReference = {
  source: 'bench/dryrun.ts on 2 vCPUs (Intel Xeon, AVX-512), wasm backend + OpenBLAS + fused kernels, 2026-12-07',
  backend: 'wasm',
  clipImagesPerSecond: 16.8,
  variants: {
    'paper/mlp': { secondsPerStep: 15.6, batchSize: 40, microBatchSize: 3, valSecondsPerExample: 0.23, checkpointSeconds: 3.0, generateSecondsPerImage: 2.82, generateTokens: 67, peakBytes: 3_438_215_168 },
    'paper/transformer': { secondsPerStep: 26.4, batchSize: 40, microBatchSize: 2, valSecondsPerExample: 0.32, checkpointSeconds: 0.87, generateSecondsPerImage: 2.74, generateTokens: 67, peakBytes: 2_058_289_152 },
    'coco-cpu/mlp': { secondsPerStep: 9.1, batchSize: 20, microBatchSize: 2, valSecondsPerExample: 0.18, checkpointSeconds: 2.6, generateSecondsPerImage: 1.11, generateTokens: 30, peakBytes: 3_495_690_240 },
    'coco-cpu/transformer': { secondsPerStep: 4.1, batchSize: 20, microBatchSize: 4, valSecondsPerExample: 0.14, checkpointSeconds: 0.82, generateSecondsPerImage: 1.05, generateTokens: 30, peakBytes: 1_625_358_336 },
  },
};

/**
 * The wall-clock time of jobs run at the same time, one per core, from the time each takes alone:
 * while both run, each goes `slowdown` times slower (they share the machine's memory bandwidth and,
 * on hyperthreads, a core); when the shorter one ends, the other runs alone. Two jobs of a <= b
 * seconds alone: slowdown * a + (b - a). One job: its own time.
 */
export function concurrentSeconds(alone: readonly number[], slowdown: number): number {
  if (alone.length === 0) return 0;
  if (alone.length > 2) throw new Error('concurrentSeconds: at most two jobs (one per core of a two-core machine)');
  if (!(slowdown >= 1)) throw new Error(`concurrentSeconds: slowdown must be >= 1, got ${slowdown}`);
  const [a, b] = alone.length === 1 ? [0, alone[0]] : [Math.min(alone[0], alone[1]), Math.max(alone[0], alone[1])];
  return slowdown * a + (b - a);
}

/**
 * How much slower each of the two trainings goes while both run (notebook/schedule.ts), measured in
 * the offline benchmark run of 2026-12-06 on the 2-vCPU reference machine: notebook 03 made 2.70
 * steps/s while 04 ran beside it and 2.68 steps/s alone after 04 had finished (each stretch with two
 * validation passes), so its two vCPUs behave as two cores. A machine whose two "cores" are
 * hyperthreads of one would be slower; the estimate does not know.
 */
export const TRAINING_SLOWDOWN = 1.0;

export function dryRunFile(root = repoRoot()): string {
  return path.join(root, 'bench', 'out', 'dryrun.json');
}

/** The measured speeds of this machine when the dry run has been run here, else the reference. */
export function speedsFor(backend: string, file = dryRunFile()): SpeedReference {
  if (fs.existsSync(file)) {
    try {
      const s = JSON.parse(fs.readFileSync(file, 'utf8')) as SpeedReference;
      if (s.backend === backend && s.clipImagesPerSecond > 0) return s;
    } catch {
      // a damaged file: fall back to the reference
    }
  }
  return REFERENCE_SPEEDS;
}

export interface StageEstimate {
  notebook: string;
  what: string;
  seconds: number;
}

export interface ProfileEstimate {
  profile: string;
  stages: StageEstimate[];
  totalSeconds: number;
  /** Where the speeds come from. */
  basis: string;
}

/** Photos a subset of the profile needs (COCO: about five captions a photo). */
function photos(p: ProfileConfig): number {
  return Math.ceil(p.data.trainCaptions / 5) + Math.ceil(p.data.valCaptions / 5) + p.data.evalImages;
}

/**
 * The time of notebooks 01-06 for a hub profile (paper, coco-cpu) on the backend the speeds were
 * measured on; null when the speeds lack one of its variants (then run `npm run bench -- --only dryrun`).
 */
export function estimateProfile(p: ProfileConfig, speeds: SpeedReference): ProfileEstimate | null {
  if (p.lm.source !== 'hub' || p.data.source !== 'coco-karpathy') return null;
  const stages: StageEstimate[] = [];
  const n = photos(p);
  stages.push({ notebook: '01', what: `download ${ANNOTATIONS_MB} MB of annotations and ${n} photos at ${DOWNLOAD_MB_PER_S} MB/s (assumed)`, seconds: (ANNOTATIONS_MB + n * PHOTO_MB) / DOWNLOAD_MB_PER_S });
  if (!(speeds.clipImagesPerSecond > 0)) return null;
  stages.push({ notebook: '02', what: `embed ${n} photos with CLIP ViT-B/32 at ${speeds.clipImagesPerSecond.toFixed(1)} img/s`, seconds: n / speeds.clipImagesPerSecond });
  let generate = 0;
  for (const [nb, kind] of [['03', 'mlp'], ['04', 'transformer']] as const) {
    const t = p[kind];
    const v = speeds.variants[`${p.name}/${kind}`];
    if (!v) return null;
    const steps = Math.floor(p.data.trainCaptions / t.batchSize) * t.epochs;
    const perStep = (v.secondsPerStep * t.batchSize) / v.batchSize;
    const checkpoints = Math.ceil(steps / t.checkpointEverySteps) + t.epochs;
    const seconds = steps * perStep + t.epochs * 2 * p.data.valCaptions * v.valSecondsPerExample + checkpoints * v.checkpointSeconds;
    stages.push({ notebook: nb, what: `${t.name}: ${steps} steps at ${perStep.toFixed(1)} s, ${t.epochs} x 2 validation passes, ${checkpoints} checkpoints`, seconds });
    generate += (p.data.evalImages * v.generateSecondsPerImage * Math.min(CAPTION_TOKENS, p.eval.maxNewTokens)) / v.generateTokens;
  }
  // 06 captions in worker processes, one per core on a CPU backend (machine.ts): the offline
  // run's captioning went from 192 to 96 s on two (2.0x).
  const workers = captionWorkers(p.data.evalImages, speeds.backend);
  stages.push({ notebook: '06', what: `beam search (${p.eval.beam}) on ${p.data.evalImages} photos, both variants, ~${CAPTION_TOKENS} tokens a caption${workers > 1 ? `, in ${workers} processes` : ''}`, seconds: generate / workers });
  // 03 and 04 run at the same time, one core each (notebook/schedule.ts): the total counts them as such.
  const trainings = stages.filter((s) => s.notebook === '03' || s.notebook === '04').map((s) => s.seconds);
  const together = concurrentSeconds(trainings, TRAINING_SLOWDOWN);
  stages.push({ notebook: '03 + 04', what: `at the same time, one core each, ${TRAINING_SLOWDOWN === 1 ? "neither slower" : `each ${TRAINING_SLOWDOWN}x slower`} while both run (measured at the offline profile's shapes): ${formatHours(together)} of wall time, not ${formatHours(trainings[0] + trainings[1])}`, seconds: together });
  const total = stages.filter((s) => s.notebook !== '03' && s.notebook !== '04').reduce((a, s) => a + s.seconds, 0);
  return { profile: p.name, stages, totalSeconds: total, basis: speeds.source };
}

/** "about 2h05m" style. */
export function formatHours(seconds: number): string {
  const m = Math.round(seconds / 60);
  if (m < 60) return `${m} min`;
  if (m < 48 * 60) return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
  return `${(m / 60 / 24).toFixed(1)} days`;
}
