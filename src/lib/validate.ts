// One validation of a profile's configuration before any work starts: every field that a stage reads
// is checked for its type and range, and the first problems are reported together, each naming the
// field, the value and what is allowed (a notebook's inline edits are checked the same way).
import { runNameProblem } from './paths';
import { PROFILE_NAMES, type DataConfig, type EncoderConfig, type EvalConfig, type LMConfig, type LMPretrainConfig, type ProfileConfig, type TrainConfig } from './config';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Check = (field: string, value: unknown) => string | null;

const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : String(v));
const int = (min: number, max = Number.MAX_SAFE_INTEGER): Check => (f, v) =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? null : `${f} = ${show(v)}: must be a whole number in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}]`;
const num = (min: number, max: number, opts: { minOpen?: boolean; maxOpen?: boolean } = {}): Check => (f, v) =>
  typeof v === 'number' && Number.isFinite(v) && (opts.minOpen ? v > min : v >= min) && (opts.maxOpen ? v < max : v <= max)
    ? null
    : `${f} = ${show(v)}: must be a number in ${opts.minOpen ? '(' : '['}${min}, ${max === Infinity ? '∞' : max}${opts.maxOpen ? ')' : ']'}`;
const oneOf = (...allowed: unknown[]): Check => (f, v) => (allowed.includes(v) ? null : `${f} = ${show(v)}: must be one of ${allowed.map(show).join(', ')}`);
/** An optional field: absent, or what `check` allows. */
const optional = (check: Check): Check => (f, v) => (v === undefined ? null : check(f, v));
const bool: Check = (f, v) => (typeof v === 'boolean' ? null : `${f} = ${show(v)}: must be true or false`);
const str: Check = (f, v) => (typeof v === 'string' && v.length > 0 ? null : `${f} = ${show(v)}: must be a non-empty string`);

function run(prefix: string, obj: object, checks: Record<string, Check>, out: string[]): void {
  for (const [k, c] of Object.entries(checks)) {
    const p = c(`${prefix}.${k}`, (obj as Record<string, unknown>)[k]);
    if (p) out.push(p);
  }
}

export function dataProblems(d: DataConfig, out: string[] = []): string[] {
  run('data', d, { source: oneOf('coco-karpathy', 'mirror', 'synthetic', 'custom'), seed: int(0), trainCaptions: int(0), valCaptions: int(0), evalImages: int(0), valFraction: num(0, 1, { maxOpen: true }), evalMinCaptions: int(1) }, out);
  if (d.evalImages === 0 && d.source !== 'mirror' && d.source !== 'custom') {
    // 0 = "every photo of the evaluation pool": the mirror's pool (the Flickr8k test split) is one, and
    // so is a dataset of your own (its splits/test.txt, or one photo in ten)
    out.push(`data.evalImages = 0: "every photo of the evaluation pool" exists only with data.source "mirror" (the offline profile's Flickr8k test split) or your own dataset (CLIPCAP_DATASET); with ${show(d.source)} use a whole number from 1 (the number of evaluation photos)`);
  }
  if (d.source === 'custom' && !(typeof d.custom === 'string' && d.custom.length > 0)) {
    out.push(`data.custom = ${show(d.custom)}: data.source "custom" needs the folder of your dataset; set CLIPCAP_DATASET=/path/to/folder (see the README, "Your own photos and captions")`);
  }
  if (d.source !== 'custom' && d.custom !== undefined && d.custom !== '') {
    // edited in notebook 01 alone, it would not reach notebooks 02-06, which read CLIPCAP_DATASET
    out.push(`data.custom = ${show(d.custom)}: set CLIPCAP_DATASET=${typeof d.custom === 'string' ? d.custom : '/path/to/folder'} instead (in the environment of Jupyter or of npm run main), so that notebooks 01-06 all use that folder; then leave data.custom as it is`);
  }
  if (d.source === 'mirror' && (!Array.isArray(d.datasets) || d.datasets.length === 0)) out.push(`data.datasets = ${show(d.datasets)}: list the mirror datasets to use (flickr8k, coco-mini)`);
  if (d.source === 'synthetic') run('data.synthetic', d.synthetic, { images: int(2), size: int(8, 4096) }, out);
  return out;
}

export function encoderProblems(e: EncoderConfig, out: string[] = []): string[] {
  run('encoder', e, { kind: oneOf('clip', 'centernet'), modelId: str, quantized: bool, batchSize: int(1, 4096), workers: int(1, 64) }, out);
  return out;
}

export function lmProblems(lm: LMConfig, out: string[] = []): string[] {
  run('lm', lm, { source: oneOf('hub', 'pretrain', 'random'), modelId: str, restrictVocab: bool }, out);
  if (lm.source !== 'hub') {
    run('lm.arch', lm.arch, { nLayer: int(1, 96), nEmbd: int(1, 16384), nHead: int(1, 256), nPositions: int(2, 65536) }, out);
    if (Number.isInteger(lm.arch.nEmbd) && Number.isInteger(lm.arch.nHead) && lm.arch.nHead > 0 && lm.arch.nEmbd % lm.arch.nHead !== 0) {
      out.push(`lm.arch.nEmbd = ${lm.arch.nEmbd} must be a multiple of lm.arch.nHead = ${lm.arch.nHead}`);
    }
  }
  return out;
}

