// How many examples fit in one forward/backward pass: a memory estimate of a ClipCap training pass
// (GPT-2, mapper, batch, sequence length) against the memory of the backend (the wasm heap is 4 GiB),
// so that `microBatchSize: 'auto'` picks passes that fit instead of aborting mid-run. The constants
// are checked against measured peaks by bench/dryrun.ts (GPT-2 124M at the paper's sizes).
import type { GPT2Config } from '../model/gpt2';
import type { TrainConfig } from '../config';
import { backendMemoryBytes } from '../machine';

const F32 = 4;

/**
 * Floats kept per token and layer for the backward pass, in units of the model width: layer-norm
 * inputs and outputs, q/k/v, the attention output, the MLP's 4x-wide input and the terms of GELU's
 * tanh formula, residuals, copies made for the matMuls, and gradients while they are formed. Fitted
 * on the wasm heap measured by bench/dryrun.ts (GPT-2 124M, worst-case 40-token captions: 313-334 MiB
 * per example with a prefix of 10, 730 MiB with the transformer mapper's prefix and clip length of 40),
 * rounded up.
 */
export const ACTIVATION_FLOATS_PER_WIDTH = 180;
/**
 * Floats held per trainable parameter besides its value: its gradient, the accumulated gradient and
 * the new sum while it is formed (the AdamW moments live outside the wasm heap). Measured by
 * bench/dryrun.ts for GPT-2 124M fine-tuned with the MLP mapper (156M trainable parameters, 0.58 GiB):
 * 2.3 GiB fixed when passes are accumulated; clipping the gradients' global norm adds 0.33 GiB more.
 */
export const FLOATS_PER_TRAINABLE = 3.0;
/** Extra floats per trainable parameter while the gradients are clipped (the clipped copies). */
export const CLIP_FLOATS_PER_TRAINABLE = 0.6;
/**
 * The transformer mapper's layers keep fewer floats per token (an MLP of ratio 2 with ReLU, no LM
 * head): fitted on the 730 MiB per example measured with its prefix and clip length of 40.
 */
export const MAPPER_FLOATS_PER_WIDTH = 100;
/** Floats kept per attention score (scores, softmax, its gradient). */
export const ATTENTION_FLOATS_PER_SCORE = 3;
/** Floats per logit (logits, log-softmax, its gradient). */
export const LOGIT_FLOATS = 3;
/** Share of the backend's memory a pass may plan to use (the rest: fragmentation, data, the unexpected). */
export const MEMORY_HEADROOM = 0.85;

export interface PassShape {
  lm: Pick<GPT2Config, 'nLayer' | 'nEmbd' | 'nHead' | 'vocabSize' | 'nPositions'>;
  /** Parameters of the mapping network. */
  mapperParams: number;
  /** GPT-2 is trained too (its gradients and accumulators are held). */
  finetuneLM: boolean;
  /** Tokens of one example: prefix + the longest caption (EOS included). */
  seqLen: number;
  /** Positions scored by the LM head (the caption's; the prefix's outputs are never computed). */
  scoredLen: number;
  /** Extra activations of the mapper per example, in floats (transformer mapper: its own layers). */
  mapperActivationFloats: number;
  gradClip: boolean;
}

/** GPT-2's parameter count (tied LM head). */
export function gpt2Params(c: PassShape['lm']): number {
  const d = c.nEmbd;
  return c.vocabSize * d + c.nPositions * d + c.nLayer * (12 * d * d + 13 * d) + 2 * d;
}

/** Bytes of a training pass of `micro` examples: fixed (weights, gradients, accumulators) + activations. */
export function estimatePassBytes(s: PassShape, micro: number): { fixed: number; perExample: number; total: number } {
  const lmParams = gpt2Params(s.lm);
  const trainable = s.mapperParams + (s.finetuneLM ? lmParams : 0);
  // weights (a frozen GPT-2 also keeps transposed copies of its matrices for the backward products),
  // and per trainable parameter its gradient, the accumulated one and the clipping transients
  const fixed = F32 * (lmParams * (s.finetuneLM ? 1 : 2) + s.mapperParams + trainable * (FLOATS_PER_TRAINABLE + (s.gradClip ? CLIP_FLOATS_PER_TRAINABLE : 0)));
  const T = s.seqLen;
  const perToken = s.lm.nLayer * (ACTIVATION_FLOATS_PER_WIDTH * s.lm.nEmbd + ATTENTION_FLOATS_PER_SCORE * s.lm.nHead * T);
  const perExample = F32 * (perToken * T + LOGIT_FLOATS * s.lm.vocabSize * s.scoredLen + s.mapperActivationFloats);
  return { fixed, perExample, total: fixed + perExample * micro };
}

