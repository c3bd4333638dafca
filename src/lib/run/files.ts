// The files of a run folder: the one place that knows their names. A run folder holds
//   config.json    what was trained (RunConfig, or the LM pretraining's settings)
//   steps.jsonl    one line per training step;  epochs.jsonl  train and validation loss per epoch
//   train.lock     held by the process training it (util/lock.ts)
//   checkpoint/    state.json (loop state), optimizer.safetensors, weights/ (as final/): swapped in atomically
//   final/         mapper.safetensors, and lm/ (Hugging Face layout) when GPT-2 was fine-tuned
//   summary.json   final losses and timings (written when training completes)
import * as fs from 'fs';
import * as path from 'path';

/** The weights of a ClipCap model in a folder (final/ or checkpoint/weights/). */
export interface WeightFiles {
  dir: string;
  mapper: string;
  /** The fine-tuned GPT-2 (Hugging Face layout), when there is one. */
  lm: string;
  lmWeights: string;
}

/** The files of a checkpoint folder (checkpoint/, or the temporary folder it is built in). */
export interface CheckpointFiles {
  dir: string;
  state: string;
  optimizer: string;
  weights: string;
}

export interface RunFiles {
  dir: string;
  config: string;
  summary: string;
  steps: string;
  epochs: string;
  lock: string;
  checkpoint: CheckpointFiles;
  final: WeightFiles;
}

export function weightFiles(dir: string): WeightFiles {
  return { dir, mapper: path.join(dir, 'mapper.safetensors'), lm: path.join(dir, 'lm'), lmWeights: path.join(dir, 'lm', 'model.safetensors') };
}

export function checkpointFiles(dir: string): CheckpointFiles {
  return { dir, state: path.join(dir, 'state.json'), optimizer: path.join(dir, 'optimizer.safetensors'), weights: path.join(dir, 'weights') };
}

export function runFiles(dir: string): RunFiles {
  return {
    dir,
    config: path.join(dir, 'config.json'),
    summary: path.join(dir, 'summary.json'),
    steps: path.join(dir, 'steps.jsonl'),
    epochs: path.join(dir, 'epochs.jsonl'),
    lock: path.join(dir, 'train.lock'),
    checkpoint: checkpointFiles(path.join(dir, 'checkpoint')),
    final: weightFiles(path.join(dir, 'final')),
  };
}

/** Is `dir` a run folder (it has a config.json)? */
export function isRunDir(dir: string): boolean {
  return fs.existsSync(runFiles(dir).config);
}
