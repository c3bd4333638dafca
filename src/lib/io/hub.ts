// Hugging Face hub access through transformers.js's own hub code and conventions.
//
// A model is named either by a local directory (used as it is) or by a hub id such as `gpt2` or
// `Xenova/clip-vit-base-patch32`. Hub files are fetched by transformers.js (`getModelFile`) from
// `env.remoteHost` + `env.remotePathTemplate` (`{model}/resolve/{revision}/`), so the URL layout,
// HF_TOKEN handling and offline switches are transformers.js's. We only replace its file cache by one
// with the same layout (`<cacheDir>/<model>/<file>`, `<cacheDir>/<model>/<revision>/<file>` for other
// revisions) whose writes are atomic: a killed download never leaves a truncated file that a later
// run would take for the real one.
//
// Settings (all optional): HF_ENDPOINT or CLIPCAP_HUB_URL (remote host), CLIPCAP_CACHE (cache dir,
// default data/cache), HF_HUB_OFFLINE=1 / TRANSFORMERS_OFFLINE=1 (cache and local files only), parsed by
// settings.ts.
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../util/files';
import { cacheDir } from '../paths';
import { settings, type Environment } from '../settings';
import { Progress } from '../util/progress';

// transformers.js is an ES module; load it lazily from CommonJS.
type TransformersModule = typeof import('@xenova/transformers');
let transformersPromise: Promise<TransformersModule> | null = null;
export function loadTransformers(): Promise<TransformersModule> {
  if (!transformersPromise) transformersPromise = import('@xenova/transformers');
  return transformersPromise;
}

export interface HubSettings {
  /** Base URL of the hub, e.g. https://huggingface.co/ or http://127.0.0.1:8123/. */
  remoteHost: string;
  /** Where downloaded files are kept. */
  cacheDir: string;
  /** No network: cache and local directories only. */
  offline: boolean;
}

export function hubSettingsFromEnv(env?: Environment): HubSettings {
  const s = settings(env);
  let remoteHost = s.hubEndpoint || 'https://huggingface.co/';
  if (!remoteHost.endsWith('/')) remoteHost += '/';
  return {
    remoteHost,
    cacheDir: path.join(cacheDir(env), 'hub'),
    offline: s.offline,
  };
}

