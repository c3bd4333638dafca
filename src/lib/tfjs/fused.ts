// Patch 9 of the wasm backend (see wasm-patches.ts): GPT-2's GELU, LayerNorm and attention, forward
// and backward, each as one WebAssembly SIMD kernel working in place on the tfjs wasm heap.
//
// What it works around: composed of tfjs ops, GELU is 6 kernels forward and 9 backward, LayerNorm 9
// and 11, attention 9 and about 15 (the heads' transposes, two batched products, scale, softmax,
// dropout), each a pass over memory and several of them slow broadcasts of a scalar or a row. Here
// each is one pass (two or three for LayerNorm's row statistics), four floats at a time, and
// attention reads q, k and v where the projection wrote them (no transposes, no split).
//
// The kernels (registered for the wasm backend under the names below; tfjs/ops.ts calls them when
// they are registered, and composes tfjs ops otherwise, on every other backend):
//   ClipcapGelu        y = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)  (GPT-2's gelu_new: 0.5 (1 + tanh u) = sigmoid(2u));
//                      with attr keepS also s = sigmoid(2u), for the gradient
//   ClipcapGeluGrad    dx = dy * (s + x s (1 - s) du), s = sigmoid(2u) (input s when given), du = d(2u)/dx
//   ClipcapLayerNorm   over the last axis: [y, xhat, rstd] with xhat = (x - mean) rstd, rstd = 1/sqrt(var + eps), y = xhat gamma + beta
//   ClipcapLayerNormGrad  [dx, dgamma, dbeta] from dy, xhat, rstd, gamma:
//                      dxhat = dy gamma, dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
//                      dgamma = sum over rows of dy xhat, dbeta = sum of dy
//   ClipcapAttention   [o, p]: p = softmax(q k^T scale) over the keys a query sees (causal or all),
//                      o = (p * dropout mask) v, heads side by side (see attentionFuncs)
//   ClipcapAttentionGrad  the gradients to the tensors holding q, k and v:
//                      dp = (dO v^T) * mask, ds = p (dp - rowsum(dp p)) scale, dq = ds k, dk = ds^T q, dv = (p * mask)^T dO
//   ClipcapDropoutMask inverted dropout's mask (tfjs/ops.ts dropoutMask): mulberry32's draws against
//                      the keep probability, four draws at a time (the stream's state after i draws is
//                      a linear function of i), bit for bit the JavaScript loop's mask
//   ClipcapSumSquares  the four float64 partial sums of x^2 over the groups of four floats (lane l sums
//                      x[4k + l]^2), as the bytes of a float32 [8] tensor: globalNorm's sums (train/
//                      optim.ts), bit for bit its JavaScript loop's (float64 products and additions in
//                      the same order), at SIMD speed
// exp (in the sigmoid and the softmax) is Cephes' expf (range reduction by ln 2 in two parts, a
// degree-6 polynomial, the power of two built in the exponent bits; n rounded by the 1.5 * 2^23
// trick, because wasm's float-to-int conversion and min/max cost several x64 instructions each):
// within 2 ulp of float64 exp, 0 below -87.3 and clamped at 88. Numerics are checked against float64
// references and against the composed ops in test/fused.test.ts (they agree to float32 rounding:
// the sums run in another order).
import * as tf from '@tensorflow/tfjs';
import { assemble, f32, f32x4, f64x2, Func, I32, i32, i32x4, i8x16, F32, V128, v128, WA, type Code, type WasmMemory } from './wasm-asm';
import type { KernelFn, TensorInfo, WasmBackend } from './wasm-internals';
import { f32 as heapF32, sizeOf } from './wasm-internals';
import { mulberry32, MULBERRY32_STEP } from '../util/rng';

export const GELU = 'ClipcapGelu';
export const GELU_GRAD = 'ClipcapGeluGrad';
export const LAYER_NORM = 'ClipcapLayerNorm';
export const LAYER_NORM_GRAD = 'ClipcapLayerNormGrad';
export const ATTENTION = 'ClipcapAttention';
export const ATTENTION_GRAD = 'ClipcapAttentionGrad';
export const SUM_SQUARES = 'ClipcapSumSquares';
export const DROPOUT_MASK = 'ClipcapDropoutMask';

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_K = 0.044715;
/** 1.5 * 2^23: x + MAGIC rounds x to an integer held in the low mantissa bits (|x| < 2^22). */
const MAGIC = 12582912;

/**
 * exp of four lanes (Cephes' expf), exactly 0 below -87.3 (where float32's exp underflows), and
 * clamped at 88 above. Uses the scratch locals eT, eN, eP; leaves the result on the stack.
 */
