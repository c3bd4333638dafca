// `clipcap caption --run <run dir | run name> [--beam N] [--max-new-tokens N] [--json] IMAGE...`
//
// Captions image files with a trained ClipCap run: the encoder recorded in the run (with its
// post-processing, e.g. the stand-in's centring on the training images), the mapper, and the
// language model (fine-tuned weights when the run fine-tuned it). One caption per line, or with
// --json a JSON array of {"file", "caption"} (or {"file", "error"}). Every readable file is
// captioned; the others are reported on stderr, and the exit status is 1 when any failed.
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs } from './args';
import { ensureBackend } from '../lib/tfjs/backend';
import { Captioner } from '../lib/eval/caption';
import { repoRoot } from '../lib/paths';
import { isRunDir } from '../lib/run/files';

const USAGE = `usage: clipcap caption --run RUN [options] IMAGE...
  --run RUN            a run directory (data/<profile>/runs/<name>, or with your own dataset
                       data/<profile>/custom/<dataset>/runs/<name>) or a run name found there
  --beam N             beam width (default 5, as ClipCap's generate_beam); 1 = greedy
  --max-new-tokens N   longest caption in tokens (default 30)
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

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, { values: { run: 'string', beam: 'number', 'max-new-tokens': 'number' }, flags: ['json'], usage: USAGE });
  if (a.help) {
    console.log(USAGE);
    return 0;
  }
  if (!a.values.run || a.positional.length === 0) {
    console.error(`clipcap caption: --run and at least one IMAGE are required\n${USAGE}`);
    return 2;
  }
  const beam = (a.values.beam as number | undefined) ?? 5;
  const maxNewTokens = (a.values['max-new-tokens'] as number | undefined) ?? 30;
  if (!Number.isInteger(beam) || beam < 1) throw new Error(`--beam must be a positive integer, got ${beam}`);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new Error(`--max-new-tokens must be a positive integer, got ${maxNewTokens}`);
  await ensureBackend({ quiet: true });
  const captioner = await Captioner.open(resolveRunDir(a.values.run as string));
  try {
    const out = await captioner.caption(a.positional, { beam, maxNewTokens });
    if (a.flags.json) console.log(JSON.stringify(out));
    else for (const r of out) if (r.caption !== undefined) console.log(`${r.file}\t${r.caption}`);
    const failed = out.filter((r) => r.error !== undefined);
    for (const r of failed) console.error(`clipcap caption: ${r.error}`);
    return failed.length ? 1 : 0;
  } finally {
    await captioner.dispose();
  }
}
