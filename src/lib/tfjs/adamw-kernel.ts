// The AdamW update as a WebAssembly SIMD kernel, with the optimizer's moments in its own memory
// (outside the tfjs wasm heap, capped at 4 GiB). AdamW (train/optim.ts) keeps the optimizer's
// semantics and state; this file holds only the arithmetic and its memory.
//
// The fused update as a small hand-assembled WebAssembly SIMD function (f32x4; JavaScript's scalar
// double sqrt and division made the update ~3x slower). The moments live in this module's own
// memory (not the tfjs heap); parameter and gradient are copied in by cache-sized chunks, the new
// parameter copied out. Float32 arithmetic in PyTorch's order, the gradient first scaled by `gscale`
// (global-norm clipping, which torch's clip_grad_norm_ does in place before the step; 1 = unclipped):
//   g = g*gscale; m = m*b1 + g*(1-b1); v = v*b2 + (g*(1-b2))*g; q = p*decay - (m / (sqrt(v)/sqrt(bc2) + eps)) * step
//
// The same function as WebAssembly text (what adamWasmBytes assembles, instruction for instruction):
//
//   (module
//     (memory (export "mem") 1)
//     (func (export "adamw")
//       (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $q i32) (param $groups i32)
//       (param $b1 f32) (param $omb1 f32) (param $b2 f32) (param $omb2 f32)
//       (param $eps f32) (param $decay f32) (param $step f32) (param $sqbc2 f32) (param $gscale f32)
//       (local $i i32) (local $end i32)
//       (local $B1 v128) (local $OMB1 v128) (local $B2 v128) (local $OMB2 v128)
//       (local $EPS v128) (local $DECAY v128) (local $STEP v128) (local $SQ v128) (local $GS v128)
//       (local $G v128) (local $M v128) (local $V v128)
//       (local.set $end (i32.shl (local.get $groups) (i32.const 4)))      ;; bytes = groups * 16
//       (local.set $B1 (f32x4.splat (local.get $b1)))    ;; ... one splat per f32 parameter, $b1 .. $gscale
//       (block $done (loop $next
//         (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
//         (local.set $G (f32x4.mul (v128.load (i32.add (local.get $g) (local.get $i))) (local.get $GS)))
//         ;; m = m*b1 + g*(1-b1)
//         (v128.store (i32.add (local.get $m) (local.get $i))
//           (local.tee $M (f32x4.add (f32x4.mul (v128.load (i32.add (local.get $m) (local.get $i))) (local.get $B1))
//                                    (f32x4.mul (local.get $G) (local.get $OMB1)))))
//         ;; v = v*b2 + (g*(1-b2))*g
//         (v128.store (i32.add (local.get $v) (local.get $i))
//           (local.tee $V (f32x4.add (f32x4.mul (v128.load (i32.add (local.get $v) (local.get $i))) (local.get $B2))
//                                    (f32x4.mul (f32x4.mul (local.get $G) (local.get $OMB2)) (local.get $G)))))
//         ;; q = p*decay - (m / (sqrt(v)/sqrt(bc2) + eps)) * step
//         (v128.store (i32.add (local.get $q) (local.get $i))
//           (f32x4.sub (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $i))) (local.get $DECAY))
//                      (f32x4.mul (f32x4.div (local.get $M)
//                                            (f32x4.add (f32x4.div (f32x4.sqrt (local.get $V)) (local.get $SQ)) (local.get $EPS)))
//                                 (local.get $STEP))))
//         (local.set $i (i32.add (local.get $i) (i32.const 16)))
//         (br $next))))
//

import { leb, vec, WA } from './wasm-asm';

function adamWasmBytes(): Uint8Array {
  const section = (id: number, b: number[]) => [id, ...vec(b)];
  const simd = (op: number) => [0xfd, ...leb(op)];
  const [I32, F32, V128] = [0x7f, 0x7d, 0x7b];
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const tee = (i: number) => [0x22, i];
  const load = [...simd(0x00), 4, 0];
  const store = [...simd(0x0b), 4, 0];
  const [splat, sqrt, add, sub, mul, div] = [simd(0x13), simd(0xe3), simd(0xe4), simd(0xe5), simd(0xe6), simd(0xe7)];
  // params: 0 p, 1 g, 2 m, 3 v, 4 q (byte offsets), 5 groups of 4; 6 b1, 7 1-b1, 8 b2, 9 1-b2, 10 eps, 11 decay, 12 step, 13 sqrt(bc2), 14 gscale
  // locals: 15 i, 16 end; 17.. splats B1 OMB1 B2 OMB2 EPS DECAY STEP SQ GS (17-25); 26 G, 27 M, 28 V
  const at = (base: number) => [...get(base), ...get(15), 0x6a];
  const splats: number[] = [];
  for (let k = 0; k < 9; k++) splats.push(...get(6 + k), ...splat, ...set(17 + k));
  const body = [
    ...get(5), 0x41, 4, 0x74, ...set(16), // end = groups << 4
    ...splats,
    0x02, 0x40, 0x03, 0x40,
    ...get(15), ...get(16), 0x4f, 0x0d, 1, // if (i >= end) break
    ...at(1), ...load, ...get(25), ...mul, ...set(26),
    ...at(2), ...at(2), ...load, ...get(17), ...mul, ...get(26), ...get(18), ...mul, ...add, ...tee(27), ...store,
    ...at(3), ...at(3), ...load, ...get(19), ...mul, ...get(26), ...get(20), ...mul, ...get(26), ...mul, ...add, ...tee(28), ...store,
    ...at(4), ...at(0), ...load, ...get(22), ...mul, ...get(27), ...get(28), ...sqrt, ...get(24), ...div, ...get(21), ...add, ...div, ...get(23), ...mul, ...sub, ...store,
    ...get(15), 0x41, 16, 0x6a, ...set(15),
    0x0c, 0, 0x0b, 0x0b, 0x0b,
  ];
  const func = [2, 2, I32, 12, V128, ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, ...vec([I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32, F32, F32]), 0]),
    ...section(3, [1, 0]),
    ...section(5, [1, 0, 1]),
    ...section(7, [2, ...vec([...Buffer.from('mem')]), 2, 0, ...vec([...Buffer.from('adamw')]), 0, 0]),
    ...section(10, [1, ...vec(func)]),
  ]);
}

