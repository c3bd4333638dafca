// Timings of the onnxruntime products (CLIPCAP_ORT_PROFILE=1), for tuning the matMul routing of
// matmul.ts: every product run by ort-matmul.ts is timed by kind and shape, and the 30 slowest shapes
// are printed to stderr when the process exits. The setting is read once, when this module loads;
// off, nothing is timed. Benchmarks turn the timing on with startOrtProfile() and read the totals
// with takeOrtTotals() (bench/steps.ts --products).
import { settings } from '../settings';

interface Entry {
  ms: number;
  n: number;
  flop: number;
}

let table: Map<string, Entry> | null = settings().ortProfile ? new Map() : null;
if (table) {
  process.on('exit', () => {
    const rows = [...(table ?? [])].sort((a, b) => b[1].ms - a[1].ms);
    const total = rows.reduce((a, [, e]) => a + e.ms, 0);
    console.error(`onnxruntime products: ${total.toFixed(0)} ms in total`);
    for (const [k, e] of rows.slice(0, 30)) console.error(`  ${k.padEnd(44)} ${e.ms.toFixed(0).padStart(7)} ms ${String(e.n).padStart(5)} calls ${(e.flop / e.ms / 1e6).toFixed(1).padStart(7)} GFLOP/s`);
  });
}

/** Is the time of each product taken (CLIPCAP_ORT_PROFILE, or startOrtProfile())? */
export function ortProfiling(): boolean {
  return table !== null;
}

/** Start taking the time of each product (nothing printed at exit unless CLIPCAP_ORT_PROFILE is set). */
export function startOrtProfile(): void {
  table ??= new Map();
}

/**
 * The products timed since the last call (or the start): milliseconds, operations, calls, and the
 * rows by kind and shape, slowest first; the table is emptied.
 */
export function takeOrtTotals(): { ms: number; flop: number; calls: number; rows: [string, Entry][] } {
  const t = { ms: 0, flop: 0, calls: 0, rows: [] as [string, Entry][] };
  if (!table) return t;
  for (const e of table.values()) {
    t.ms += e.ms;
    t.flop += e.flop;
    t.calls += e.n;
  }
  t.rows = [...table].sort((a, b) => b[1].ms - a[1].ms);
  table.clear();
  return t;
}

/** Add one product of `flop` floating-point operations that took `ms` to the row `key`. */
export function recordOrtProduct(key: string, ms: number, flop: number): void {
  if (!table) return;
  const e = table.get(key) ?? { ms: 0, n: 0, flop: 0 };
  e.ms += ms;
  e.n += 1;
  e.flop += flop;
  table.set(key, e);
}
