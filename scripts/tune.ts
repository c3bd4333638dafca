// Recipe search on the validation (dev) split: train one variant with some hyperparameters changed,
// then report what tells a recipe that works from one that does not: the val loss, the val loss with
// shuffled images (the image-use gap), and the dev caption scores and diversity. The test photos are
// never touched here. Needs notebooks 01, 02 and 02b of the profile.
//
//   npx tsx scripts/tune.ts --variant mlp --set lr=1e-3 --set lmLrScale=0.1 --set epochs=8
//   npx tsx scripts/tune.ts --retrieval            # the retrieval baseline on dev, to beat
//   npx tsx scripts/tune.ts --variant mlp --decode noRepeatNgram=3 --decode lengthPenalty=0.5 --photos 300
//                                                   # another decoding of the same run, on 300 dev photos
//
// Each trial trains a run with the changes applied: data/<profile>/runs/<name>-trial@<hash of its
// settings> (without changes: the variant's own run, <name>@<hash>, which the training notebook then
// reuses); a rerun of the same trial resumes or reuses it. One line per trial is appended to
// data/<profile>/tuning/results.jsonl.
import * as fs from 'fs';
import * as path from 'path';
import { type EvalConfig, type TrainConfig } from '../src/lib/config';
import { resolveProfile } from '../src/lib/profile';
import { retrievalOnDev, scoreOnDev, type DevScores } from '../src/lib/eval/dev';
import { DECODE_KEYS, decodeForVariant, type DecodeConfig } from '../src/lib/eval/caption';
import { ConfigError, evalProblems } from '../src/lib/validate';
import { artifactPaths } from '../src/lib/paths';
import { trainVariant } from '../src/lib/train/run';

interface Args {
  variant: 'mlp' | 'transformer';
  set: Record<string, string>;
  decode: Record<string, string>;
  retrieval: boolean;
  beam?: number;
  /** Score on a seeded sample of this many dev photos (0 = all). */
  photos: number;
}

function keyValue(flag: string, kv: string | undefined): [string, string] {
  const eq = (kv ?? '').indexOf('=');
  if (eq < 1) throw new Error(`${flag} wants key=value, got ${JSON.stringify(kv)}`);
  return [kv!.slice(0, eq), kv!.slice(eq + 1)];
}

function parse(argv: string[]): Args {
  const out: Args = { variant: 'mlp', set: {}, decode: {}, retrieval: false, beam: undefined, photos: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--variant') {
      const v = argv[++i];
      if (v !== 'mlp' && v !== 'transformer') throw new Error(`--variant must be mlp or transformer, got ${v}`);
      out.variant = v;
    } else if (a === '--set') {
      const [k, v] = keyValue('--set', argv[++i]);
      out.set[k] = v;
    } else if (a === '--decode') {
      const [k, v] = keyValue('--decode', argv[++i]);
      out.decode[k] = v;
    } else if (a === '--retrieval') out.retrieval = true;
    else if (a === '--beam') out.beam = Number(argv[++i]);
    else if (a === '--photos') {
      out.photos = Number(argv[++i]);
      if (!(Number.isInteger(out.photos) && out.photos >= 0)) throw new Error(`--photos must be a whole number >= 0 (0 = every dev photo), got ${argv[i]}`);
    } else throw new Error(`unknown argument ${a} (use --variant, --set key=value, --decode key=value, --photos N, --retrieval, --beam)`);
  }
  return out;
}

function overrides(base: TrainConfig, set: Record<string, string>): Partial<TrainConfig> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(set)) {
    if (!(k in base)) throw new Error(`--set ${k}: not a training hyperparameter (one of ${Object.keys(base).join(', ')})`);
    const cur = (base as unknown as Record<string, unknown>)[k];
    const val = typeof cur === 'number' ? Number(v) : typeof cur === 'boolean' ? v === 'true' : v;
    if (typeof cur === 'number' && !Number.isFinite(val as number)) throw new Error(`--set ${k}=${v}: not a number`);
    o[k] = val;
  }
  return o as Partial<TrainConfig>;
}

function row(s: DevScores): Record<string, number> {
  return { photos: s.photos, Bleu_4: s.scores.Bleu_4, CIDEr: s.scores.CIDEr, ROUGE_L: s.scores.ROUGE_L, distinctShare: s.diversity.share, vocabulary: s.diversity.vocabulary };
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const profile = await resolveProfile();
  const out = artifactPaths(profile).tuningResults;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  // the variant's own decoding (eval.byVariant applied), then --beam and --decode on top
  const own = decodeForVariant(profile.eval, args.variant);
  const decode: DecodeConfig = { ...own, beam: args.beam ?? own.beam };
  for (const [k, v] of Object.entries(args.decode)) {
    if (!(DECODE_KEYS as readonly string[]).includes(k)) throw new Error(`--decode ${k}: not a decoding setting (${DECODE_KEYS.join(', ')})`);
    (decode as unknown as Record<string, number>)[k] = Number(v);
  }
  const problems = evalProblems({ ...profile.eval, ...decode } as EvalConfig);
  if (problems.length) throw new ConfigError(problems);
  if (args.retrieval) {
    const r = await retrievalOnDev(profile, profile.eval.retrievalK, args.photos);
    const rec = { at: new Date().toISOString(), profile: profile.name, system: `retrieval k=${profile.eval.retrievalK}`, dev: row(r), samples: r.samples };
    fs.appendFileSync(out, JSON.stringify(rec) + '\n');
    console.log(JSON.stringify(rec, null, 1));
    return;
  }
  const base = profile[args.variant];
  const o = overrides(base, args.set);
  // The configured recipe trains the variant's own run (the notebook reuses it); a changed one trains
  // `<name>-trial@<hash>`, so that runs/<name> keeps pointing at the configured recipe.
  const train: TrainConfig = { ...base, ...o, name: Object.keys(o).length ? `${base.name}-trial` : base.name };
  const t0 = Date.now();
  const r = await trainVariant({ profile, train });
  const s = r.summary;
  if (!s.completed || s.finalValLoss === null || !Number.isFinite(s.finalValLoss)) throw new Error(`trial ${train.name} did not finish with a finite val loss`);
  const dev = await scoreOnDev(profile, r.runDir, decode, args.photos);
  const rec = {
    at: new Date().toISOString(),
    profile: profile.name,
    system: args.variant,
    run: r.runDir,
    changes: o,
    valLoss: s.finalValLoss,
    valLossShuffled: s.finalValLossShuffled ?? null,
    imageGap: s.finalValLossShuffled != null ? s.finalValLossShuffled - s.finalValLoss : null,
    trainSeconds: s.trainSeconds,
    wallSeconds: (Date.now() - t0) / 1000,
    decode,
    dev: row(dev),
    samples: dev.samples,
  };
  fs.appendFileSync(out, JSON.stringify(rec) + '\n');
  console.log(JSON.stringify(rec, null, 1));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
