// Reading caption files with errors that say which file, which line or entry, and what is wrong.
import * as fs from 'fs';

/** An error in an input file: the message names the file, the place in it and the problem. */
export class DataFormatError extends Error {
  constructor(
    readonly file: string,
    readonly location: string,
    readonly problem: string,
    readonly hint = '',
  ) {
    super(`${file}${location ? `: ${location}` : ''}: ${problem}${hint ? ` (${hint})` : ''}`);
    this.name = 'DataFormatError';
  }
}

/** Read a text file; a missing file is an error that names it and `hint` (what it should be). */
export function readText(file: string, hint = ''): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : (e as Error).message;
    throw new DataFormatError(file, '', why, hint);
  }
}

/** 1-based line and column of a character offset. */
export function lineCol(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, col: offset - last };
}

/** Parse a JSON file; a syntax error names the file and its line and column. */
export function readJsonFile(file: string, hint = ''): unknown {
  const text = readText(file, hint);
  try {
    return JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const m = /position (\d+)/.exec(msg);
    const at = m ? Number(m[1]) : /end of JSON/i.test(msg) ? text.length : -1;
    const loc = at >= 0 && text.trim().length > 0 ? (({ line, col }) => `line ${line} column ${col}`)(lineCol(text, at)) : '';
    const end = text.trim().length === 0 ? 'the file is empty' : `not valid JSON (${msg.replace(/ in JSON at position \d+.*$/, '')})`;
    throw new DataFormatError(file, loc, end, hint);
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `obj[key]` must be an array; else a DataFormatError at `loc`. */
export function requireArray(file: string, obj: unknown, key: string, loc: string, hint: string): unknown[] {
  if (!isObject(obj)) throw new DataFormatError(file, loc || 'top level', `expected an object, found ${describe(obj)}`, hint);
  const v = obj[key];
  if (!Array.isArray(v)) throw new DataFormatError(file, loc || 'top level', `"${key}" ${v === undefined ? 'is missing' : `is ${describe(v)}, not an array`}`, hint);
  return v;
}

/** `obj[key]` must be a non-empty string (or, with `allowNumber`, a number, returned as a string). */
export function requireString(file: string, obj: unknown, key: string, loc: string, hint: string, allowNumber = false): string {
  if (!isObject(obj)) throw new DataFormatError(file, loc, `expected an object, found ${describe(obj)}`, hint);
  const v = obj[key];
  if (typeof v === 'string' && v.length > 0) return v;
  if (allowNumber && typeof v === 'number' && Number.isFinite(v)) return String(v);
  throw new DataFormatError(file, loc, `"${key}" ${v === undefined ? 'is missing' : `is ${describe(v)}`}, expected ${allowNumber ? 'a number or string' : 'a non-empty string'}`, hint);
}

export function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length ? `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}` : 'an empty string';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}
