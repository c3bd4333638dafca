// Downloads of data files (COCO photos and annotations, the Karpathy split archive) over HTTP(S):
//
//  - the local mirror first: a file already present in the mirror is used in place, not copied;
//  - resume: a complete file at the destination is kept; bytes arrive in `<dest>.part`, which is
//    continued with a Range request after an interruption and renamed over `<dest>` only when
//    complete and checked;
//  - checks: the byte count against Content-Length (or Content-Range), and the file's magic bytes
//    (JPEG, PNG, zip, JSON) so that an HTML error page never passes for a photo;
//  - bounded parallelism, retries with exponential backoff for 5xx / 429 / broken connections;
//  - a progress line (files/s, MB/s, ETA);
//  - an unreachable host stops the whole batch with one error naming the URL and the fix.
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as path from 'path';
import { Progress, type ProgressOptions } from '../util/progress';

export type Expect = 'jpeg' | 'png' | 'image' | 'zip' | 'json' | 'any';

export interface DownloadItem {
  url: string;
  /** Where the file goes (its folder is created). */
  dest: string;
  /** Files that may already hold it (a local mirror): the first one present is used in place. */
  mirror?: string[];
  /** What the bytes must be (checked on the first bytes of the file). */
  expect?: Expect;
}

export interface DownloadOptions {
  /** Parallel requests (default 8). */
  concurrency?: number;
  /** Retries per file after the first try (default 4). */
  retries?: number;
  /** First backoff between tries, doubled each time (default 1000 ms). */
  backoffMs?: number;
  /** Socket inactivity timeout (default 60 s). */
  timeoutMs?: number;
  /** Label of the progress line. */
  label?: string;
  /** Where progress lines go (default: Progress's); false for none. */
  progress?: ProgressOptions['write'] | false;
  /** Progress line interval (default: Progress's). */
  progressIntervalMs?: number;
}

export type DownloadOrigin = 'mirror' | 'cache' | 'download';

export interface DownloadResult {
  url: string;
  dest: string;
  /** Where the file is: the mirror file, or dest. */
  path: string;
  from: DownloadOrigin;
  bytes: number;
}

const OFFLINE_FIX =
  'Without internet access use the offline profile (CLIPCAP_PROFILE=offline) with a local data mirror (CLIPCAP_DATA_DIR), ' +
  'or put the file there by hand';

/** The host of a URL cannot be reached (DNS, refused, timeout): the batch stops. */
export class HostUnreachableError extends Error {
  constructor(
    readonly url: string,
    readonly code: string,
    readonly tries: number,
    dest: string,
  ) {
    super(`cannot reach ${hostOf(url)} to download ${url} (${code} after ${tries} ${tries === 1 ? 'try' : 'tries'}). ${OFFLINE_FIX} (${dest}).`);
    this.name = 'HostUnreachableError';
  }
}

/** One file failed (HTTP error, bad bytes, too many broken transfers). */
export class DownloadError extends Error {
  constructor(
    readonly url: string,
    readonly reason: string,
    /** Retrying will not help (404, wrong content). */
    readonly permanent: boolean,
    readonly status?: number,
  ) {
    super(`${url}: ${reason}`);
    this.name = 'DownloadError';
  }
}

