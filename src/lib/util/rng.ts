// Seeded pseudo-random numbers: data decisions (which image goes where, synthetic fixtures), data
// order and initialisation in training, sampling in generation.
// Each decision draws from its own stream, named by a label, so that changing one size does not
// reshuffle unrelated choices.

/** FNV-1a (32-bit) of a string. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** FNV-1a (32-bit) over 32-bit words instead of characters (e.g. the bits of a Float32Array). */
export function fnv1aWords(words: Uint32Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193) >>> 0;
  return h;
}

/** 32-bit hash of a string (xmur3 finaliser over FNV-1a). */
export function hashString(s: string): number {
  let h = fnv1a(s);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** mulberry32: a small, fast generator of floats in [0, 1). */
/** mulberry32's increment: its state after i draws is seed + i * MULBERRY32_STEP (mod 2^32). */
export const MULBERRY32_STEP = 0x6d2b79f5;

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + MULBERRY32_STEP) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The generator for (seed, label). */
export function rngFor(seed: number, label: string): () => number {
  return mulberry32(hashString(`${seed}:${label}`));
}

/**
 * Normal samples N(0, 1) from mulberry32(seed) (Box-Muller; each pair of uniforms gives two
 * samples, the cosine one first).
 */
export function gaussian(seed: number): () => number {
  const uniform = mulberry32(seed);
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

/**
 * Shuffle `a` in place (Fisher-Yates, from the last element down: a[i] swaps with a[j],
 * j = floor(rand() * (i + 1))) and return it. The one shuffle of src/lib: data splits, epoch
 * orders and batch orders all come from it.
 */
export function shuffleInPlace<T>(a: T[], rand: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** A shuffled copy (see shuffleInPlace). */
export function shuffled<T>(items: readonly T[], rand: () => number): T[] {
  return shuffleInPlace(items.slice(), rand);
}

export function pick<T>(items: readonly T[], rand: () => number): T {
  return items[Math.floor(rand() * items.length)];
}
