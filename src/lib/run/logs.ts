// The training logs of a run folder (run/files.ts): one JSON line per step and per epoch, appended by
// the training loop and read by the notebooks, the report and the CLI.
import * as fs from 'fs';
import { runFiles } from './files';

export interface StepLog {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  tokens: number;
  gradNorm?: number;
  seconds: number;
}

export interface EpochLog {
  epoch: number;
  trainLoss: number;
  valLoss: number | null;
  /**
   * Image-conditioned tasks: the val loss with every caption conditioned on another photo's embedding.
   * valLossShuffled - valLoss (nats per token) is how much the model uses the image.
   */
  valLossShuffled?: number | null;
  steps: number;
  seconds: number;
}

/** The records of a JSON-lines file ([] when it does not exist); a last line cut by a kill is dropped. */
export function readJsonl<T>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  const out: T[] = [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i].trim();
    if (!l) continue;
    try {
      out.push(JSON.parse(l) as T);
    } catch {
      // A line cut by a kill at the end of the file is dropped; anything else is corruption.
      if (i < lines.length - 2) throw new Error(`${file}: line ${i + 1} is not valid JSON`);
    }
  }
  return out;
}

export function readStepLog(runDir: string): StepLog[] {
  return readJsonl<StepLog>(runFiles(runDir).steps);
}

export function readEpochLog(runDir: string): EpochLog[] {
  return readJsonl<EpochLog>(runFiles(runDir).epochs);
}

/** What a training returns (and, with the run's name and finish time, summary.json holds). */
export interface TrainSummary {
  steps: number;
  epochs: number;
  finalTrainLoss: number | null;
  finalValLoss: number | null;
  /** Image-conditioned tasks: the final val loss with shuffled images (see EpochLog). */
  finalValLossShuffled?: number | null;
  /** Seconds spent training (all sessions of a resumed run added up). */
  trainSeconds: number;
  tokensPerSecond: number;
  resumedFromStep: number;
  completed: boolean;
}
