// `clipcap caption --run <run dir | run name> [--beam N] [--max-new-tokens N] [--no-repeat-ngram N]
//                  [--length-penalty X] [--contrast W] [--mbr-samples N] [--mbr-temperature T] [--json] IMAGE...`
//
// The decoding is the one notebook 06 uses for the run's profile (e.g. the offline profile's beam 5
// without repeated 3-grams); each option overrides one setting.
// Captions image files with a trained ClipCap run: the encoder recorded in the run (with its
// post-processing, e.g. the stand-in's centring on the training images), the mapper, and the
// language model (fine-tuned weights when the run fine-tuned it). One caption per line, or with
// --json a JSON array of {"file", "caption"} (or {"file", "error"}). Every readable file is
// captioned; the others are reported on stderr, and the exit status is 1 when any failed.
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs } from './args';
import { ensureBackend } from '../lib/tfjs/backend';
import { Captioner, decodeForVariant, decodeOf, describeDecode, type DecodeConfig } from '../lib/eval/caption';
import { profileConfig, type EvalConfig } from '../lib/config';
import { evalProblems } from '../lib/validate';
import { repoRoot } from '../lib/paths';
import { isRunDir } from '../lib/run/files';

const USAGE = `usage: clipcap caption --run RUN [options] IMAGE...
  --run RUN            a run directory (data/<profile>/runs/<name>, or with your own dataset
                       data/<profile>/custom/<dataset>/runs/<name>) or a run name found there
  --beam N             beam width; 1 = greedy
  --max-new-tokens N   longest caption in tokens
  --no-repeat-ngram N  beam search: never repeat an n-gram of N tokens (0 = off)
  --length-penalty X   beam search: beams compete by log-prob / tokens^X (1 = the original's)
  --contrast W         beam search: minus W times the log-prob under the average photo (0 = off)
  --mbr-samples N      consensus decoding: sample N captions per photo and keep, among them and
                       the beams, the one agreeing most (CIDEr-D) with the others (0 = off)
  --mbr-temperature T  consensus decoding: the sampling temperature
  --mbr-contrast W     consensus decoding: sample with minus W times the log-prob under the
                       average photo (0 = from the model itself)
                       (defaults: the decoding of notebook 06 for the run's profile, e.g. the
                       offline profile's beam 5 without repeated 3-grams, at most 30 tokens)
  --verbose            print the decoding used on stderr
  --json               print a JSON array of {"file", "caption"} or {"file", "error"}`;

/** The folders of a directory ([] when it is missing). */
function subdirs(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).map((p) => path.join(dir, p)) : [];
}

/**
 * A run directory from a path or a bare run name (searched under data/<profile>/runs/ and, for runs
 * trained on a dataset of your own, data/<profile>/custom/<dataset>/runs/).
 */
export function resolveRunDir(run: string): string {
  if (isRunDir(run)) return path.resolve(run);
  const profiles = subdirs(path.join(repoRoot(), 'data'));
  const found = [...profiles, ...profiles.flatMap((p) => subdirs(path.join(p, 'custom')))]
    .map((p) => path.join(p, 'runs', run))
    .filter((d) => isRunDir(d));
  if (found.length === 1) return found[0];
  if (found.length > 1) throw new Error(`run name "${run}" exists in several profiles or datasets (${found.join(', ')}); give the directory`);
  throw new Error(`no ClipCap run at "${run}": give a run directory such as data/offline/runs/mlp_finetune (notebooks 03 and 04 make them)`);
}

/**
 * The decoding of notebook 06 for a run's profile and variant (`mlp` or `transformer`: the run's
 * mapper, whose eval.byVariant settings apply), with the command line's overrides (checked).
 */
export function decodingFor(profile: string, values: Record<string, string | number | undefined>, variant?: string): DecodeConfig {
  let evalConfig: EvalConfig;
  try {
    evalConfig = profileConfig(profile).eval;
  } catch {
    evalConfig = profileConfig('offline').eval; // a run of an unknown profile: the offline decoding
  }
  const base: EvalConfig = { ...evalConfig, ...(variant ? decodeForVariant(evalConfig, variant) : {}), byVariant: undefined };
  const pick = (flag: string, v: number) => (values[flag] === undefined ? v : (values[flag] as number));
  const e: EvalConfig = {
    ...base,
    beam: pick('beam', base.beam),
    maxNewTokens: pick('max-new-tokens', base.maxNewTokens),
    noRepeatNgram: pick('no-repeat-ngram', base.noRepeatNgram),
    lengthPenalty: pick('length-penalty', base.lengthPenalty),
    contrastWeight: pick('contrast', base.contrastWeight),
    mbrSamples: pick('mbr-samples', base.mbrSamples),
    mbrTemperature: pick('mbr-temperature', base.mbrTemperature),
    mbrContrast: pick('mbr-contrast', base.mbrContrast),
  };
  const problems = evalProblems(e);
  if (problems.length) throw new Error(`clipcap caption: ${problems.join('; ')}`);
  return decodeOf(e);
}

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, {
    values: { run: 'string', beam: 'number', 'max-new-tokens': 'number', 'no-repeat-ngram': 'number', 'length-penalty': 'number', contrast: 'number', 'mbr-samples': 'number', 'mbr-temperature': 'number', 'mbr-contrast': 'number' },
    flags: ['json', 'verbose'],
    usage: USAGE,
  });
  if (a.help) {
    console.log(USAGE);
    return 0;
  }
  if (!a.values.run || a.positional.length === 0) {
    console.error(`clipcap caption: --run and at least one IMAGE are required\n${USAGE}`);
    return 2;
  }
  const runDir = resolveRunDir(a.values.run as string);
  await ensureBackend({ quiet: true });
  const captioner = await Captioner.open(runDir);
  try {
    const decode = decodingFor(captioner.run.config.profile, a.values, captioner.run.config.train.mapper);
    if (a.flags.verbose) console.error(`clipcap caption: ${describeDecode(decode)} (run ${runDir})`);
    const out = await captioner.caption(a.positional, decode);
    if (a.flags.json) console.log(JSON.stringify(out));
    else for (const r of out) if (r.caption !== undefined) console.log(`${r.file}\t${r.caption}`);
    const failed = out.filter((r) => r.error !== undefined);
    for (const r of failed) console.error(`clipcap caption: ${r.error}`);
    return failed.length ? 1 : 0;
  } finally {
    await captioner.dispose();
  }
}
