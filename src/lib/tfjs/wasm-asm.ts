// A small WebAssembly assembler for the hand-written SIMD kernels (fused.ts): instructions as
// functions that return their bytes, written in WebAssembly's folded form, so that
//   f32x4.add(v128.load(x), f32x4.splat(f32.const(1)))
// reads as the text format's (f32x4.add (v128.load x) (f32x4.splat (f32.const 1))) and assembles to
// the same bytes. Only the instructions the kernels use are here; opcodes from the WebAssembly core
// and SIMD specifications. Every kernel built with it is checked against a float64 reference in
// test/fused.test.ts.

/** The WebAssembly API, typed by hand (no DOM lib in this project's TypeScript settings). */
export interface WasmMemory {
  buffer: ArrayBufferLike;
  grow(pages: number): number;
}
export const WA = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
      Memory: abstract new (...a: never[]) => WasmMemory;
    };
  }
).WebAssembly;

/** Bytes of code: one or more instructions, leaving their values on the stack. */
export type Code = number[];

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof V128;

/** Unsigned LEB128. */
export function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** Signed LEB128 (32-bit). */
export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** A length-prefixed vector of bytes. */
export const vec = (b: number[]): number[] => [...leb(b.length), ...b];
const name = (s: string) => vec([...Buffer.from(s, 'utf8')]);
const cat = (...parts: Code[]): Code => ([] as number[]).concat(...parts);
const simd = (op: number): Code => [0xfd, ...leb(op)];
/** Memory argument: alignment (log2 bytes) and a constant byte offset. */
const memarg = (align: number, offset: number) => [align, ...leb(offset)];

export const i32 = {
  const: (n: number): Code => [0x41, ...sleb(n | 0)],
  add: (a: Code, b: Code): Code => cat(a, b, [0x6a]),
  sub: (a: Code, b: Code): Code => cat(a, b, [0x6b]),
  mul: (a: Code, b: Code): Code => cat(a, b, [0x6c]),
  shl: (a: Code, b: Code): Code => cat(a, b, [0x74]),
  ltU: (a: Code, b: Code): Code => cat(a, b, [0x49]),
  /** cond (i32) ? a : b. Both are evaluated. */
  select: (a: Code, b: Code, cond: Code): Code => cat(a, b, cond, [0x1b]),
};

export const f32 = {
  /** cond (i32) ? a : b. Both are evaluated. */
  select: (a: Code, b: Code, cond: Code): Code => cat(a, b, cond, [0x1b]),
  max: (a: Code, b: Code): Code => cat(a, b, [0x97]),
  sub: (a: Code, b: Code): Code => cat(a, b, [0x93]),
  const: (x: number): Code => {
    const b = Buffer.alloc(4);
    b.writeFloatLE(x);
    return [0x43, ...b];
  },
  load: (addr: Code, offset = 0): Code => cat(addr, [0x2a, ...memarg(2, offset)]),
  store: (addr: Code, value: Code, offset = 0): Code => cat(addr, value, [0x38, ...memarg(2, offset)]),
  add: (a: Code, b: Code): Code => cat(a, b, [0x92]),
  mul: (a: Code, b: Code): Code => cat(a, b, [0x94]),
  div: (a: Code, b: Code): Code => cat(a, b, [0x95]),
  sqrt: (a: Code): Code => cat(a, [0x91]),
};

export const v128 = {
  load: (addr: Code, offset = 0): Code => cat(addr, simd(0x00), memarg(4, offset)),
  store: (addr: Code, value: Code, offset = 0): Code => cat(addr, value, simd(0x0b), memarg(4, offset)),
  and: (a: Code, b: Code): Code => cat(a, b, simd(0x4e)),
  or: (a: Code, b: Code): Code => cat(a, b, simd(0x50)),
  xor: (a: Code, b: Code): Code => cat(a, b, simd(0x51)),
};

export const f32x4 = {
  /** Four copies of a constant (one v128.const). */
  const: (x: number): Code => {
    const b = Buffer.alloc(16);
    for (let i = 0; i < 4; i++) b.writeFloatLE(x, 4 * i);
    return cat(simd(0x0c), [...b]);
  },
  splat: (a: Code): Code => cat(a, simd(0x13)),
  lane: (a: Code, i: number): Code => cat(a, simd(0x1f), [i]),
  neg: (a: Code): Code => cat(a, simd(0xe1)),
  add: (a: Code, b: Code): Code => cat(a, b, simd(0xe4)),
  sub: (a: Code, b: Code): Code => cat(a, b, simd(0xe5)),
  mul: (a: Code, b: Code): Code => cat(a, b, simd(0xe6)),
  div: (a: Code, b: Code): Code => cat(a, b, simd(0xe7)),
  /** Lane mask: a >= b. */
  ge: (a: Code, b: Code): Code => cat(a, b, simd(0x46)),
  /** Pseudo-minimum b < a ? b : a (one instruction; min/max handle NaN and -0 at a cost). */
  pmin: (a: Code, b: Code): Code => cat(a, b, simd(0xea)),
  pmax: (a: Code, b: Code): Code => cat(a, b, simd(0xeb)),
};

export const f64x2 = {
  /** The low two float32 lanes of a v128, as two float64 (exact). */
  promoteLow: (a: Code): Code => cat(a, simd(0x5f)),
  add: (a: Code, b: Code): Code => cat(a, b, simd(0xf0)),
  mul: (a: Code, b: Code): Code => cat(a, b, simd(0xf2)),
};