function expv(fn: Func, t: Code): Code {
  fn.ensure('eT', V128).ensure('eN', V128).ensure('eP', V128);
  const { get, set } = fn;
  const c = fn.splat;
  // n = round(t log2 e), by adding 1.5 * 2^23 (the float's low bits then hold n); r = t - n C1 - n C2 (C1 + C2 = ln 2)
  const tt = set('eT', f32x4.pmin(t, c(88)));
  const n = set('eN', f32x4.add(f32x4.mul(get('eT'), c(Math.LOG2E)), c(MAGIC)));
  const nf = f32x4.sub(get('eN'), c(MAGIC));
  const r = set('eP', f32x4.sub(f32x4.sub(get('eT'), f32x4.mul(nf, c(0.693359375))), f32x4.mul(nf, c(-2.12194440e-4))));
  // p = (((((P0 r + P1) r + P2) r + P3) r + P4) r + P5) r^2 + r + 1
  let p = c(1.9875691500e-4);
  for (const k of [1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1]) p = f32x4.add(f32x4.mul(p, get('eP')), c(k));
  const poly = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(get('eP'), get('eP'))), get('eP')), c(1));
  // exp(t) = p 2^n: the float with exponent bits n + 127, from eN's bits (n + 0x4b400000); 0 where t < -87.3
  const pow2 = i32x4.shl(i32x4.add(get('eN'), i32x4.const(127 - 0x4b400000)), i32.const(23));
  return [...tt, ...n, ...r, ...v128.and(f32x4.mul(poly, pow2), f32x4.ge(get('eT'), c(-87.3)))];
}

/** sigmoid(z) = 1 / (1 + exp(-z)) of four lanes. */
const sigmoid = (fn: Func, z: Code): Code => f32x4.div(fn.splat(1), f32x4.add(fn.splat(1), expv(fn, f32x4.neg(z))));

function geluFuncs(): Func[] {
  const A = 2 * GELU_C;
  const B = 2 * GELU_C * GELU_K;
  // s = sigmoid(2u) = sigmoid(x (A + B x^2)), from X and X2 = X X
  const s2u = (fn: Func, X: Code, X2: Code): Code => sigmoid(fn, f32x4.mul(X, f32x4.add(fn.splat(A), f32x4.mul(fn.splat(B), X2))));
  // gelu(x, y, bytes) and, for training, gelu_s(x, y, s, bytes), which also keeps s for the gradient
  const forward = (keep: boolean): Func => {
    const fn = new Func(keep ? 'gelu_s' : 'gelu', [['x', I32], ['y', I32], ...(keep ? [['s', I32] as [string, typeof I32]] : []), ['bytes', I32]]).local('i', I32).local('X', V128).local('S', V128);
    const { get, set } = fn;
    return fn.emit(
      fn.loop('i', i32.const(0), get('bytes'), 16,
        set('X', v128.load(i32.add(get('x'), get('i')))),
        set('S', s2u(fn, get('X'), f32x4.mul(get('X'), get('X')))),
        keep ? v128.store(i32.add(get('s'), get('i')), get('S')) : [],
        v128.store(i32.add(get('y'), get('i')), f32x4.mul(get('X'), get('S'))),
      ),
    );
  };
  // gelu_grad(x, dy, dx, bytes), and gelu_grad_s(x, s, dy, dx, bytes) with the s that gelu_s kept
  // (the same bits as computing it again, without the exp and the division)
  const backward = (kept: boolean): Func => {
    const fn = new Func(kept ? 'gelu_grad_s' : 'gelu_grad', [['x', I32], ...(kept ? [['s', I32] as [string, typeof I32]] : []), ['dy', I32], ['dx', I32], ['bytes', I32]])
      .local('i', I32).local('X', V128).local('X2', V128).local('S', V128);
    const { get, set } = fn;
    const c = fn.splat;
    return fn.emit(
      fn.loop('i', i32.const(0), get('bytes'), 16,
        set('X', v128.load(i32.add(get('x'), get('i')))),
        set('X2', f32x4.mul(get('X'), get('X'))),
        set('S', kept ? v128.load(i32.add(get('s'), get('i'))) : s2u(fn, get('X'), get('X2'))),
        // dy * (s * (x (1 - s) du + 1)), du = A + 3B x^2 (the composed ops' order)
        v128.store(
          i32.add(get('dx'), get('i')),
          f32x4.mul(
            v128.load(i32.add(get('dy'), get('i'))),
            f32x4.mul(get('S'), f32x4.add(f32x4.mul(f32x4.mul(get('X'), f32x4.sub(c(1), get('S'))), f32x4.add(f32x4.mul(get('X2'), c(3 * B)), c(A))), c(1))),
          ),
        ),
      ),
    );
  };
  return [forward(false), forward(true), backward(false), backward(true)];
}

/** Sum of the four lanes of a v128 value (a local.get: it is read four times). */
const hsum = (v: Code): Code => f32.add(f32.add(f32x4.lane(v, 0), f32x4.lane(v, 1)), f32.add(f32x4.lane(v, 2), f32x4.lane(v, 3)));

