// Transposes for the matMul patch (matmul.ts): the one way a matrix operand is transposed, and a cache
// of the transposes of frozen weights.
//
// Why: a transposed product is much slower than a plain one on XNNPACK (which takes none) and somewhat
// slower in onnxruntime's Gemm, and the stock matMul gradient is made of transposed products
// (docs/tfjs-wasm-in-node.md, property 2). A frozen (non-trainable) GPT-2 multiplies by W^T in every
// backward pass and by wte^T in every forward pass (the LM head): those transposes are kept while the
// weight's storage lives, at the cost of their memory (CLIPCAP_CACHE_TRANSPOSES=0 turns this off).
import * as tf from '@tensorflow/tfjs';
import type { KernelFn, TensorInfo, WasmBackend } from './wasm-internals';

/** `t` with its last two axes swapped, in new storage that the caller disposes. */
export function transposeLastTwo(transposeKernel: KernelFn, backend: WasmBackend, t: TensorInfo): TensorInfo {
  const r = t.shape.length;
  return transposeKernel({ inputs: { x: t }, backend, attrs: { perm: [...Array(r - 2).keys(), r - 1, r - 2] } });
}

/**
 * Transposes of frozen (non-trainable) 2-D weights, kept while the weight's storage lives: a frozen
 * GPT-2 multiplies by W^T in every backward pass (and by wte^T in every forward pass).
 */
export class FrozenTransposes {
  private readonly entries = new Map<object, TensorInfo>();
  enabled = true;
  constructor(private readonly transposeKernel: KernelFn) {}

  /** dataIds of frozen variables (checked on every call: variables come, go and change). */
  private frozen(): Set<object> {
    const s = new Set<object>();
    const reg = tf.engine().registeredVariables as Record<string, tf.Variable>;
    for (const name in reg) {
      const v = reg[name];
      if (!v.trainable && !v.isDisposed && v.dtype === 'float32') s.add(v.dataId as object);
    }
    return s;
  }

  /** Would get() return a transpose of t (t is a frozen weight)? */
  has(t: TensorInfo): boolean {
    return this.enabled && (this.entries.has(t.dataId) || this.frozen().has(t.dataId));
  }

  /** The transpose of `t` (last two axes) when t is a frozen weight; null otherwise. Owned by the cache. */
  get(backend: WasmBackend, t: TensorInfo): TensorInfo | null {
    if (!this.enabled) return null;
    const frozen = this.frozen();
    for (const [id, info] of this.entries) {
      if (!frozen.has(id)) {
        backend.disposeData(info.dataId);
        this.entries.delete(id);
      }
    }
    if (!frozen.has(t.dataId)) return null;
    let e = this.entries.get(t.dataId);
    if (!e) {
      e = transposeLastTwo(this.transposeKernel, backend, t);
      this.entries.set(t.dataId, e);
    }
    return e;
  }

  clear(backend: WasmBackend): void {
    for (const info of this.entries.values()) backend.disposeData(info.dataId);
    this.entries.clear();
  }
}
