// Atomic file writes and small filesystem helpers.
//
// Every artifact the project writes (subsets, embedding stores, checkpoints, reports) goes through
// these helpers: the bytes land in a temporary file beside the target, are fsync'ed, then renamed
// over it. A run killed at any moment leaves either the old file or the new one, never half of one. A
// full disk (ENOSPC) is one line, DiskFullError, naming the folder being written.
import * as fs from 'fs';
import * as path from 'path';

let tmpCounter = 0;

/** A temporary path beside `target`, unique to this process and call. */
export function tmpPathFor(target: string): string {
  tmpCounter += 1;
  return `${target}.tmp-${process.pid}-${Date.now().toString(36)}-${tmpCounter}`;
}

/** Error codes of a full disk (or a full quota). */
const DISK_FULL_CODES = new Set(['ENOSPC', 'EDQUOT']);

export function isDiskFull(e: unknown): boolean {
  return e instanceof DiskFullError || DISK_FULL_CODES.has((e as NodeJS.ErrnoException)?.code ?? '');
}

/**
 * The disk filled up while a folder was being written: one line naming the folder. What was there
 * before is intact (atomic writes: the new file or folder never replaced it), so freeing space and
 * rerunning resumes from what was saved last.
 */
export class DiskFullError extends Error {
  constructor(readonly folder: string) {
    super(
      `the disk is full (no space left on the device) while writing ${folder}: nothing was half-written there, the files saved before are intact; ` +
        'free some space and rerun, it resumes from what was saved last',
    );
    this.name = 'DiskFullError';
  }
}

/** Write `data` to `target` atomically (temp file, fsync, rename). Creates parent directories. */
export function writeFileAtomic(target: string, data: string | Uint8Array): void {
  writeChunksAtomic(target, [typeof data === 'string' ? Buffer.from(data, 'utf8') : data]);
}

/** Write several buffers as one file atomically, without concatenating them in memory first. */
export function writeChunksAtomic(target: string, chunks: Iterable<Uint8Array>): void {
  const tmp = tmpPathFor(target);
  let fd: number | null = null;
  try {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fd = fs.openSync(tmp, 'w');
    for (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) off += fs.writeSync(fd, c, off, c.byteLength - off);
    }
    fs.fsyncSync(fd);
    const done = fd;
    fd = null;
    fs.closeSync(done);
    fs.renameSync(tmp, target);
  } catch (e) {
    if (fd !== null) {
      try {
        fs.closeSync(fd);
      } catch {
        /* closing a failed file: the error that matters is e */
      }
    }
    fs.rmSync(tmp, { force: true });
    if (isDiskFull(e)) throw new DiskFullError(path.dirname(target));
    throw e;
  }
}

/** JSON.stringify with a trailing newline, written atomically. */
export function writeJsonAtomic(target: string, value: unknown, indent = 2): void {
  writeFileAtomic(target, JSON.stringify(value, null, indent) + '\n');
}

/** Read and parse a JSON file; the error names the file. */
export function readJson<T = unknown>(file: string): T {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Atomically move a finished directory into place: `build(tmpDir)` fills a fresh temporary directory
 * beside `target`, which then replaces `target` (an old `target` is removed only after the new one is
 * complete).
 */
export async function buildDirAtomic(target: string, build: (tmpDir: string) => Promise<void> | void): Promise<void> {
  const tmp = tmpPathFor(target);
  try {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.mkdirSync(tmp, { recursive: true });
    await build(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    // the folder being written is `target` (not the temporary one the build filled): name it
    if (isDiskFull(e)) throw new DiskFullError(target);
    throw e;
  }
  const old = fs.existsSync(target) ? tmpPathFor(target) + '.old' : null;
  if (old) fs.renameSync(target, old);
  fs.renameSync(tmp, target);
  if (old) fs.rmSync(old, { recursive: true, force: true });
}

/** Remove leftovers of killed atomic writes (`<name>.tmp-*`) in a directory. */
export function cleanStaleTemps(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let n = 0;
  for (const name of fs.readdirSync(dir)) {
    if (/\.tmp-\d+-/.test(name)) {
      fs.rmSync(path.join(dir, name), { recursive: true, force: true });
      n += 1;
    }
  }
  return n;
}
