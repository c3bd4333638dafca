// A small zip reader (no native dependencies): the central directory, then each wanted entry
// streamed through zlib's raw inflate into a temporary file, its CRC-32 and size checked, and
// renamed into place. Enough for the COCO annotation and Karpathy split archives (stored or
// deflated entries, no encryption, no zip64).
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { Transform } from 'stream';
import { pipeline } from 'stream/promises';
import { tmpPathFor } from '../util/files';

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (the zip / PNG one); pass the previous value to continue over several chunks. */
export function crc32(buf: Uint8Array, prev = 0): number {
  let c = (prev ^ 0xffffffff) >>> 0;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function readAt(fd: number, pos: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  let off = 0;
  while (off < len) {
    const n = fs.readSync(fd, b, off, len - off, pos + off);
    if (n === 0) break;
    off += n;
  }
  return off === len ? b : b.subarray(0, off);
}

function bad(file: string, what: string): Error {
  return new Error(`${file} is not a readable zip archive (${what}): delete it so that it is downloaded again, or unzip it by hand next to it`);
}

/** The entries of a zip archive (from its central directory). */
export function listZip(file: string): ZipEntry[] {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const tailLen = Math.min(size, 22 + 0xffff);
    const tail = readAt(fd, size - tailLen, tailLen);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === 0x06054b50) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw bad(file, 'no end of central directory record; the file may be truncated');
    const count = tail.readUInt16LE(eocd + 10);
    const cdSize = tail.readUInt32LE(eocd + 12);
    const cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) throw bad(file, 'zip64 archives are not supported');
    if (cdOffset + cdSize > size) throw bad(file, 'the central directory lies past the end of the file');
    const cd = readAt(fd, cdOffset, cdSize);
    const entries: ZipEntry[] = [];
    let p = 0;
    for (let k = 0; k < count; k++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) throw bad(file, `central directory entry ${k} is damaged`);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const e: ZipEntry = {
        flags: cd.readUInt16LE(p + 8),
        method: cd.readUInt16LE(p + 10),
        crc32: cd.readUInt32LE(p + 16),
        compressedSize: cd.readUInt32LE(p + 20),
        size: cd.readUInt32LE(p + 24),
        localHeaderOffset: cd.readUInt32LE(p + 42),
        name: cd.toString('utf8', p + 46, p + 46 + nameLen),
      };
      if (e.compressedSize === 0xffffffff || e.size === 0xffffffff || e.localHeaderOffset === 0xffffffff) throw bad(file, 'zip64 archives are not supported');
      entries.push(e);
      p += 46 + nameLen + extraLen + commentLen;
    }
    return entries;
  } finally {
    fs.closeSync(fd);
  }
}

/** Where an entry's data starts (after its local header). */
function dataOffset(file: string, fd: number, e: ZipEntry): number {
  const h = readAt(fd, e.localHeaderOffset, 30);
  if (h.length < 30 || h.readUInt32LE(0) !== 0x04034b50) throw bad(file, `the local header of ${e.name} is damaged`);
  return e.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
}

/** A safe relative path for an entry name (no absolute paths, no '..'). */
export function safeEntryPath(name: string): string | null {
  const norm = path.posix.normalize(name.replace(/\\/g, '/'));
  if (norm.startsWith('/') || norm === '..' || norm.startsWith('../') || /^[a-zA-Z]:/.test(norm)) return null;
  return norm;
}

/** Extract one entry to `dest` (atomically; CRC-32 and size checked). */
export async function extractZipEntry(file: string, e: ZipEntry, dest: string): Promise<void> {
  if (e.flags & 1) throw bad(file, `${e.name} is encrypted`);
  if (e.method !== 0 && e.method !== 8) throw bad(file, `${e.name} uses compression method ${e.method} (only stored and deflate are supported)`);
  const fd = fs.openSync(file, 'r');
  let start: number;
  try {
    start = dataOffset(file, fd, e);
  } finally {
    fs.closeSync(fd);
  }
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const tmp = tmpPathFor(dest);
  let crc = 0;
  let n = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      crc = crc32(chunk, crc);
      n += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    const src = e.compressedSize === 0 ? [] : [fs.createReadStream(file, { start, end: start + e.compressedSize - 1 })];
    const stages: NodeJS.ReadableStream[] = [...src];
    if (src.length === 0) {
      fs.writeFileSync(tmp, Buffer.alloc(0));
    } else {
      if (e.method === 8) stages.push(zlib.createInflateRaw());
      await pipeline([...stages, check, fs.createWriteStream(tmp)] as unknown as Parameters<typeof pipeline>[0][]);
    }
    if (n !== e.size) throw bad(file, `${e.name}: ${n} bytes inflated, the directory says ${e.size}`);
    if (crc !== e.crc32) throw bad(file, `${e.name}: CRC-32 mismatch`);
    fs.renameSync(tmp, dest);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    if ((err as NodeJS.ErrnoException).code?.startsWith?.('Z_')) throw bad(file, `${e.name}: ${(err as Error).message}`);
    throw err;
  }
}

/**
 * Extract the entries whose name passes `filter` into `destDir` (keeping their folders, or flat with
 * `flat`). Returns the paths written.
 */
export async function extractZip(file: string, destDir: string, opts: { filter?: (name: string) => boolean; flat?: boolean } = {}): Promise<string[]> {
  const out: string[] = [];
  for (const e of listZip(file)) {
    if (e.name.endsWith('/')) continue;
    if (opts.filter && !opts.filter(e.name)) continue;
    const rel = safeEntryPath(e.name);
    if (!rel) throw bad(file, `entry name ${JSON.stringify(e.name)} points outside the destination`);
    const dest = path.join(destDir, opts.flat ? path.posix.basename(rel) : rel);
    await extractZipEntry(file, e, dest);
    out.push(dest);
  }
  return out;
}