function layerNormFuncs(): Func[] {
  // layer_norm(x, g, b, y, xh, r, rows, rowBytes, invD, eps)
  const fwd = new Func('layer_norm', [['x', I32], ['g', I32], ['b', I32], ['y', I32], ['xh', I32], ['r', I32], ['rows', I32], ['rowBytes', I32], ['invD', F32], ['eps', F32]])
    .local('row', I32).local('j', I32).local('base', I32).local('A', V128).local('M', V128).local('C', V128).local('R', V128).local('rs', F32);
  {
    const { get, set } = fwd;
    const at = (p: string) => i32.add(get(p), i32.add(get('base'), get('j')));
    const col = (p: string) => i32.add(get(p), get('j'));
    const zero = f32x4.const(0);
    fwd.emit(
      fwd.loop('row', i32.const(0), get('rows'), 1,
        set('base', i32.mul(get('row'), get('rowBytes'))),
        set('A', zero),
        fwd.loop('j', i32.const(0), get('rowBytes'), 16, set('A', f32x4.add(get('A'), v128.load(at('x'))))),
        set('M', f32x4.splat(f32.mul(hsum(get('A')), get('invD')))),
        set('A', zero),
        fwd.loop('j', i32.const(0), get('rowBytes'), 16, set('C', f32x4.sub(v128.load(at('x')), get('M'))), set('A', f32x4.add(get('A'), f32x4.mul(get('C'), get('C'))))),
        set('rs', f32.div(f32.const(1), f32.sqrt(f32.add(f32.mul(hsum(get('A')), get('invD')), get('eps'))))),
        f32.store(i32.add(get('r'), i32.shl(get('row'), i32.const(2))), get('rs')),
        set('R', f32x4.splat(get('rs'))),
        fwd.loop('j', i32.const(0), get('rowBytes'), 16,
          set('C', f32x4.mul(f32x4.sub(v128.load(at('x')), get('M')), get('R'))),
          v128.store(at('xh'), get('C')),
          v128.store(at('y'), f32x4.add(f32x4.mul(get('C'), v128.load(col('g'))), v128.load(col('b')))),
        ),
      ),
    );
  }
  // layer_norm_grad(dy, xh, r, g, dx, dg, db, rows, rowBytes, invD)
  const bwd = new Func('layer_norm_grad', [['dy', I32], ['xh', I32], ['r', I32], ['g', I32], ['dx', I32], ['dg', I32], ['db', I32], ['rows', I32], ['rowBytes', I32], ['invD', F32]])
    .local('row', I32).local('j', I32).local('base', I32).local('A', V128).local('A2', V128).local('D', V128).local('DY', V128).local('XH', V128).local('M1', V128).local('M2', V128).local('R', V128);
  {
    const { get, set } = bwd;
    const at = (p: string) => i32.add(get(p), i32.add(get('base'), get('j')));
    const col = (p: string) => i32.add(get(p), get('j'));
    const zero = f32x4.const(0);
    bwd.emit(
      bwd.loop('j', i32.const(0), get('rowBytes'), 16, v128.store(col('dg'), zero), v128.store(col('db'), zero)),
      bwd.loop('row', i32.const(0), get('rows'), 1,
        set('base', i32.mul(get('row'), get('rowBytes'))),
        set('A', zero),
        set('A2', zero),
        bwd.loop('j', i32.const(0), get('rowBytes'), 16,
          set('D', f32x4.mul(v128.load(at('dy')), v128.load(col('g')))),
          set('A', f32x4.add(get('A'), get('D'))),
          set('A2', f32x4.add(get('A2'), f32x4.mul(get('D'), v128.load(at('xh'))))),
        ),
        set('M1', f32x4.splat(f32.mul(hsum(get('A')), get('invD')))),
        set('M2', f32x4.splat(f32.mul(hsum(get('A2')), get('invD')))),
        set('R', f32x4.splat(f32.load(i32.add(get('r'), i32.shl(get('row'), i32.const(2)))))),
        bwd.loop('j', i32.const(0), get('rowBytes'), 16,
          set('DY', v128.load(at('dy'))),
          set('XH', v128.load(at('xh'))),
          v128.store(at('dx'), f32x4.mul(f32x4.sub(f32x4.sub(f32x4.mul(get('DY'), v128.load(col('g'))), get('M1')), f32x4.mul(get('XH'), get('M2'))), get('R'))),
          v128.store(col('dg'), f32x4.add(v128.load(col('dg')), f32x4.mul(get('DY'), get('XH')))),
          v128.store(col('db'), f32x4.add(v128.load(col('db')), get('DY'))),
        ),
      ),
    );
  }
  return [fwd, bwd];
}

/**
 * Scaled dot-product attention of every (example b, head h, query i): s_j = (q_i . k_j) scale over
 * the keys j it sees (j <= i when causal, else all T), p = softmax(s), o_i = sum_j p_j drop_j v_j.
 * q, k, v and o are rows of 2-D tensors: row b T + i, head h at byte 4 hd h of the row, each with
 * its own byte offset and row stride; p is saved as [B, H, T, Tp] (Tp = T rounded up to 4; unseen
 * keys 0). drop (0: none) is dropout's [B, H, T, T] mask of scales, applied to p after the softmax.
 * Assembled for one head size hd (a multiple of 4): a query row's hd / 4 vectors and the output's
 * accumulators stay in locals, and the loops over a head's dims are unrolled.
 */