/** The mapper's parameter count and activation floats per example, from the train config and GPT-2's width. */
export function mapperShape(train: Pick<TrainConfig, 'mapper' | 'prefixLength' | 'clipLength' | 'numLayers'>, inputDim: number, d: number): { params: number; activationFloats: number } {
  if (train.mapper === 'mlp') {
    const hidden = (d * train.prefixLength) / 2;
    const out = d * train.prefixLength;
    return { params: inputDim * hidden + hidden + hidden * out + out, activationFloats: 3 * (hidden + out) };
  }
  // linear CLIP -> clipLength vectors, learned prefix constants, numLayers pre-LN layers (MLP ratio 2)
  const tokens = train.clipLength + train.prefixLength;
  const layer = 4 * d * d + 2 * 2 * d * d + 9 * d;
  return {
    params: inputDim * train.clipLength * d + train.clipLength * d + train.prefixLength * d + train.numLayers * layer,
    activationFloats: train.numLayers * tokens * (MAPPER_FLOATS_PER_WIDTH * d + ATTENTION_FLOATS_PER_SCORE * tokens * 8),
  };
}

export interface MicroBatchChoice {
  /** Examples per pass for LoopConfig.microBatchSize (0 = the whole batch). */
  microBatchSize: number;
  /** Examples per pass, as a count. */
  examples: number;
  estimateBytes: number;
  memoryBytes: number;
  /** In words, for the notebook's config table. */
  why: string;
}

const gib = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;

/**
 * The examples per pass of a run: a forced number is kept (checked against the estimate only to
 * warn); 'auto' takes the largest pass whose estimate fits MEMORY_HEADROOM of the backend's memory
 * (the whole batch, as 0, when it fits), and refuses with a clear error when not even one example fits.
 */
export function chooseMicroBatch(
  train: Pick<TrainConfig, 'microBatchSize' | 'batchSize' | 'maxCaptionTokens' | 'prefixLength' | 'mapper' | 'clipLength' | 'numLayers' | 'finetuneLM' | 'gradClip'>,
  lm: PassShape['lm'],
  inputDim: number,
  backend: string,
  memoryBytes: number = backendMemoryBytes(backend),
): MicroBatchChoice {
  const m = mapperShape(train, inputDim, lm.nEmbd);
  const shape: PassShape = {
    lm,
    mapperParams: m.params,
    mapperActivationFloats: m.activationFloats,
    finetuneLM: train.finetuneLM,
    seqLen: train.prefixLength + train.maxCaptionTokens,
    scoredLen: train.maxCaptionTokens,
    gradClip: train.gradClip > 0,
  };
  const budget = memoryBytes * MEMORY_HEADROOM;
  const at = (n: number) => estimatePassBytes(shape, n).total;
  if (train.microBatchSize !== 'auto') {
    const n = train.microBatchSize === 0 ? train.batchSize : Math.min(train.microBatchSize, train.batchSize);
    const est = at(n);
    const over = est > memoryBytes ? ` (more than the ${backend} backend's ${gib(memoryBytes)}: it may abort; 'auto' would choose a smaller pass)` : '';
    return { microBatchSize: train.microBatchSize, examples: n, estimateBytes: est, memoryBytes, why: `set to ${train.microBatchSize}; estimate ${gib(est)}${over}` };
  }
  let n = train.batchSize;
  while (n > 0 && at(n) > budget) n--;
  if (n === 0) {
    throw new Error(
      `one training example needs about ${gib(at(1))} but the ${backend} backend has ${gib(memoryBytes)}: ` +
        `shorten maxCaptionTokens (${train.maxCaptionTokens}) or prefixLength (${train.prefixLength}), or use a native backend (README: GPU)`,
    );
  }
  const whole = n === train.batchSize;
  return {
    microBatchSize: whole ? 0 : n,
    examples: n,
    estimateBytes: at(n),
    memoryBytes,
    why: `auto: ${whole ? 'the whole batch' : `${n} of ${train.batchSize} examples`} per pass, estimate ${gib(at(n))} of the ${backend} backend's ${gib(memoryBytes)}`,
  };
}
