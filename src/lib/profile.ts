// Which profile this machine runs, decided once per checkout and then kept.
//
// CLIPCAP_PROFILE forces one (paper, coco-cpu, offline, smoke; `auto` or unset = choose). The
// automatic choice: `paper` only where a native GPU backend loads (and the hub is reachable);
// `coco-cpu` (the real models on a COCO subset sized for two CPU cores) where the hub is reachable
// but there is no GPU; `offline` where the hub is not reachable (or HF_HUB_OFFLINE is set). It is
// recorded in data/profile.json by `npm run main` or the first notebook opened, so that every notebook
// of the checkout uses it, across kernel restarts. The paper profile on a CPU backend takes days: it
// is refused, with the estimate, unless CLIPCAP_CONFIRM_PAPER_ON_CPU=1. CLIPCAP_DATASET points any
// profile at a dataset folder of your own (config.ts withCustomDataset).
import * as fs from 'fs';
import * as path from 'path';
import { isProfileName, PROFILE_NAMES, profileConfig, withCustomDataset, type ProfileConfig, type ProfileName } from './config';
import { estimateProfile, formatHours, speedsFor } from './estimate';
import { hubReachable, probeNativeGpu, type GpuProbe } from './machine';
import { artifactPaths, profileChoiceFile } from './paths';
import { settings, type Environment } from './settings';

/** What the machine can do (injectable for tests). */
export interface MachineProbes {
  reachable?: () => Promise<boolean>;
  gpu?: () => GpuProbe;
}

/** The recorded automatic choice of a checkout (data/profile.json). */
export interface ProfileChoice {
  profile: ProfileName;
  reason: string;
  at: string;
}

/** The automatic choice and its reason, in words. */
export async function autoChoice(env?: Environment, probes: MachineProbes = {}): Promise<ProfileChoice> {
  const at = new Date().toISOString();
  if (settings(env).offline) return { profile: 'offline', reason: 'HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set', at };
  const reachable = await (probes.reachable ?? (() => hubReachable(env)))();
  if (!reachable) return { profile: 'offline', reason: 'the Hugging Face hub was not reachable', at };
  const gpu = (probes.gpu ?? (() => probeNativeGpu(env)))();
  if (gpu.gpu) return { profile: 'paper', reason: `the hub was reachable and a native GPU backend loads (${gpu.detail})`, at };
  return { profile: 'coco-cpu', reason: `the hub was reachable but no native GPU backend loads (${gpu.detail}): the paper profile would take days on the CPU`, at };
}

/** CLIPCAP_PROFILE when set (validated), else the automatic choice (not recorded). */
export async function resolveProfileName(env?: Environment, probes: MachineProbes = {}): Promise<ProfileName> {
  return settings(env).forcedProfile(PROFILE_NAMES) ?? (await autoChoice(env, probes)).profile;
}

/**
 * The paper profile on a machine without a native GPU backend: refused with the estimated time,
 * unless CLIPCAP_CONFIRM_PAPER_ON_CPU=1 (the README's words). Returns the warning to print when confirmed.
 */
export function checkPaperOnCpu(name: ProfileName, env: Environment | undefined, probes: MachineProbes = {}): string | null {
  if (name !== 'paper') return null;
  const gpu = (probes.gpu ?? (() => probeNativeGpu(env)))();
  if (gpu.gpu) return null;
  const s = settings(env);
  const backend = s.backend?.startsWith('tfjs-node') ? 'tfjs-node' : 'wasm';
  const est = estimateProfile(profileConfig('paper'), speedsFor(backend));
  const time = est ? `about ${formatHours(est.totalSeconds)} on this kind of machine (${est.basis})` : 'days (run `npm run bench -- --only dryrun` for an estimate)';
  const msg =
    `the paper profile without a GPU backend (${gpu.detail}) takes ${time}. ` +
    'The coco-cpu profile runs the same real models on a subset in about two hours (CLIPCAP_PROFILE=coco-cpu); ' +
    'see the README\'s "GPU" section to use a CUDA GPU.';
  if (!s.confirmPaperOnCpu) throw new Error(`${msg} To start it anyway, set CLIPCAP_CONFIRM_PAPER_ON_CPU=1.`);
  return `${msg} Starting anyway (CLIPCAP_CONFIRM_PAPER_ON_CPU=1).`;
}

/**
 * The profile of a notebook or script: CLIPCAP_PROFILE when set; otherwise the choice recorded in
 * data/profile.json; otherwise the automatic choice, which is then recorded. The choice and its reason
 * are printed. Delete data/profile.json (or set CLIPCAP_PROFILE) to choose again.
 */
export async function resolveProfile(
  env?: Environment,
  opts: { choiceFile?: string | null; quiet?: boolean } & MachineProbes = {},
): Promise<ProfileConfig> {
  const file = opts.choiceFile === undefined ? profileChoiceFile() : opts.choiceFile;
  const say = (m: string) => {
    if (!opts.quiet) console.log(`[clipcap] ${m}`);
  };
  const confirmed = (name: ProfileName) => {
    const warning = checkPaperOnCpu(name, env, opts);
    if (warning) say(warning);
    const dataset = settings(env).dataset;
    if (!dataset) return profileConfig(name);
    const p = withCustomDataset(profileConfig(name), dataset);
    say(`dataset ${dataset} (CLIPCAP_DATASET): your own photos and captions, with the ${name} profile's models and recipe; artifacts in ${path.relative(process.cwd(), artifactPaths(p).root) || '.'}`);
    return p;
  };
  const forced = settings(env).forcedProfile(PROFILE_NAMES);
  if (forced) {
    say(`profile ${forced} (CLIPCAP_PROFILE)`);
    return confirmed(forced);
  }
  if (file && fs.existsSync(file)) {
    const c = JSON.parse(fs.readFileSync(file, 'utf8')) as ProfileChoice;
    if (!isProfileName(c.profile)) throw new Error(`${file} records an unknown profile "${String(c.profile)}": delete it to choose again`);
    say(`profile ${c.profile} (chosen ${c.at.slice(0, 16).replace('T', ' ')} because ${c.reason}; recorded in ${file}: delete it or set CLIPCAP_PROFILE to choose again)`);
    return confirmed(c.profile);
  }
  const c = await autoChoice(env, opts);
  if (file) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(`${file}.tmp-${process.pid}`, JSON.stringify(c, null, 2) + '\n');
    fs.renameSync(`${file}.tmp-${process.pid}`, file);
  }
  say(`profile ${c.profile} (${c.reason}${file ? `; recorded in ${file}` : ''})`);
  const p = confirmed(c.profile);
  const est = estimateProfile(p, speedsFor('wasm'));
  if (est && c.profile === 'coco-cpu') say(`estimated time of notebooks 01-06 on two CPU cores: about ${formatHours(est.totalSeconds)} (${est.basis})`);
  return p;
}