function attentionFuncs(hd: number): Func[] {
  const n = hd / 4;
  const C = Array.from({ length: n }, (_, c) => c);
  const common: [string, typeof I32 | typeof F32][] = [['B', I32], ['T', I32], ['Tp', I32], ['H', I32], ['scale', F32], ['causal', I32]];
  const fwd = new Func('attention', [['q', I32], ['k', I32], ['v', I32], ['qs', I32], ['ks', I32], ['vs', I32], ['o', I32], ['os', I32], ['p', I32], ['drop', I32], ...common]);
  const bwd = new Func('attention_grad', [
    ['q', I32], ['k', I32], ['v', I32], ['qs', I32], ['ks', I32], ['vs', I32], ['dO', I32], ['dos', I32], ['p', I32], ['drop', I32],
    ['dq', I32], ['dk', I32], ['dv', I32], ['dqs', I32], ['dks', I32], ['dvs', I32], ['scratch', I32], ...common,
  ]);
  for (const fn of [fwd, bwd]) {
    for (const x of ['b', 'h', 'i', 'j', 'jEnd', 'bh', 'prow', 'drow', 'qi', 'hoff', 'kp', 'vp', 'xp', 'yp']) fn.local(x, I32);
    fn.local('m', F32).local('w', F32).local('W', V128).local('W2', V128);
    for (const c of C) fn.local(`Q${c}`, V128).local(`A${c}`, V128);
  }
  bwd.local('dkp', I32).local('dvp', I32);
  for (const c of C) bwd.local(`G${c}`, V128);
  /** Byte address of row `row` of an operand, at the current head. */
  const rowAt = (fn: Func, base: string, stride: string, row: Code) => i32.add(i32.add(fn.get(base), i32.mul(row, fn.get(stride))), fn.get('hoff'));
  /** Row b T (key 0 of this example) of an operand, at the current head. */
  const firstKey = (fn: Func, base: string, stride: string) => rowAt(fn, base, stride, i32.mul(fn.get('b'), fn.get('T')));
  const at4 = (base: Code, j: Code) => i32.add(base, i32.shl(j, i32.const(2)));
  const sum = (xs: Code[]): Code => xs.reduce((a, x) => f32x4.add(a, x));
  /** sum_c X_c . (the row at pointer local `ptr`)[c], as a float. */
  const dotRow = (fn: Func, X: string, ptr: string): Code => hsum(sum(C.map((c) => f32x4.mul(fn.get(`${X}${c}`), v128.load(fn.get(ptr), 16 * c)))));
  /** X_c = the row at `addr` (n vectors). */
  const loadRow = (fn: Func, X: string, addr: Code): Code => [...fn.set('xp', addr), ...C.flatMap((c) => fn.set(`${X}${c}`, v128.load(fn.get('xp'), 16 * c)))];
  const storeRow = (fn: Func, X: string, addr: Code): Code => [...fn.set('xp', addr), ...C.flatMap((c) => v128.store(fn.get('xp'), fn.get(`${X}${c}`), 16 * c))];
  const zero = (fn: Func, X: string): Code => C.flatMap((c) => fn.set(`${X}${c}`, f32x4.const(0)));
  /** X_c += W * (the row at pointer local `ptr`)[c]. */
  const axpy = (fn: Func, X: string, W: string, ptr: string): Code => C.flatMap((c) => fn.set(`${X}${c}`, f32x4.add(fn.get(`${X}${c}`), f32x4.mul(fn.get(W), v128.load(fn.get(ptr), 16 * c)))));
  /** The loops over b, h and i, with bh, hoff, qi (the query's row), jEnd, prow (p's row) and drow (drop's row) set. */
  const each = (fn: Func, ...body: Code[]): Code => {
    const { get, set } = fn;
    return fn.loop('b', i32.const(0), get('B'), 1,
      fn.loop('h', i32.const(0), get('H'), 1,
        set('bh', i32.add(i32.mul(get('b'), get('H')), get('h'))),
        set('hoff', i32.mul(get('h'), i32.const(4 * hd))),
        fn.loop('i', i32.const(0), get('T'), 1,
          set('qi', i32.add(i32.mul(get('b'), get('T')), get('i'))),
          set('jEnd', i32.select(i32.add(get('i'), i32.const(1)), get('T'), get('causal'))),
          set('prow', i32.add(get('p'), i32.shl(i32.mul(i32.add(i32.mul(get('bh'), get('T')), get('i')), get('Tp')), i32.const(2)))),
          set('drow', i32.add(get('drop'), i32.shl(i32.mul(i32.add(i32.mul(get('bh'), get('T')), get('i')), get('T')), i32.const(2)))),
          ...body,
        ),
      ),
    );
  };
  /** p_j drop_j (drop_j = 1 without dropout). */
  const keptP = (fn: Func): Code => f32.mul(f32.load(at4(fn.get('prow'), fn.get('j'))), f32.select(f32.load(at4(fn.get('drow'), fn.get('j'))), f32.const(1), fn.get('drop')));
  /** Advance pointer local `ptr` by the row stride `stride`. */
  const next = (fn: Func, ptr: string, stride: string): Code => fn.set(ptr, i32.add(fn.get(ptr), fn.get(stride)));
  {
    const fn = fwd;
    const { get, set } = fn;
    const pj = at4(get('prow'), get('j'));
    fn.emit(
      each(fn,
        // scores of the keys seen, -inf for the rest (exp gives 0), and their maximum
        loadRow(fn, 'Q', rowAt(fn, 'q', 'qs', get('qi'))),
        set('m', f32.const(-Infinity)),
        set('kp', firstKey(fn, 'k', 'ks')),
        fn.loop('j', i32.const(0), get('jEnd'), 1,
          set('w', f32.mul(dotRow(fn, 'Q', 'kp'), get('scale'))),
          f32.store(pj, get('w')),
          set('m', f32.max(get('m'), get('w'))),
          next(fn, 'kp', 'ks'),
        ),
        fn.loop('j', get('jEnd'), get('Tp'), 1, f32.store(pj, f32.const(-Infinity))),
        // p = exp(s - m) / sum, four keys at a time
        set('W', f32x4.const(0)),
        set('W2', f32x4.splat(get('m'))),
        fn.loop('j', i32.const(0), i32.shl(get('Tp'), i32.const(2)), 16,
          v128.store(i32.add(get('prow'), get('j')), expv(fn, f32x4.sub(v128.load(i32.add(get('prow'), get('j'))), get('W2')))),
          set('W', f32x4.add(get('W'), v128.load(i32.add(get('prow'), get('j'))))),
        ),
        set('W', f32x4.splat(f32.div(f32.const(1), hsum(get('W'))))),
        fn.loop('j', i32.const(0), i32.shl(get('Tp'), i32.const(2)), 16, v128.store(i32.add(get('prow'), get('j')), f32x4.mul(v128.load(i32.add(get('prow'), get('j'))), get('W')))),
        // o_i = sum_j p_j drop_j v_j
        zero(fn, 'A'),
        set('vp', firstKey(fn, 'v', 'vs')),
        fn.loop('j', i32.const(0), get('jEnd'), 1, set('W', f32x4.splat(keptP(fn))), axpy(fn, 'A', 'W', 'vp'), next(fn, 'vp', 'vs')),
        storeRow(fn, 'A', rowAt(fn, 'o', 'os', get('qi'))),
      ),
    );
  }
  {
    const fn = bwd;
    const { get, set } = fn;
    const pj = at4(get('prow'), get('j'));
    const sj = at4(get('scratch'), get('j'));
    fn.emit(
      each(fn,
        loadRow(fn, 'G', rowAt(fn, 'dO', 'dos', get('qi'))),
        loadRow(fn, 'Q', rowAt(fn, 'q', 'qs', get('qi'))),
        // dp_j = (dO_i . v_j) drop_j; m = sum_j dp_j p_j
        set('m', f32.const(0)),
        set('vp', firstKey(fn, 'v', 'vs')),
        fn.loop('j', i32.const(0), get('jEnd'), 1,
          set('w', f32.mul(dotRow(fn, 'G', 'vp'), f32.select(f32.load(at4(get('drow'), get('j'))), f32.const(1), get('drop')))),
          f32.store(sj, get('w')),
          set('m', f32.add(get('m'), f32.mul(get('w'), f32.load(pj)))),
          next(fn, 'vp', 'vs'),
        ),
        // ds_j = p_j (dp_j - m) scale
        fn.loop('j', i32.const(0), get('jEnd'), 1, f32.store(sj, f32.mul(f32.mul(f32.load(pj), f32.sub(f32.load(sj), get('m'))), get('scale')))),
        // dq_i = sum_j ds_j k_j
        zero(fn, 'A'),
        set('kp', firstKey(fn, 'k', 'ks')),
        fn.loop('j', i32.const(0), get('jEnd'), 1, set('W', f32x4.splat(f32.load(sj))), axpy(fn, 'A', 'W', 'kp'), next(fn, 'kp', 'ks')),
        storeRow(fn, 'A', rowAt(fn, 'dq', 'dqs', get('qi'))),
        // dk_j += ds_j q_i; dv_j += p_j drop_j dO_i
        set('dkp', firstKey(fn, 'dk', 'dks')),
        set('dvp', firstKey(fn, 'dv', 'dvs')),
        fn.loop('j', i32.const(0), get('jEnd'), 1,
          set('W', f32x4.splat(f32.load(sj))),
          set('W2', f32x4.splat(keptP(fn))),
          C.flatMap((c) => [
            ...v128.store(get('dkp'), f32x4.add(v128.load(get('dkp'), 16 * c), f32x4.mul(get('W'), get(`Q${c}`))), 16 * c),
            ...v128.store(get('dvp'), f32x4.add(v128.load(get('dvp'), 16 * c), f32x4.mul(get('W2'), get(`G${c}`))), 16 * c),
          ]),
          next(fn, 'dkp', 'dks'),
          next(fn, 'dvp', 'dvs'),
        ),
      ),
    );
  }
  return [fwd, bwd];
}