/** Map a hub URL (`<host>/<model>/resolve/<revision>/<file>`) to its cache path, or null. */
export function cachePathForUrl(settings: HubSettings, url: string): string | null {
  if (!url.startsWith(settings.remoteHost)) return null;
  const rest = decodeURI(url.slice(settings.remoteHost.length));
  const m = /^(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(rest);
  if (!m) return null;
  const [, model, revision, file] = m;
  const rel = revision === 'main' ? path.join(model, file) : path.join(model, decodeURIComponent(revision), file);
  const full = path.resolve(settings.cacheDir, rel);
  if (!full.startsWith(path.resolve(settings.cacheDir) + path.sep)) return null; // no escaping the cache
  return full;
}

/** A Web-Cache-like object (match/put) over the file system with atomic writes, for transformers.js. */
export class AtomicFileCache {
  constructor(private readonly settings: HubSettings) {}

  async match(request: string): Promise<Response | undefined> {
    const p = cachePathForUrl(this.settings, request);
    if (!p || !fs.existsSync(p)) return undefined;
    const data = fs.readFileSync(p);
    return new Response(data, { status: 200, headers: { 'content-length': String(data.byteLength) } });
  }

  async put(request: string, response: Response): Promise<void> {
    const p = cachePathForUrl(this.settings, request);
    if (!p) return;
    const buf = new Uint8Array(await response.arrayBuffer());
    writeFileAtomic(p, buf);
  }
}

/** Point transformers.js at our hub settings (idempotent). Returns the settings applied. */
export async function configureHub(settings: HubSettings = hubSettingsFromEnv()): Promise<HubSettings> {
  const { env } = await loadTransformers();
  env.remoteHost = settings.remoteHost;
  env.remotePathTemplate = '{model}/resolve/{revision}/';
  env.allowRemoteModels = !settings.offline;
  // Local directories are handled by resolveModelFile itself; keep transformers.js from guessing paths.
  env.allowLocalModels = false;
  env.useBrowserCache = false;
  env.useFSCache = false;
  env.useCustomCache = true;
  env.customCache = new AtomicFileCache(settings) as unknown as typeof env.customCache;
  env.cacheDir = settings.cacheDir;
  return settings;
}

/** Is `idOrDir` a local model directory (rather than a hub id)? */
export function isLocalModel(idOrDir: string): boolean {
  return fs.existsSync(idOrDir) && fs.statSync(idOrDir).isDirectory();
}

export interface FetchOptions {
  revision?: string;
  /** Return null instead of throwing when the file does not exist. */
  optional?: boolean;
  /** Show a progress line for downloads. */
  progress?: boolean;
  settings?: HubSettings;
}

/**
 * The bytes of `file` of a model: read from a local directory, or from the hub through the cache
 * (a second call needs no network).
 */
export async function resolveModelFile(idOrDir: string, file: string, opts: FetchOptions = {}): Promise<Uint8Array | null> {
  if (isLocalModel(idOrDir)) {
    const p = path.join(idOrDir, file);
    if (!fs.existsSync(p)) {
      if (opts.optional) return null;
      throw new Error(`model directory ${idOrDir} has no ${file}`);
    }
    return new Uint8Array(fs.readFileSync(p));
  }
  if (/^[./]/.test(idOrDir) || path.isAbsolute(idOrDir)) {
    throw new Error(`model directory ${idOrDir} does not exist (and it is not a hub id)`);
  }
  const settings = await configureHub(opts.settings ?? hubSettingsFromEnv());
  const { env } = await loadTransformers();
  // transformers.js's hub module is not re-exported; it reaches it through the same `env` object.
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const hub = (await import('@xenova/transformers/src/utils/hub.js' as string)) as {
    getModelFile: (id: string, f: string, fatal: boolean, o: Record<string, unknown>) => Promise<Uint8Array | null>;
  };
  let bar: Progress | null = null;
  const progress_callback = opts.progress
    ? (d: { status: string; loaded?: number; total?: number }) => {
        if (d.status === 'progress' && d.total) {
          if (!bar) bar = new Progress({ total: Math.ceil(d.total / 2 ** 20), label: `${idOrDir}/${file}`, unit: 'MiB' });
          const mib = Math.floor((d.loaded ?? 0) / 2 ** 20);
          if (mib > bar.value) bar.tick(mib - bar.value);
        }
      }
    : undefined;
  try {
    const buf = await hub.getModelFile(idOrDir, file, !opts.optional, {
      revision: opts.revision ?? 'main',
      progress_callback,
    });
    return buf;
  } catch (e) {
    const msg = (e as Error).message;
    const where = `${settings.remoteHost}${idOrDir}/resolve/${opts.revision ?? 'main'}/${file}`;
    if (opts.optional && /Could not locate|not found/i.test(msg)) return null;
    throw new Error(
      `cannot get ${file} of model "${idOrDir}" (${where}; cache ${env.cacheDir}): ${msg}. ` +
        (settings.offline
          ? 'Offline mode (HF_HUB_OFFLINE) is on and the file is not cached.'
          : 'Check the network or set HF_ENDPOINT; a local model directory works too.'),
    );
  }
}

/** Parse a JSON file of a model (config.json, tokenizer_config.json, ...). */
export async function resolveModelJson<T = Record<string, unknown>>(idOrDir: string, file: string, opts: FetchOptions = {}): Promise<T | null> {
  const buf = await resolveModelFile(idOrDir, file, opts);
  if (!buf) return null;
  try {
    return JSON.parse(Buffer.from(buf).toString('utf8')) as T;
  } catch (e) {
    throw new Error(`${file} of model "${idOrDir}" is not valid JSON: ${(e as Error).message}`);
  }
}
