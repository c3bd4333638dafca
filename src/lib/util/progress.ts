// A progress bar for long work: count, rate (items/s), ETA and any live metrics (loss, tokens/s).
//
// On a terminal it redraws one line; elsewhere (Jupyter, CI logs) it prints a line at most every
// `intervalMs`, so that notebook outputs stay short but a long run still shows it is alive.

export interface ProgressOptions {
  total: number;
  label?: string;
  unit?: string;
  /** Minimum time between printed lines when not on a terminal. */
  intervalMs?: number;
  /** Where lines go (default process.stderr on a TTY, else console.log so notebooks show it). */
  write?: (line: string, final: boolean) => void;
  /** Starting count (a resumed run); the rate is measured from here. */
  start?: number;
  now?: () => number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

function formatRate(r: number): string {
  if (!Number.isFinite(r)) return '?';
  if (r >= 100) return r.toFixed(0);
  if (r >= 10) return r.toFixed(1);
  return r.toFixed(2);
}

export class Progress {
  readonly total: number;
  readonly label: string;
  readonly unit: string;
  private count: number;
  private readonly startCount: number;
  private readonly t0: number;
  private lastPrint = 0;
  private readonly intervalMs: number;
  private readonly write: (line: string, final: boolean) => void;
  private readonly now: () => number;
  private readonly tty: boolean;
  private done = false;
  metrics: Record<string, string | number> = {};

  constructor(opts: ProgressOptions) {
    this.total = opts.total;
    this.label = opts.label ?? '';
    this.unit = opts.unit ?? 'it';
    this.count = opts.start ?? 0;
    this.startCount = this.count;
    this.now = opts.now ?? (() => Date.now());
    this.t0 = this.now();
    this.tty = !opts.write && Boolean(process.stderr.isTTY);
    this.intervalMs = opts.intervalMs ?? (this.tty ? 200 : 10_000);
    this.write =
      opts.write ??
      (this.tty
        ? (line, final) => process.stderr.write(`\r${line}\x1b[K${final ? '\n' : ''}`)
        : (line) => console.log(line));
  }

  /** Items per second since the start (or the resume point). */
  rate(): number {
    const dt = (this.now() - this.t0) / 1000;
    return dt > 0 ? (this.count - this.startCount) / dt : NaN;
  }

  /** Seconds left at the current rate. */
  eta(): number {
    const r = this.rate();
    return r > 0 ? (this.total - this.count) / r : NaN;
  }

  elapsed(): number {
    return (this.now() - this.t0) / 1000;
  }

  line(): string {
    const pct = this.total > 0 ? ((100 * this.count) / this.total).toFixed(0).padStart(3) : '  ?';
    const m = Object.entries(this.metrics)
      .map(([k, v]) => `${k}=${typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(4)) : v}`)
      .join(' ');
    const head = this.label ? `${this.label} ` : '';
    return (
      `${head}${pct}% ${this.count}/${this.total} ${this.unit} | ${formatRate(this.rate())} ${this.unit}/s | ` +
      `elapsed ${formatDuration(this.elapsed())} | ETA ${formatDuration(this.eta())}` +
      (m ? ` | ${m}` : '')
    );
  }

  /** Advance by n items, optionally updating the live metrics. */
  tick(n = 1, metrics?: Record<string, string | number>): void {
    this.count += n;
    if (metrics) Object.assign(this.metrics, metrics);
    const t = this.now();
    if (this.count >= this.total) {
      this.finish();
      return;
    }
    if (t - this.lastPrint >= this.intervalMs) {
      this.lastPrint = t;
      this.write(this.line(), false);
    }
  }

  /** Print the final line (once). */
  finish(metrics?: Record<string, string | number>): void {
    if (this.done) return;
    if (metrics) Object.assign(this.metrics, metrics);
    this.done = true;
    this.write(this.line(), true);
  }

  get value(): number {
    return this.count;
  }
}