/** The attention kernels for head size `hd`, assembled against an imported memory. */
export function attentionWasmBytes(shared: boolean, hd: number): Uint8Array {
  if (!(hd > 0 && hd % 4 === 0)) throw new Error(`attention kernels need a head size that is a multiple of 4, not ${hd}`);
  return assemble(attentionFuncs(hd), { import: true, shared });
}

/** The kernels' module, assembled against an imported memory. */
/** sum_squares(x, bytes, out): lanes 0-1 of the sums at out, lanes 2-3 at out + 16 (float64); bytes a multiple of 16. */
function sumSquaresFunc(): Func {
  const fn = new Func('sum_squares', [['x', I32], ['bytes', I32], ['out', I32]]).local('i', I32).local('X', V128).local('P', V128).local('A', V128).local('B', V128);
  const { get, set } = fn;
  const HIGH = [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];
  return fn.emit(
    set('A', f32x4.const(0)),
    set('B', f32x4.const(0)),
    fn.loop('i', i32.const(0), get('bytes'), 16,
      set('X', v128.load(i32.add(get('x'), get('i')))),
      set('P', f64x2.promoteLow(get('X'))),
      set('A', f64x2.add(get('A'), f64x2.mul(get('P'), get('P')))),
      set('P', f64x2.promoteLow(i8x16.shuffle(get('X'), get('X'), HIGH))),
      set('B', f64x2.add(get('B'), f64x2.mul(get('P'), get('P')))),
    ),
    v128.store(get('out'), get('A')),
    v128.store(get('out'), get('B'), 16),
  );
}

