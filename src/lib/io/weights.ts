// Named tensors to and from safetensors files: checkpoints of mappers, language models and
// optimizer state. Loading checks that every expected tensor is there with the expected shape, and
// that every value is finite.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs';
import { parseSafetensors, toFloat32, writeSafetensors, type SafeTensorInput } from './safetensors';

/** Write named tensors (float32) to a safetensors file, atomically. */
export function saveSafetensorsFile(file: string, tensors: Map<string, tf.Tensor>, metadata: Record<string, string> = {}): void {
  const out = new Map<string, SafeTensorInput>();
  for (const [name, t] of tensors) out.set(name, { shape: t.shape.slice(), data: t.dataSync() as Float32Array });
  writeSafetensors(file, out, metadata);
}

/**
 * Refuse weights holding NaN or an infinity (a diverged training, a damaged copy): the error names the
 * file and the tensor, so that no model computes on them and turns them into a caption.
 */
export function assertFiniteWeights(data: ArrayLike<number>, file: string, tensor: string): void {
  let bad = 0;
  let first = -1;
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (x - x !== 0) {
      // NaN - NaN and Inf - Inf are NaN: one test for both
      if (first < 0) first = i;
      bad += 1;
    }
  }
  if (bad > 0) {
    throw new Error(
      `${file}: tensor "${tensor}" holds ${bad} NaN or infinite value(s) of ${data.length} (the first at index ${first}, ${data[first]}): ` +
        'these weights are damaged (a diverged training, or a bad copy) and are not used; train them again or restore the file',
    );
  }
}

/** Read every tensor of a safetensors file as float32 arrays (all finite: see assertFiniteWeights). */
export function readSafetensorsFile(file: string): Map<string, { shape: number[]; data: Float32Array }> {
  if (!fs.existsSync(file)) throw new Error(`${file} does not exist`);
  const parsed = parseSafetensors(new Uint8Array(fs.readFileSync(file)), file);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, e] of parsed.tensors) {
    const data = toFloat32(e);
    assertFiniteWeights(data, file, name);
    out.set(name, { shape: e.shape, data });
  }
  return out;
}

/** Assign the tensors of a safetensors file to variables of the same names (all must match). */
export function loadSafetensorsInto(file: string, vars: Map<string, tf.Variable>): void {
  const saved = readSafetensorsFile(file);
  for (const [name, v] of vars) {
    const s = saved.get(name);
    if (!s) throw new Error(`${file} has no tensor "${name}"`);
    if (s.shape.join(',') !== v.shape.join(',')) throw new Error(`${file}: tensor "${name}" has shape [${s.shape}], expected [${v.shape}]`);
    tf.tidy(() => v.assign(tf.tensor(s.data, s.shape)));
  }
  const extra = [...saved.keys()].filter((k) => !vars.has(k));
  if (extra.length) throw new Error(`${file} has unexpected tensors: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`);
}

/** Tensors of a safetensors file as tf tensors (caller disposes). */
export function loadSafetensorsTensors(file: string): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [name, s] of readSafetensorsFile(file)) out.set(name, tf.tensor(s.data, s.shape));
  return out;
}

/**
 * A content hash of named tensors (names, shapes, dtypes and bytes, in name order): the identity of a
 * model's weights, wherever they were loaded from. 16 hex digits.
 */
export function weightsFingerprint(named: ReadonlyMap<string, tf.Tensor>): string {
  const h = crypto.createHash('sha256');
  for (const name of [...named.keys()].sort()) {
    const t = named.get(name)!;
    h.update(`${name}:${t.dtype}:${t.shape.join('x')};`);
    const d = t.dataSync();
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}
