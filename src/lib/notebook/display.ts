// Rich outputs for notebooks (tslab's display API), with plain-text fallbacks outside Jupyter.
import sharp from 'sharp';
import { settings } from '../settings';

interface TslabDisplay {
  html(s: string): void;
  markdown(s: string): void;
  svg(s: string): void;
  png(b: Uint8Array): void;
  jpeg(b: Uint8Array): void;
}

function tslabDisplay(): TslabDisplay | null {
  // Only inside a tslab kernel is there somewhere to send rich outputs.
  if (!settings().jupyterKernel && !process.argv.some((a) => a.includes('tslab'))) return null;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return (require('tslab') as { display: TslabDisplay }).display;
  } catch {
    return null;
  }
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export type Row = Record<string, unknown>;

function fmt(v: unknown): string {
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
  }
  if (v === null || v === undefined) return '';
  return String(v);
}

/** An HTML table of rows; columns in first-seen order. Cells whose key is in `htmlColumns` are raw HTML. */
export function tableHtml(rows: Row[], opts: { htmlColumns?: string[]; caption?: string } = {}): string {
  const cols: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  const raw = new Set(opts.htmlColumns ?? []);
  const head = cols.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
  const body = rows
    .map((r) => `<tr>${cols.map((c) => `<td style="text-align:left;vertical-align:top">${raw.has(c) ? String(r[c] ?? '') : escapeHtml(fmt(r[c]))}</td>`).join('')}</tr>`)
    .join('\n');
  const cap = opts.caption ? `<caption>${escapeHtml(opts.caption)}</caption>` : '';
  return `<table>${cap}<thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** A plain-text table (fixed-width columns). */
export function tableText(rows: Row[]): string {
  const cols: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  const cells = rows.map((r) => cols.map((c) => fmt(r[c])));
  const w = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(w[i])).join('  ').trimEnd();
  return [line(cols), line(w.map((n) => '-'.repeat(n))), ...cells.map(line)].join('\n');
}

/** A markdown table (for REPORT.md). */
export function tableMarkdown(rows: Row[]): string {
  const cols: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `| ${cols.map(esc).join(' | ')} |`,
    `| ${cols.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${cols.map((c) => esc(fmt(r[c]))).join(' | ')} |`),
  ].join('\n');
}

export function showTable(rows: Row[], opts: { htmlColumns?: string[]; caption?: string } = {}): void {
  const d = tslabDisplay();
  if (d) d.html(tableHtml(rows, opts));
  else console.log((opts.caption ? opts.caption + '\n' : '') + tableText(rows));
}

export function showHtml(html: string, fallback = ''): void {
  const d = tslabDisplay();
  if (d) d.html(html);
  else if (fallback) console.log(fallback);
}

export function showMarkdown(md: string): void {
  const d = tslabDisplay();
  if (d) d.markdown(md);
  else console.log(md);
}

export function showSvg(svg: string): void {
  const d = tslabDisplay();
  if (d) d.svg(svg);
}

/** A small JPEG thumbnail of an image file (EXIF orientation applied) as a data: URI for HTML. */
export async function thumbnailDataUri(file: string, size = 160): Promise<string> {
  const buf = await sharp(file).rotate().resize(size, size, { fit: 'inside' }).jpeg({ quality: 80 }).toBuffer();
  return `data:image/jpeg;base64,${buf.toString('base64')}`;
}

export function imgTag(src: string, width = 160): string {
  return `<img src="${escapeHtml(src)}" width="${width}" style="max-width:${width}px"/>`;
}