/**
 * dropout_mask(out, bytes, a0, threshold, scale): the mask values of the mulberry32 stream that starts
 * from state a0 (util/rng.ts), for the floats of out (bytes a multiple of 16), four lanes at a time. The state of draw i is a0 + (i+1) step, so lane l of group g
 * starts at a0 + (4g + l + 1) step and every group adds 4 step: the stream's draws, in order, without
 * their chain. `draw / 2^32 < keep` is `draw < threshold` with threshold = ceil(keep 2^32) (both sides
 * scaled by a power of two, exactly), an unsigned compare.
 */
function dropoutMaskFunc(): Func {
  const fn = new Func('dropout_mask', [['out', I32], ['bytes', I32], ['a0', I32], ['thr', I32], ['scale', F32]])
    .local('i', I32).local('A', V128).local('T', V128).local('THR', V128).local('S', V128);
  const { get, set } = fn;
  const step = MULBERRY32_STEP;
  const sh = (n: number) => i32.const(n);
  return fn.emit(
    set('A', i32x4.add(i32x4.splat(get('a0')), i32x4.lanes(step, Math.imul(2, step), Math.imul(3, step), Math.imul(4, step)))),
    set('THR', i32x4.splat(get('thr'))),
    set('S', f32x4.splat(get('scale'))),
    fn.loop('i', i32.const(0), get('bytes'), 16,
      // t = imul(t ^ (t >>> 15), t | 1); t ^= t + imul(t ^ (t >>> 7), t | 61)
      set('T', i32x4.mul(v128.xor(get('A'), i32x4.shrU(get('A'), sh(15))), v128.or(get('A'), i32x4.const(1)))),
      set('T', v128.xor(get('T'), i32x4.add(get('T'), i32x4.mul(v128.xor(get('T'), i32x4.shrU(get('T'), sh(7))), v128.or(get('T'), i32x4.const(61)))))),
      // (t ^ (t >>> 14)) < threshold ? scale : 0
      v128.store(i32.add(get('out'), get('i')), v128.and(i32x4.ltU(v128.xor(get('T'), i32x4.shrU(get('T'), sh(14))), get('THR')), get('S'))),
      set('A', i32x4.add(get('A'), i32x4.const(Math.imul(4, step)))),
    ),
  );
}

export function fusedWasmBytes(shared: boolean): Uint8Array {
  return assemble([...geluFuncs(), ...layerNormFuncs(), sumSquaresFunc(), dropoutMaskFunc()], { import: true, shared });
}

type Exports = {
  gelu(x: number, y: number, bytes: number): void;
  gelu_s(x: number, y: number, s: number, bytes: number): void;
  gelu_grad(x: number, dy: number, dx: number, bytes: number): void;
  gelu_grad_s(x: number, s: number, dy: number, dx: number, bytes: number): void;
  layer_norm(x: number, g: number, b: number, y: number, xh: number, r: number, rows: number, rowBytes: number, invD: number, eps: number): void;
  layer_norm_grad(dy: number, xh: number, r: number, g: number, dx: number, dg: number, db: number, rows: number, rowBytes: number, invD: number): void;
  sum_squares(x: number, bytes: number, out: number): void;
  dropout_mask(out: number, bytes: number, a0: number, thr: number, scale: number): void;
};

/** The attrs of ClipcapDropoutMask: the mask's shape, its stream's start state, keep probability and scale. */
export interface DropoutMaskAttrs {
  shape: number[];
  a0: number;
  keep: number;
  scale: number;
}

type AttentionExports = {
  attention(...a: number[]): void;
  attention_grad(...a: number[]): void;
};

/** The attrs of ClipcapAttention(Grad): q in input a at column qCol; k and v in input b (else a) at kCol and vCol. */
export interface AttentionAttrs {
  B: number;
  T: number;
  H: number;
  qCol: number;
  kCol: number;
  vCol: number;
  scale: number;
  causal: number;
}

/** The memory of the tfjs wasm module (its `memory` export). */
function heapMemory(b: WasmBackend): WasmMemory | null {
  const m = (b.wasm as unknown as { asm?: { memory?: unknown } }).asm?.memory;
  return m instanceof WA.Memory ? (m as WasmMemory) : null;
}

type MultiKernelFn = (args: Parameters<KernelFn>[0]) => TensorInfo[];

