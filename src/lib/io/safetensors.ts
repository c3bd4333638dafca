// The safetensors file format (https://github.com/huggingface/safetensors), read and written.
//
// Layout: an 8-byte little-endian unsigned header length N, N bytes of JSON
// `{ "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, "__metadata__": {..} }`
// (offsets relative to the end of the header), then the raw little-endian tensor bytes.
// Reading returns views into the given buffer (no copy); `toFloat32` converts F64/F32/F16/BF16 and
// the integer types. Writing streams the chunks to disk atomically (`fsutil.writeChunksAtomic`).
import { writeChunksAtomic } from '../util/files';

export type SafeDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<SafeDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface SafeTensorEntry {
  dtype: SafeDType;
  shape: number[];
  /** The tensor's bytes (a view into the file buffer). */
  bytes: Uint8Array;
}

export interface SafeTensorFile {
  tensors: Map<string, SafeTensorEntry>;
  metadata: Record<string, string>;
}

/** Parse a safetensors buffer; `source` names the file in errors. */
export function parseSafetensors(buf: Uint8Array, source = 'safetensors buffer'): SafeTensorFile {
  if (buf.byteLength < 8) throw new Error(`${source}: too short to be a safetensors file (${buf.byteLength} bytes)`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  if (n <= 0 || 8 + n > buf.byteLength) {
    throw new Error(`${source}: header length ${n} does not fit the file (${buf.byteLength} bytes); not a safetensors file?`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${source}: header is not valid JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + n;
  const dataLen = buf.byteLength - dataStart;
  const tensors = new Map<string, SafeTensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    const dtype = info.dtype as SafeDType;
    if (!(dtype in DTYPE_BYTES)) throw new Error(`${source}: tensor "${name}" has unsupported dtype ${info.dtype}`);
    if (!Array.isArray(info.shape) || !Array.isArray(info.data_offsets)) {
      throw new Error(`${source}: tensor "${name}" lacks shape or data_offsets`);
    }
    const [b, e] = info.data_offsets;
    const size = info.shape.reduce((a, s) => a * s, 1);
    if (!(b >= 0 && e >= b && e <= dataLen) || e - b !== size * DTYPE_BYTES[dtype]) {
      throw new Error(
        `${source}: tensor "${name}" (${dtype} [${info.shape}]) has data_offsets [${b}, ${e}] that do not match its size or the file (${dataLen} data bytes); the file may be truncated`,
      );
    }
    tensors.set(name, { dtype, shape: info.shape.slice(), bytes: buf.subarray(dataStart + b, dataStart + e) });
  }
  return { tensors, metadata };
}

function aligned(bytes: Uint8Array, align: number): Uint8Array {
  if (bytes.byteOffset % align === 0) return bytes;
  return bytes.slice(); // a copy starts at offset 0 of a new buffer
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The tensor's values as float32 (copied; F16/BF16/F64/integers converted). */
export function toFloat32(t: SafeTensorEntry): Float32Array {
  const n = t.shape.reduce((a, s) => a * s, 1);
  const b = t.bytes;
  switch (t.dtype) {
    case 'F32': {
      const a = aligned(b, 4);
      return new Float32Array(a.buffer, a.byteOffset, n).slice();
    }
    case 'F64': {
      const a = aligned(b, 8);
      return Float32Array.from(new Float64Array(a.buffer, a.byteOffset, n));
    }
    case 'F16': {
      const a = aligned(b, 2);
      const u = new Uint16Array(a.buffer, a.byteOffset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f16ToF32(u[i]);
      return out;
    }
    case 'BF16': {
      const a = aligned(b, 2);
      const u = new Uint16Array(a.buffer, a.byteOffset, n);
      const out = new Float32Array(n);
      const o32 = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) o32[i] = u[i] << 16;
      return out;
    }
    default:
      return Float32Array.from(toNumbers(t));
  }
}

/** Integer tensors as plain numbers (I64 must fit in a double). */
export function toNumbers(t: SafeTensorEntry): number[] {
  const n = t.shape.reduce((a, s) => a * s, 1);
  const dv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    switch (t.dtype) {
      case 'I64':
        out[i] = Number(dv.getBigInt64(i * 8, true));
        break;
      case 'I32':
        out[i] = dv.getInt32(i * 4, true);
        break;
      case 'I16':
        out[i] = dv.getInt16(i * 2, true);
        break;
      case 'I8':
        out[i] = dv.getInt8(i);
        break;
      case 'U8':
      case 'BOOL':
        out[i] = dv.getUint8(i);
        break;
      case 'F32':
        out[i] = dv.getFloat32(i * 4, true);
        break;
      case 'F64':
        out[i] = dv.getFloat64(i * 8, true);
        break;
      default:
        return Array.from(toFloat32(t));
    }
  }
  return out;
}

/** A tensor to write: float32/int32/float64/uint8 typed data and its shape. */
export interface SafeTensorInput {
  shape: number[];
  data: Float32Array | Int32Array | Float64Array | Uint8Array;
}

function dtypeOf(d: SafeTensorInput['data']): SafeDType {
  if (d instanceof Float32Array) return 'F32';
  if (d instanceof Int32Array) return 'I32';
  if (d instanceof Float64Array) return 'F64';
  return 'U8';
}

/**
 * The chunks of a safetensors file holding `tensors` (in name order) and string `metadata`.
 * The tensor data is not copied.
 */
export function serializeSafetensors(
  tensors: Map<string, SafeTensorInput> | Record<string, SafeTensorInput>,
  metadata: Record<string, string> = {},
): Uint8Array[] {
  const entries = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of entries) {
    const size = t.shape.reduce((a, s) => a * s, 1);
    if (size !== t.data.length) throw new Error(`safetensors: tensor "${name}" has ${t.data.length} values for shape [${t.shape}]`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: dtypeOf(t.data), shape: t.shape, data_offsets: [off, off + bytes.byteLength] };
    off += bytes.byteLength;
    chunks.push(bytes);
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.byteLength % 8)) % 8; // keep the data 8-byte aligned, as the reference writer does
  if (pad) json = Buffer.concat([json, Buffer.from(' '.repeat(pad))]);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  return [len, json, ...chunks];
}

/** serializeSafetensors as one buffer. */
export function encodeSafetensors(
  tensors: Map<string, SafeTensorInput> | Record<string, SafeTensorInput>,
  metadata: Record<string, string> = {},
): Uint8Array {
  return Buffer.concat(serializeSafetensors(tensors, metadata));
}

/** Write a safetensors file atomically. */
export function writeSafetensors(
  file: string,
  tensors: Map<string, SafeTensorInput> | Record<string, SafeTensorInput>,
  metadata: Record<string, string> = {},
): void {
  writeChunksAtomic(file, serializeSafetensors(tensors, metadata));
}