export function lmPretrainProblems(p: LMPretrainConfig, out: string[] = []): string[] {
  run('lmPretrain', p, { epochs: int(1, 1000), batchSize: int(1, 65536), lr: num(0, 10, { minOpen: true }), warmupSteps: int(0), weightDecay: num(0, 1), maxTokens: int(2, 65536), seed: int(0), valFraction: num(0, 1, { maxOpen: true }), minTokenCount: int(1), maxCaptions: int(0), shards: optional(int(1, 64)), captionsPerSequence: optional(int(1, 64)) }, out);
  return out;
}

export function trainProblems(prefix: string, t: TrainConfig, out: string[] = []): string[] {
  run(prefix, t, {
    name: str,
    mapper: oneOf('mlp', 'transformer'),
    finetuneLM: bool,
    prefixLength: int(1, 4096),
    clipLength: int(1, 4096),
    numLayers: int(1, 64),
    numHeads: int(1, 256),
    batchSize: int(1, 65536),
    microBatchSize: (f, v) => (v === 'auto' ? null : int(0, 65536)(f, v) && `${int(0, 65536)(f, v)} or 'auto'`),
    shards: optional(int(1, 64)),
    lr: num(0, 10, { minOpen: true }),
    lmLrScale: num(0, 1000),
    warmupSteps: int(0),
    warmupFraction: num(0, 1),
    adamEps: num(0, 1, { minOpen: true }),
    epochs: int(1, 10000),
    weightDecay: num(0, 1),
    gradClip: num(0, Infinity),
    seed: int(0),
    maxCaptionTokens: int(2, 65536),
    checkpointEverySteps: int(1),
    maxSteps: int(0),
    divergenceFactor: (f, v) => (v === 0 || (typeof v === 'number' && Number.isFinite(v) && v > 1) ? null : `${f} = ${show(v)}: must be 0 (off) or a number above 1 (stop when the loss exceeds this many times its starting value)`),
  }, out);
  const nameProblem = typeof t.name === 'string' && t.name.length > 0 ? runNameProblem(t.name) : null;
  if (nameProblem) out.push(`${prefix}.name = ${show(t.name)}: ${nameProblem} (it names the run's folder)`);
  return out;
}

export function evalProblems(e: EvalConfig, out: string[] = []): string[] {
  const decoding = { beam: int(1, 64), maxNewTokens: int(1, 1024), noRepeatNgram: int(0, 16), lengthPenalty: num(0, 4), contrastWeight: num(0, 1, { maxOpen: true }), mbrSamples: int(0, 256), mbrTemperature: num(0, 4, { minOpen: true }), mbrContrast: num(0, 1, { maxOpen: true }) };
  run('eval', e, { ...decoding, retrievalK: int(1, 10000), samples: int(0, 1000) }, out);
  if (e.byVariant !== undefined) {
    if (typeof e.byVariant !== 'object' || e.byVariant === null) out.push(`eval.byVariant = ${show(e.byVariant)}: must be an object such as { mlp: { contrastWeight: 0.3 } }`);
    else
      for (const [v, o] of Object.entries(e.byVariant)) {
        if (v !== 'mlp' && v !== 'transformer') out.push(`eval.byVariant.${v}: not a variant (use mlp or transformer)`);
        else if (typeof o !== 'object' || o === null) out.push(`eval.byVariant.${v} = ${show(o)}: must be an object of decoding settings`);
        else
          for (const [k, val] of Object.entries(o)) {
            const check = (decoding as Record<string, Check>)[k];
            if (!check) out.push(`eval.byVariant.${v}.${k}: not a decoding setting (use ${Object.keys(decoding).join(', ')})`);
            else {
              const p = check(`eval.byVariant.${v}.${k}`, val);
              if (p) out.push(p);
            }
          }
      }
  }
  return out;
}

/** Every problem of a profile's configuration (empty when it is valid). */
export function profileProblems(p: ProfileConfig): string[] {
  const out: string[] = [];
  if (!PROFILE_NAMES.includes(p.name)) out.push(`name = ${show(p.name)}: must be one of ${PROFILE_NAMES.join(', ')}`);
  dataProblems(p.data, out);
  encoderProblems(p.encoder, out);
  lmProblems(p.lm, out);
  if (p.lm.source === 'pretrain') lmPretrainProblems(p.lmPretrain, out);
  trainProblems('mlp', p.mlp, out);
  trainProblems('transformer', p.transformer, out);
  evalProblems(p.eval, out);
  return out;
}

/** Throw a ConfigError listing every problem, or return the profile unchanged. */
export function validateProfile(p: ProfileConfig): ProfileConfig {
  const problems = profileProblems(p);
  if (problems.length) throw new ConfigError(problems);
  return p;
}

/** Validate one training config (a notebook's edited copy of profile.mlp / profile.transformer). */
export function validateTrain(t: TrainConfig, prefix = 'train'): TrainConfig {
  const problems = trainProblems(prefix, t);
  if (problems.length) throw new ConfigError(problems);
  return t;
}
