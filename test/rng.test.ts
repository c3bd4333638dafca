// src/lib/util/rng.ts is the one seeded generator (mulberry32), the one normal sampler and the one
// shuffle of src/lib. They replaced copies written inline (train/loop.ts, embed/encoders/tiny-clip.ts);
// these tests keep those copies as references: the same seeds must give bit-identical sequences and
// permutations, or every run, split and generated model would change.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { gaussian, mulberry32, shuffled, shuffleInPlace } from '../src/lib/util/rng';
import { epochBatches, epochPermutation } from '../src/lib/train/loop';

/** train/loop.ts's epochPermutation before it used shuffleInPlace. */
function oldEpochPermutation(n: number, seed: number, epoch: number): number[] {
  const rand = mulberry32((seed * 1_000_003 + epoch * 7919 + 17) >>> 0);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** train/loop.ts's epochBatches before it used shuffleInPlace. */
function oldEpochBatches(
  n: number,
  cfg: { batchSize: number; seed: number; dropLast: boolean; bucketByLength?: boolean },
  epoch: number,
  lengthOf?: (i: number) => number,
): number[][] {
  const spe = Math.max(1, cfg.dropLast ? Math.floor(n / cfg.batchSize) : Math.ceil(n / cfg.batchSize));
  const order = oldEpochPermutation(n, cfg.seed, epoch);
  const B = cfg.batchSize;
  let batches: number[][] = [];
  if (cfg.bucketByLength && lengthOf) {
    const pool = B * 32;
    for (let p = 0; p < n; p += pool) {
      const part = order.slice(p, p + pool).sort((a, b) => lengthOf(a) - lengthOf(b) || a - b);
      for (let i = 0; i < part.length; i += B) batches.push(part.slice(i, i + B));
    }
    const short = batches.length && batches[batches.length - 1].length < B ? batches.pop()! : null;
    const rand = mulberry32((cfg.seed * 7_368_787 + epoch * 31 + 5) >>> 0);
    for (let i = batches.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [batches[i], batches[j]] = [batches[j], batches[i]];
    }
    if (short) batches.push(short);
  } else {
    for (let i = 0; i < n; i += B) batches.push(order.slice(i, i + B));
  }
  if (batches.length > spe) batches = batches.slice(0, spe);
  return batches;
}

/** embed/encoders/tiny-clip.ts's gaussian before it used mulberry32 from util/rng.ts. */
function oldGaussian(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const v = spare;
      spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = uniform();
    const v = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

const SEEDS = [0, 1, 7, 42, 1234, 2024, 0xffffffff, 3_000_000_017];

test('mulberry32: the published sequence of seed 0 and 42 (unchanged)', () => {
  const r0 = mulberry32(0);
  assert.deepEqual([r0(), r0(), r0()], [0.26642920868471265, 0.0003297457005828619, 0.2232720274478197]);
  const r42 = mulberry32(42);
  assert.deepEqual([r42(), r42(), r42()], [0.6011037519201636, 0.44829055899754167, 0.8524657934904099]);
});

test('gaussian: bit-identical to the inline generator it replaced', () => {
  for (const seed of SEEDS) {
    const a = gaussian(seed);
    const b = oldGaussian(seed);
    for (let i = 0; i < 1001; i++) assert.equal(Object.is(a(), b()), true, `seed ${seed}, sample ${i}`);
  }
});

test('shuffleInPlace: the same permutation as the inline Fisher-Yates it replaced, in place', () => {
  for (const seed of SEEDS) {
    for (const n of [0, 1, 2, 3, 10, 257]) {
      const a = Array.from({ length: n }, (_, i) => i);
      const same = shuffleInPlace(a, mulberry32(seed));
      assert.equal(same, a);
      const rand = mulberry32(seed);
      const b = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [b[i], b[j]] = [b[j], b[i]];
      }
      assert.deepEqual(a, b);
      const items = Array.from({ length: n }, (_, i) => `x${i}`);
      const copy = shuffled(items, mulberry32(seed));
      assert.deepEqual(copy, b.map((i) => `x${i}`));
      assert.deepEqual(items, Array.from({ length: n }, (_, i) => `x${i}`), 'shuffled leaves its input alone');
    }
  }
});

test('epochPermutation and epochBatches: the same orders as before the shared shuffle', () => {
  const len = (i: number) => (i * 7919) % 23;
  for (const seed of SEEDS.slice(0, 6)) {
    for (const epoch of [0, 1, 5, 1_000_000, 2_000_000]) {
      for (const n of [1, 2, 20, 1003]) assert.deepEqual(epochPermutation(n, seed, epoch), oldEpochPermutation(n, seed, epoch));
    }
    for (const epoch of [0, 1, 3]) {
      for (const cfg of [
        { batchSize: 4, seed, dropLast: false, bucketByLength: true },
        { batchSize: 4, seed, dropLast: true, bucketByLength: true },
        { batchSize: 3, seed, dropLast: false, bucketByLength: false },
      ]) {
        for (const n of [1, 7, 130, 1003]) assert.deepEqual(epochBatches(n, cfg, epoch, len), oldEpochBatches(n, cfg, epoch, len));
      }
    }
  }
});