/** Hyperparameters of one update, as the kernel takes them. */
export interface StepScalars {
  b1: number;
  omb1: number;
  b2: number;
  omb2: number;
  eps: number;
  decay: number;
  step: number;
  sqrtBc2: number;
  /** The gradient is multiplied by this first (global-norm clipping; 1 = as it is). */
  gscale: number;
}

/** Where one parameter's moments live. */
export interface MomentSlot {
  size: number;
  /** Byte offsets in the kernel memory (SIMD) ... */
  mOff: number;
  vOff: number;
  /** ... or plain arrays (fallback). */
  m?: Float32Array;
  v?: Float32Array;
}

const CHUNK = 16384; // floats per copy-in chunk (3 x 64 KiB stay in cache)

/** Moments storage and the update loop: wasm SIMD when available, plain JavaScript otherwise. */
export class AdamKernel {
  private readonly mem: { buffer: ArrayBuffer; grow(pages: number): number } | null = null;
  private readonly fn: ((...a: number[]) => void) | null = null;
  private top = 3 * CHUNK * 4; // scratch P, G, Q first
  constructor(useSimd = true) {
    if (!useSimd) return;
    try {
      const inst = new WA.Instance(new WA.Module(adamWasmBytes()), {});
      this.mem = inst.exports.mem as unknown as { buffer: ArrayBuffer; grow(pages: number): number };
      this.fn = inst.exports.adamw as unknown as (...a: number[]) => void;
      this.ensure(this.top);
    } catch {
      this.mem = null;
      this.fn = null;
    }
  }
  get simd(): boolean {
    return this.fn !== null;
  }
  private ensure(bytes: number): void {
    const have = this.mem!.buffer.byteLength;
    if (bytes > have) this.mem!.grow(Math.ceil((bytes - have) / 65536));
  }
  alloc(size: number): MomentSlot {
    if (!this.fn) return { size, mOff: 0, vOff: 0, m: new Float32Array(size), v: new Float32Array(size) };
    const bytes = Math.ceil(size / 4) * 16; // whole f32x4 groups
    const slot = { size, mOff: this.top, vOff: this.top + bytes };
    this.top += 2 * bytes;
    this.ensure(this.top); // fresh pages are zero
    return slot;
  }
  /** Copies of the moments (or views for write when `write`). */
  views(slot: MomentSlot): { m: Float32Array; v: Float32Array } {
    if (slot.m && slot.v) return { m: slot.m, v: slot.v };
    return { m: new Float32Array(this.mem!.buffer, slot.mOff, slot.size), v: new Float32Array(this.mem!.buffer, slot.vOff, slot.size) };
  }
  run(p: Float32Array, g: Float32Array, slot: MomentSlot, q: Float32Array, scalars: StepScalars): void {
    const n = p.length;
    const f32 = Math.fround;
    const k = Object.fromEntries(Object.entries(scalars).map(([key, x]) => [key, f32(x)])) as unknown as StepScalars;
    if (!this.fn) {
      const { m, v } = this.views(slot);
      for (let i = 0; i < n; i++) {
        const gi = k.gscale === 1 ? g[i] : Math.fround(g[i] * k.gscale);
        const mi = Math.fround(Math.fround(m[i] * k.b1) + Math.fround(gi * k.omb1));
        const vi = Math.fround(Math.fround(v[i] * k.b2) + Math.fround(Math.fround(gi * k.omb2) * gi));
        m[i] = mi;
        v[i] = vi;
        const denom = Math.fround(Math.fround(Math.fround(Math.sqrt(vi)) / k.sqrtBc2) + k.eps);
        q[i] = Math.fround(p[i] * k.decay) - Math.fround(Math.fround(mi / denom) * k.step); // stored as f32
      }
      return;
    }
    const F = new Float32Array(this.mem!.buffer);
    const [P, G, Q] = [0, CHUNK, 2 * CHUNK];
    for (let s = 0; s < n; s += CHUNK) {
      const len = Math.min(CHUNK, n - s);
      F.set(p.subarray(s, s + len), P);
      F.set(g.subarray(s, s + len), G);
      this.fn(P * 4, G * 4, slot.mOff + s * 4, slot.vOff + s * 4, Q * 4, Math.ceil(len / 4), k.b1, k.omb1, k.b2, k.omb2, k.eps, k.decay, k.step, k.sqrtBc2, k.gscale);
      q.set(F.subarray(Q, Q + len), s);
    }
  }
}