/** Several files of a batch failed; the finished ones are kept. */
export class DownloadBatchError extends Error {
  constructor(
    readonly failures: DownloadError[],
    total: number,
  ) {
    super(
      `${failures.length} of ${total} downloads failed (the finished files are kept; rerun to resume): ` +
        failures
          .slice(0, 5)
          .map((f) => f.message)
          .join('; ') +
        (failures.length > 5 ? `; and ${failures.length - 5} more` : ''),
    );
    this.name = 'DownloadBatchError';
  }
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

const CONNECT_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNECT_TIMEOUT', 'EADDRNOTAVAIL']);

/** Does `head` (the first bytes of a file) look like `expect`? null if so, else what it looks like. */
export function checkMagic(head: Uint8Array, expect: Expect = 'any'): string | null {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const isJpeg = b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
  const isPng = b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a;
  const isZip = b.length >= 4 && b.readUInt32LE(0) === 0x04034b50;
  const firstChar = b.toString('latin1', 0, Math.min(64, b.length)).trimStart()[0];
  const isJson = firstChar === '{' || firstChar === '[';
  const ok =
    expect === 'any' ||
    (expect === 'jpeg' && isJpeg) ||
    (expect === 'png' && isPng) ||
    (expect === 'image' && (isJpeg || isPng)) ||
    (expect === 'zip' && isZip) ||
    (expect === 'json' && isJson);
  if (ok) return null;
  if (b.length === 0) return 'the file is empty';
  const text = b.toString('latin1', 0, Math.min(24, b.length)).replace(/[^\x20-\x7e]/g, '.');
  return `expected ${expect === 'image' ? 'a JPEG or PNG image' : expect === 'json' ? 'JSON' : `a ${expect.toUpperCase()} file`}, the bytes start with ${JSON.stringify(text)}`;
}

function readHead(file: string, n = 64): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(n);
    const got = fs.readSync(fd, b, 0, n, 0);
    return b.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** A file present, non-empty and of the expected kind. */
export function fileLooksComplete(file: string, expect: Expect = 'any'): boolean {
  try {
    const st = fs.statSync(file);
    return st.isFile() && st.size > 0 && checkMagic(readHead(file), expect) === null;
  } catch {
    return false;
  }
}

export function partPath(dest: string): string {
  return `${dest}.part`;
}

interface Transfer {
  onBytes: (n: number, total: number | null) => void;
  agents: { http: http.Agent; https: https.Agent };
  timeoutMs: number;
}

/**
 * One HTTP transfer into `<dest>.part` (continuing it with a Range request when it has bytes).
 * Resolves when the part holds the whole body; rejects with a DownloadError or a network error.
 */
function transferOnce(url: string, part: string, t: Transfer, redirects = 0): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let have = 0;
    try {
      have = fs.statSync(part).size;
    } catch {
      have = 0;
    }
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null;
    if (!mod) return reject(new DownloadError(url, `unsupported protocol ${u.protocol}`, true));
    const headers: Record<string, string> = { 'user-agent': 'clipcap-ts', 'accept-encoding': 'identity' };
    if (have > 0) headers.range = `bytes=${have}-`;
    const req = (mod as typeof http).get(u, { headers, agent: u.protocol === 'https:' ? t.agents.https : t.agents.http }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirects >= 5) return reject(new DownloadError(url, 'too many redirects', true, status));
        return transferOnce(new URL(res.headers.location, u).toString(), part, t, redirects + 1).then(resolve, reject);
      }
      if (status === 416 && have > 0) {
        // The part is as long as the file (or longer): decide from Content-Range's total.
        res.resume();
        const total = Number(/\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''))?.[1]);
        if (total === have) return resolve();
        fs.rmSync(part, { force: true });
        return reject(new DownloadError(url, 'the partial download did not match the file on the server; starting over', false, status));
      }
      if (status !== 200 && status !== 206) {
        res.resume();
        const permanent = status >= 400 && status < 500 && status !== 408 && status !== 429;
        return reject(new DownloadError(url, `HTTP ${status}${res.statusMessage ? ' ' + res.statusMessage : ''}`, permanent, status));
      }
      let expected: number | null = null;
      let append = false;
      if (status === 206) {
        const m = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(String(res.headers['content-range'] ?? ''));
        if (!m || Number(m[1]) !== have) {
          res.resume();
          fs.rmSync(part, { force: true });
          return reject(new DownloadError(url, `unexpected Content-Range ${JSON.stringify(res.headers['content-range'])}; starting over`, false, status));
        }
        append = true;
        expected = m[3] === '*' ? null : Number(m[3]);
      } else {
        const cl = res.headers['content-length'];
        expected = cl !== undefined ? Number(cl) : null;
      }
      let got = append ? have : 0;
      const out = fs.createWriteStream(part, { flags: append ? 'a' : 'w' });
      let failed = false;
      const fail = (e: Error) => {
        if (failed) return;
        failed = true;
        // Keep the bytes that arrived (the next try continues from them): flush, close, then reject.
        res.unpipe(out);
        res.destroy();
        out.once('close', () => reject(e));
        out.end();
      };
      res.on('data', (chunk: Buffer) => {
        got += chunk.length;
        t.onBytes(chunk.length, expected);
      });
      res.on('aborted', () => fail(new DownloadError(url, `connection closed after ${got} of ${expected ?? '?'} bytes`, false, status)));
      res.on('error', (e) => fail(new DownloadError(url, `transfer broke after ${got} bytes (${e.message})`, false, status)));
      out.on('error', (e) => {
        if (!failed) {
          failed = true;
          res.destroy();
          reject(e);
        }
      });
      out.on('finish', () => {
        if (failed) return;
        if (expected !== null && got !== expected) {
          failed = true;
          return reject(new DownloadError(url, `truncated: ${got} of ${expected} bytes`, false, status));
        }
        resolve();
      });
      res.pipe(out);
    });
    req.setTimeout(t.timeoutMs, () => req.destroy(Object.assign(new Error(`no data for ${t.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', (e) => reject(e));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Download one item with retries (no mirror / cache check: see downloadFiles). */
async function downloadOne(item: DownloadItem, t: Transfer, retries: number, backoffMs: number): Promise<number> {
  const part = partPath(item.dest);
  fs.mkdirSync(path.dirname(item.dest), { recursive: true });
  let lastErr: Error | null = null;
  let connectFailures = 0;
  const tries = retries + 1;
  for (let attempt = 1; attempt <= tries; attempt++) {
    if (attempt > 1) await sleep(Math.min(backoffMs * 2 ** (attempt - 2), 30_000));
    try {
      await transferOnce(item.url, part, t);
      const problem = checkMagic(readHead(part), item.expect ?? 'any');
      if (problem) {
        fs.rmSync(part, { force: true });
        throw new DownloadError(item.url, problem, true);
      }
      fsyncFile(part);
      const bytes = fs.statSync(part).size;
      fs.renameSync(part, item.dest);
      return bytes;
    } catch (e) {
      lastErr = e as Error;
      if (e instanceof DownloadError) {
        if (e.permanent) throw e;
        continue;
      }
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (CONNECT_CODES.has(code)) connectFailures++;
    }
  }
  if (connectFailures === tries) {
    fs.rmSync(part, { force: true }); // nothing was received
    throw new HostUnreachableError(item.url, (lastErr as NodeJS.ErrnoException).code ?? 'error', tries, item.dest);
  }
  if (lastErr instanceof DownloadError) throw new DownloadError(item.url, `${lastErr.reason} (after ${tries} tries)`, false, lastErr.status);
  throw new DownloadError(item.url, `${lastErr?.message ?? 'failed'} (after ${tries} tries)`, false);
}

/** Where an item already is: a mirror file, or a complete dest; null when it must be downloaded. */
export function locateExisting(item: DownloadItem): { path: string; from: DownloadOrigin } | null {
  for (const m of item.mirror ?? []) if (fileLooksComplete(m, item.expect)) return { path: m, from: 'mirror' };
  if (fileLooksComplete(item.dest, item.expect)) return { path: item.dest, from: 'cache' };
  return null;
}

/**
 * Fetch every item: mirror files used in place, complete files kept, the rest downloaded with
 * bounded parallelism. Results come in item order. Throws HostUnreachableError (the batch stops) or
 * DownloadBatchError (after the other files are done) on failure.
 */
export async function downloadFiles(items: DownloadItem[], opts: DownloadOptions = {}): Promise<DownloadResult[]> {
  const concurrency = Math.max(1, opts.concurrency ?? 8);
  const retries = Math.max(0, opts.retries ?? 4);
  const backoffMs = opts.backoffMs ?? 1000;
  const results: (DownloadResult | null)[] = items.map(() => null);
  const todo: number[] = [];
  items.forEach((item, i) => {
    const found = locateExisting(item);
    if (found) results[i] = { url: item.url, dest: item.dest, path: found.path, from: found.from, bytes: fs.statSync(found.path).size };
    else todo.push(i);
  });
  if (todo.length === 0) return results as DownloadResult[];

  let bytes = 0;
  let lastTotal: number | null = null;
  const t0 = Date.now();
  const progress =
    opts.progress === false
      ? null
      : new Progress({
          total: items.length,
          start: items.length - todo.length,
          label: opts.label ?? 'download',
          unit: 'files',
          write: opts.progress,
          intervalMs: opts.progressIntervalMs,
        });
  const metrics = () => {
    const s = (Date.now() - t0) / 1000;
    const mb = bytes / 2 ** 20;
    const m: Record<string, string> = { MB: todo.length === 1 && lastTotal ? `${mb.toFixed(1)}/${(lastTotal / 2 ** 20).toFixed(1)}` : mb.toFixed(1), 'MB/s': s > 0 ? (mb / s).toFixed(2) : '?' };
    return m;
  };
  const agents = { http: new http.Agent({ keepAlive: true, maxSockets: concurrency }), https: new https.Agent({ keepAlive: true, maxSockets: concurrency }) };
  const transfer: Transfer = {
    agents,
    timeoutMs: opts.timeoutMs ?? 60_000,
    onBytes: (n, total) => {
      bytes += n;
      lastTotal = total;
      progress?.tick(0, metrics());
    },
  };
  const failures: DownloadError[] = [];
  let fatal: Error | null = null;
  let next = 0;
  const worker = async () => {
    while (!fatal && next < todo.length) {
      const i = todo[next++];
      const item = items[i];
      try {
        const n = await downloadOne(item, transfer, retries, backoffMs);
        results[i] = { url: item.url, dest: item.dest, path: item.dest, from: 'download', bytes: n };
        progress?.tick(1, metrics());
      } catch (e) {
        if (e instanceof DownloadError) failures.push(e);
        else fatal = fatal ?? (e as Error);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, worker));
  } finally {
    agents.http.destroy();
    agents.https.destroy();
  }
  if (fatal) throw fatal;
  progress?.finish(metrics());
  if (failures.length) throw new DownloadBatchError(failures, items.length);
  return results as DownloadResult[];
}

/** Download one file (see downloadFiles); returns where it is. */
export async function downloadFile(item: DownloadItem, opts: DownloadOptions = {}): Promise<DownloadResult> {
  return (await downloadFiles([item], opts))[0];
}