/** The model width d = H hd of an attention call, checked against the operands' columns. */
function attentionWidth(a: TensorInfo, kv: TensorInfo, at: AttentionAttrs): number {
  const d = (kv === a ? a.shape[1] / 3 : kv.shape[1] / 2) | 0;
  const ok =
    a.shape.length === 2 && kv.shape.length === 2 && a.shape[0] === at.B * at.T && kv.shape[0] === at.B * at.T &&
    d > 0 && d % (4 * at.H) === 0 && at.qCol + d <= a.shape[1] && at.kCol + d <= kv.shape[1] && at.vCol + d <= kv.shape[1] &&
    [a, kv].every((t) => t.dtype === 'float32');
  if (!ok) throw new Error(`${ATTENTION}: rows [B*T, width] float32 operands with q, k, v blocks of H heads of a multiple of 4 dims expected`);
  return d;
}

const offsetOf = (b: WasmBackend, t: TensorInfo) => b.dataIdMap.get(t.dataId)!.memoryOffset;
const float32 = (...ts: TensorInfo[]) => ts.every((t) => t.dtype === 'float32');

/**
 * Instantiate the kernels on `backend`'s heap and register them; returns why not when they cannot be
 * (no memory export, no WebAssembly SIMD).
 */
export function installFusedKernels(backend: WasmBackend): string | null {
  const memory = heapMemory(backend);
  if (!memory) return 'the wasm module exports no memory';
  let k: Exports;
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  try {
    const inst = new WA.Instance(new WA.Module(fusedWasmBytes(shared)), { env: { mem: memory } });
    k = inst.exports as unknown as Exports;
  } catch (e) {
    return (e as Error).message;
  }
  // the attention kernels of each head size, assembled when first used
  const byHeadSize = new Map<number, AttentionExports>();
  const attentionFor = (hd: number): AttentionExports => {
    let a = byHeadSize.get(hd);
    if (!a) {
      a = new WA.Instance(new WA.Module(attentionWasmBytes(shared, hd)), { env: { mem: memory } }).exports as unknown as AttentionExports;
      byHeadSize.set(hd, a);
    }
    return a;
  };
  const gelu: MultiKernelFn = ({ inputs, backend: b, attrs }) => {
    const { x } = inputs;
    if (!float32(x) || sizeOf(x.shape) % 4) throw new Error(`${GELU}: float32 input of a size divisible by 4 expected`);
    const y = b.makeOutput(x.shape, 'float32');
    if (!attrs.keepS) {
      k.gelu(offsetOf(b, x), offsetOf(b, y), sizeOf(x.shape) * 4);
      return [y];
    }
    const s = b.makeOutput(x.shape, 'float32');
    k.gelu_s(offsetOf(b, x), offsetOf(b, y), offsetOf(b, s), sizeOf(x.shape) * 4);
    return [y, s];
  };
  const geluGrad: KernelFn = ({ inputs, backend: b }) => {
    const { x, dy, s } = inputs;
    const n = sizeOf(x.shape);
    if (!float32(x, dy) || n % 4 || sizeOf(dy.shape) !== n || (s && (!float32(s) || sizeOf(s.shape) !== n))) throw new Error(`${GELU_GRAD}: float32 x, dy (and s) of one size divisible by 4 expected`);
    const dx = b.makeOutput(x.shape, 'float32');
    if (s) k.gelu_grad_s(offsetOf(b, x), offsetOf(b, s), offsetOf(b, dy), offsetOf(b, dx), n * 4);
    else k.gelu_grad(offsetOf(b, x), offsetOf(b, dy), offsetOf(b, dx), n * 4);
    return dx;
  };
  const layerNorm: MultiKernelFn = ({ inputs, backend: b, attrs }) => {
    const { x, gamma, beta } = inputs;
    const d = x.shape[x.shape.length - 1];
    if (!float32(x, gamma, beta) || d % 4 || sizeOf(gamma.shape) !== d || sizeOf(beta.shape) !== d) throw new Error(`${LAYER_NORM}: float32 inputs, a last axis divisible by 4 and gamma/beta of its size expected`);
    const rows = sizeOf(x.shape) / d;
    const y = b.makeOutput(x.shape, 'float32');
    const xh = b.makeOutput(x.shape, 'float32');
    const r = b.makeOutput([rows, 1], 'float32');
    k.layer_norm(offsetOf(b, x), offsetOf(b, gamma), offsetOf(b, beta), offsetOf(b, y), offsetOf(b, xh), offsetOf(b, r), rows, d * 4, 1 / d, attrs.eps as number);
    return [y, xh, r];
  };
  const layerNormGrad: MultiKernelFn = ({ inputs, backend: b }) => {
    const { dy, xhat, rstd, gamma } = inputs;
    const d = xhat.shape[xhat.shape.length - 1];
    const rows = sizeOf(xhat.shape) / d;
    if (!float32(dy, xhat, rstd, gamma) || d % 4 || sizeOf(dy.shape) !== rows * d || sizeOf(rstd.shape) !== rows || sizeOf(gamma.shape) !== d) {
      throw new Error(`${LAYER_NORM_GRAD}: float32 dy/xhat [rows, d], rstd [rows] and gamma [d] expected`);
    }
    const dx = b.makeOutput(xhat.shape, 'float32');
    const dg = b.makeOutput([d], 'float32');
    const db = b.makeOutput([d], 'float32');
    k.layer_norm_grad(offsetOf(b, dy), offsetOf(b, xhat), offsetOf(b, rstd), offsetOf(b, gamma), offsetOf(b, dx), offsetOf(b, dg), offsetOf(b, db), rows, d * 4, 1 / d);
    return [dx, dg, db];
  };
  /** An attention call's sizes, and its q, k, v byte offsets and row strides as the kernels take them. */
  const operands = (inputs: Record<string, TensorInfo>, at: AttentionAttrs, b: WasmBackend) => {
    const { a } = inputs;
    const kv = inputs.b ?? a;
    const d = attentionWidth(a, kv, at);
    const [aOff, kvOff] = [offsetOf(b, a), offsetOf(b, kv)];
    const [as, kvs] = [a.shape[1] * 4, kv.shape[1] * 4];
    return { a, kv, d, hd: d / at.H, Tp: Math.ceil(at.T / 4) * 4, qkv: [aOff + at.qCol * 4, kvOff + at.kCol * 4, kvOff + at.vCol * 4, as, kvs, kvs] };
  };
  const attention: MultiKernelFn = ({ inputs, backend: b, attrs }) => {
    const at = attrs as unknown as AttentionAttrs;
    const { d, hd, Tp, qkv } = operands(inputs, at, b);
    const o = b.makeOutput([at.B * at.T, d], 'float32');
    const p = b.makeOutput([at.B, at.H, at.T, Tp], 'float32');
    attentionFor(hd).attention(...qkv, offsetOf(b, o), d * 4, offsetOf(b, p), inputs.drop ? offsetOf(b, inputs.drop) : 0, at.B, at.T, Tp, at.H, at.scale, at.causal ? 1 : 0);
    return [o, p];
  };
  const attentionGrad: MultiKernelFn = ({ inputs, backend: b, attrs }) => {
    const at = attrs as unknown as AttentionAttrs;
    const { a, kv, d, hd, Tp, qkv } = operands(inputs, at, b);
    const da = b.makeOutput(a.shape, 'float32');
    const db = inputs.b ? b.makeOutput(kv.shape, 'float32') : null;
    const scratch = b.makeOutput([Tp], 'float32');
    // dk and dv are sums over the queries: start from zero (and columns outside q, k, v get none)
    heapF32(b, da, sizeOf(a.shape)).fill(0);
    if (db) heapF32(b, db, sizeOf(kv.shape)).fill(0);
    // the gradients in the same layout as q, k, v (offsets after the allocations: the operands' do not move)
    const dq = offsetOf(b, da) + at.qCol * 4;
    const dkv = offsetOf(b, db ?? da);
    attentionFor(hd).attention_grad(
      ...qkv, offsetOf(b, inputs.dO), d * 4, offsetOf(b, inputs.p), inputs.drop ? offsetOf(b, inputs.drop) : 0,
      dq, dkv + at.kCol * 4, dkv + at.vCol * 4, qkv[3], qkv[4], qkv[5], offsetOf(b, scratch),
      at.B, at.T, Tp, at.H, at.scale, at.causal ? 1 : 0,
    );
    b.disposeData(scratch.dataId);
    return db ? [da, db] : [da];
  };
  const sumSquares: KernelFn = ({ inputs, backend: b }) => {
    const { x } = inputs;
    if (!float32(x)) throw new Error(`${SUM_SQUARES}: a float32 input expected`);
    const out = b.makeOutput([8], 'float32');
    const n4 = sizeOf(x.shape) - (sizeOf(x.shape) % 4);
    k.sum_squares(offsetOf(b, x), n4 * 4, offsetOf(b, out));
    return out;
  };
  const dropoutMask: KernelFn = ({ backend: b, attrs }) => {
    const { shape, a0, keep, scale } = attrs as unknown as DropoutMaskAttrs;
    const n = sizeOf(shape);
    const out = b.makeOutput(shape, 'float32');
    const threshold = Math.ceil(keep * 4294967296);
    // (a keep probability within 2^-32 of 1 has no 32-bit threshold: those few masks are drawn below)
    const n4 = threshold <= 0xffffffff ? n - (n % 4) : 0;
    if (n4) k.dropout_mask(offsetOf(b, out), n4 * 4, a0 | 0, threshold | 0, scale);
    if (n4 < n) {
      // the stream's draws from n4 on: its state after n4 draws
      const draw = mulberry32((a0 + Math.imul(n4, MULBERRY32_STEP)) >>> 0);
      const view = heapF32(b, out, n);
      for (let i = n4; i < n; i++) view[i] = draw() < keep ? scale : 0;
    }
    return out;
  };
  for (const [kernelName, fn] of [[GELU, gelu], [GELU_GRAD, geluGrad], [LAYER_NORM, layerNorm], [LAYER_NORM_GRAD, layerNormGrad], [ATTENTION, attention], [ATTENTION_GRAD, attentionGrad], [SUM_SQUARES, sumSquares], [DROPOUT_MASK, dropoutMask]] as const) {
    if (tf.getKernel(kernelName, 'wasm')) tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: fn as unknown as tf.KernelFunc });
  }
  return null;
}

/** Are the fused kernels registered for the active backend? */
export function fusedKernels(): boolean {
  return tf.getKernel(GELU, tf.getBackend()) !== undefined;
}
