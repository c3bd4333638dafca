// Where things live: the repository root, the local data mirror, and each profile's artifacts.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { settings, type Environment } from './settings';

const PACKAGE_NAME = 'clipcap-ts';

let cachedRoot: string | null = null;

/** The repository root: the nearest ancestor of this module (or of the cwd) holding our package.json. */
export function repoRoot(): string {
  if (cachedRoot) return cachedRoot;
  for (const start of [__dirname, process.cwd()]) {
    let dir = start;
    for (;;) {
      const pj = path.join(dir, 'package.json');
      if (fs.existsSync(pj)) {
        try {
          if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === PACKAGE_NAME) {
            cachedRoot = dir;
            return dir;
          }
        } catch {
          /* not ours */
        }
      }
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  throw new Error(`cannot find the ${PACKAGE_NAME} repository root above ${__dirname} or ${process.cwd()}`);
}

/**
 * The local data mirror (photos and captions). `CLIPCAP_DATA_DIR` wins; otherwise `../shared/data`
 * beside the checkout when it exists. Returns null when neither exists.
 */
export function mirrorDir(env?: Environment): string | null {
  const dir = settings(env).dataDir;
  if (dir) return dir;
  const shared = path.resolve(repoRoot(), '..', 'shared', 'data');
  return fs.existsSync(shared) ? shared : null;
}

/** Like mirrorDir, but a clear error when there is none. */
export function requireMirrorDir(env?: Environment): string {
  const dir = mirrorDir(env);
  if (!dir) {
    throw new Error(
      'no local data mirror: set CLIPCAP_DATA_DIR to a folder holding coco-mini/ and flickr8k/ (or flickr8k-mini/) ' +
        `(see data/README.md), or place it at ${path.resolve(repoRoot(), '..', 'shared', 'data')}`,
    );
  }
  if (!fs.existsSync(dir)) {
    throw new Error(`CLIPCAP_DATA_DIR=${dir} does not exist; point it at the folder holding coco-mini/ and flickr8k/ (or flickr8k-mini/)`);
  }
  return dir;
}

/** Every artifact of one profile, under data/<profile>/ (figures and report: see below). */
export interface ArtifactPaths {
  root: string;
  subsets: string;
  embeddings: string;
  lm: string;
  runs: string;
  eval: string;
  /** Figures: figures/ for real profiles, data/smoke/figures for the smoke profile (a dataset of your own: its folder's figures/). */
  figures: string;
  /** REPORT.md at the root for real profiles, data/smoke/REPORT.md for smoke (a dataset of your own: its folder's REPORT.md). */
  report: string;
  /** Models and fixtures generated locally (tiny random models), data/<profile>/models whatever the dataset. */
  models: string;
  /** Executed copies of the notebooks. */
  executed: string;
  /** Dev-split trials of scripts/tune.ts, one JSON line each (REPORT.md's recipe table). */
  tuningResults: string;
}

/**
 * Whose artifacts: a profile name, or a profile (config.ts ProfileConfig fits) whose data.custom names
 * a dataset folder of the user's own (CLIPCAP_DATASET): those artifacts live apart, see artifactPaths.
 */
export type ArtifactOwner = string | { name: string; data?: { custom?: string } };

/**
 * The folder name of a dataset of your own under data/<profile>/custom/: the folder's name and 8 hex
 * digits of its absolute path (two folders of the same name never share embeddings or runs).
 */
export function customDatasetKey(folder: string): string {
  const abs = path.resolve(folder);
  const h = crypto.createHash('sha256').update(abs).digest('hex').slice(0, 8);
  return `${safeName(path.basename(abs)).replace(/^[._-]+/, '') || 'dataset'}-${h}`;
}

/**
 * Every artifact of one profile, under data/<profile>/. With a dataset of your own (data.custom) they
 * go under data/<profile>/custom/<customDatasetKey>/ instead, figures and REPORT.md included (the
 * committed REPORT.md and figures/ stay the profile's), except the generated models (shared).
 */
export function artifactPaths(owner: ArtifactOwner, root: string = repoRoot()): ArtifactPaths {
  const profile = typeof owner === 'string' ? owner : owner.name;
  const custom = typeof owner === 'string' ? undefined : owner.data?.custom || undefined;
  const profileBase = path.join(root, 'data', profile);
  const base = custom ? path.join(profileBase, 'custom', customDatasetKey(custom)) : profileBase;
  const own = custom !== undefined || profile === 'smoke';
  return {
    root: base,
    subsets: path.join(base, 'subsets'),
    embeddings: path.join(base, 'embeddings'),
    lm: path.join(base, 'lm'),
    runs: path.join(base, 'runs'),
    eval: path.join(base, 'eval'),
    figures: own ? path.join(base, 'figures') : path.join(root, 'figures'),
    report: own ? path.join(base, 'REPORT.md') : path.join(root, 'REPORT.md'),
    models: path.join(profileBase, 'models'),
    executed: path.join(base, 'notebooks'),
    tuningResults: path.join(base, 'tuning', 'results.jsonl'),
  };
}

/** A file-system-safe version of a name (hub ids contain '/'). */
export function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_');
}

/** The folder of one encoder's stores (and its center.json) under a profile's embeddings folder. */
export function encoderDir(embeddingsRoot: string, encoderName: string): string {
  return path.join(embeddingsRoot, safeName(encoderName));
}

/** The store directory of one (encoder, dataset) under a profile's embeddings folder. */
export function storeDir(embeddingsRoot: string, encoderName: string, dataset: string): string {
  return path.join(encoderDir(embeddingsRoot, encoderName), safeName(dataset));
}

/**
 * Why `name` cannot name a run (null when it can): a run name is one plain folder name (letters,
 * digits, '.', '_' and '-', starting with a letter or digit), never '.', '..', a path or a hidden name,
 * because it becomes data/<profile>/runs/<name> and the link training replaces there.
 */
export function runNameProblem(name: unknown): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'must be a non-empty string';
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name.length > 200) {
    return "must be a single plain folder name: letters, digits, '.', '_' and '-', starting with a letter or digit (not '.', '..', a path or a hidden name)";
  }
  return null;
}

/** The directory of a ClipCap training run (notebooks 03, 04) of a profile; an unsafe run name is refused. */
export function runDirectory(profile: ArtifactOwner, name: string, root: string = repoRoot()): string {
  const problem = runNameProblem(name);
  if (problem) throw new Error(`run name ${JSON.stringify(name)}: ${problem}`);
  return path.join(artifactPaths(profile, root).runs, name);
}

/** Where the offline/smoke profile's pretrained caption LM lives (notebook 02b). */
export function pretrainedLMDir(profile: ArtifactOwner, root: string = repoRoot()): string {
  return path.join(artifactPaths(profile, root).lm, 'model');
}

/** Where the automatic profile choice of this checkout is recorded (see resolveProfile in profile.ts). */
export function profileChoiceFile(root: string = repoRoot()): string {
  return path.join(root, 'data', 'profile.json');
}

/** Shared cache for downloads (hub models, COCO files): $CLIPCAP_CACHE or data/cache. */
export function cacheDir(env?: Environment): string {
  return settings(env).cacheDir ?? path.join(repoRoot(), 'data', 'cache');
}