export const i8x16 = {
  /** Bytes of a and b picked by 16 lane indices (0-15 from a, 16-31 from b). */
  shuffle: (a: Code, b: Code, lanes: number[]): Code => {
    if (lanes.length !== 16 || lanes.some((l) => !(Number.isInteger(l) && l >= 0 && l < 32))) throw new Error('wasm-asm: i8x16.shuffle wants 16 lane indices in [0, 32)');
    return cat(a, b, simd(0x0d), lanes);
  },
};

export const i32x4 = {
  splat: (a: Code): Code => cat(a, simd(0x11)),
  add: (a: Code, b: Code): Code => cat(a, b, simd(0xae)),
  /** Lane products modulo 2^32 (Math.imul's). */
  mul: (a: Code, b: Code): Code => cat(a, b, simd(0xb5)),
  shl: (a: Code, bits: Code): Code => cat(a, bits, simd(0xab)),
  /** Logical shift right (>>>). */
  shrU: (a: Code, bits: Code): Code => cat(a, bits, simd(0xad)),
  /** Lane mask: a < b, unsigned. */
  ltU: (a: Code, b: Code): Code => cat(a, b, simd(0x3a)),
  /** Four copies of an integer constant (one v128.const). */
  const: (n: number): Code => i32x4.lanes(n, n, n, n),
  /** Four integer constants, lane 0 first (one v128.const). */
  lanes: (...n: [number, number, number, number]): Code => {
    const b = Buffer.alloc(16);
    for (let i = 0; i < 4; i++) b.writeInt32LE(n[i] | 0, 4 * i);
    return cat(simd(0x0c), [...b]);
  },
};

/** A function under construction: named parameters and locals, and its body. */
export class Func {
  private readonly index = new Map<string, number>();
  private readonly localTypes: ValType[] = [];
  readonly body: Code[] = [];
  private readonly prologue: Code[] = [];
  private readonly constants = new Map<number, string>();
  constructor(
    readonly exportName: string,
    readonly params: [string, ValType][],
  ) {
    params.forEach(([n], i) => this.index.set(n, i));
  }
  /** Declare a local unless it is declared (scratch locals of shared snippets). */
  ensure(n: string, type: ValType): this {
    return this.index.has(n) ? this : this.local(n, type);
  }
  /** Declare a local (after the parameters). */
  local(n: string, type: ValType): this {
    if (this.index.has(n)) throw new Error(`wasm-asm: ${n} declared twice`);
    this.index.set(n, this.params.length + this.localTypes.length);
    this.localTypes.push(type);
    return this;
  }
  private at(n: string): number[] {
    const i = this.index.get(n);
    if (i === undefined) throw new Error(`wasm-asm: no local ${n} in ${this.exportName}`);
    return leb(i);
  }
  get = (n: string): Code => [0x20, ...this.at(n)];
  set = (n: string, value: Code): Code => cat(value, [0x21, ...this.at(n)]);
  tee = (n: string, value: Code): Code => cat(value, [0x22, ...this.at(n)]);
  /** i += step (i32). */
  inc = (n: string, step: number): Code => this.set(n, i32.add(this.get(n), i32.const(step)));
  /** for (i = from; i < end; i += step) body: i32 counter `i`, unsigned compare. */
  loop = (i: string, from: Code, end: Code, step: number, ...body: Code[]): Code =>
    cat(this.set(i, from), [0x02, 0x40, 0x03, 0x40], i32.ltU(this.get(i), end), [0x45, 0x0d, 1], ...body, this.inc(i, step), [0x0c, 0, 0x0b, 0x0b]);
  /** Four copies of a constant, from a local set once at the start of the function. */
  splat = (x: number): Code => {
    const key = Math.fround(x);
    let n = this.constants.get(key);
    if (n === undefined) {
      n = `const ${key}`;
      this.constants.set(key, n);
      this.local(n, V128);
      this.prologue.push(this.set(n, f32x4.splat(f32.const(key))));
    }
    return this.get(n);
  };
  emit(...code: Code[]): this {
    this.body.push(...code);
    return this;
  }
  /** The code section entry: locals and body. */
  encode(): number[] {
    const locals = this.localTypes.map((t) => [1, t]);
    return vec(cat(leb(locals.length), ...locals, ...this.prologue, ...this.body, [0x0b]));
  }
}

/**
 * A module of `funcs` (each exported under its name, no results) over one memory: imported as
 * env.mem (the tfjs wasm heap; `shared` for the threaded build, whose memory is shared) or, when
 * `ownPages` is given, its own exported memory `mem` of that many pages.
 */
export function assemble(funcs: Func[], memory: { import: true; shared: boolean } | { ownPages: number }): Uint8Array {
  const section = (id: number, b: number[]) => [id, ...vec(b)];
  const types = funcs.map((f) => [0x60, ...vec(f.params.map(([, t]) => t)), 0]);
  const sections: number[][] = [section(1, [...leb(funcs.length), ...cat(...types)])];
  if ('import' in memory) {
    // limits: flags 0 (min), or 3 (shared: min and max, 4 GiB)
    const limits = memory.shared ? [3, ...leb(1), ...leb(65536)] : [0, ...leb(1)];
    sections.push(section(2, [1, ...name('env'), ...name('mem'), 2, ...limits]));
  }
  sections.push(section(3, [...leb(funcs.length), ...funcs.flatMap((_, i) => leb(i))]));
  if ('ownPages' in memory) sections.push(section(5, [1, 0, ...leb(memory.ownPages)]));
  const exports = funcs.map((f, i) => [...name(f.exportName), 0, ...leb(i)]);
  if ('ownPages' in memory) exports.push([...name('mem'), 2, 0]);
  sections.push(section(7, [...leb(exports.length), ...cat(...exports)]));
  sections.push(section(10, [...leb(funcs.length), ...cat(...funcs.map((f) => f.encode()))]));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...cat(...sections)]);
}
