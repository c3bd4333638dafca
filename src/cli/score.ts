// `clipcap score --results R.json --annotations A.json [--json]`
//
// COCO caption metrics of a results file, computed as the official toolkit (pycocoevalcap) does:
// R is in the COCO results format, [{"image_id": 42, "caption": "a dog ..."}, ...] (one caption per image);
// A is in the COCO captions format, {"images"?: [{"id": 42, ...}], "annotations": [{"image_id": 42,
// "caption": "..."}, ...]}. The images scored are those of R, every one of which must have annotations;
// annotated images without a result are left out (as in the toolkit). Prints a table, or with --json one
// JSON object with the toolkit's keys Bleu_1..Bleu_4, ROUGE_L, CIDEr.
import * as fs from 'fs';
import { parseArgs } from './args';
import { scoreCaptions, METRIC_NAMES } from '../lib/eval/metrics/index';
import { tableText } from '../lib/notebook/display';

const USAGE = `usage: clipcap score --results R.json --annotations A.json [--json]
  --results R.json       candidate captions, COCO results format: [{"image_id", "caption"}, ...]
  --annotations A.json   reference captions, COCO captions format: {"annotations": [{"image_id", "caption"}, ...]}
  --json                 print one JSON object {"Bleu_1", ..., "Bleu_4", "ROUGE_L", "CIDEr"}`;

type ImageId = number | string;

/** A clear, single-line error about an input file. */
class InputError extends Error {}

function readJson(file: string, role: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read the ${role} file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file} (${role}) is not valid JSON: ${(e as Error).message}`);
  }
}

const isId = (v: unknown): v is ImageId => (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v.length > 0);
const show = (id: ImageId) => JSON.stringify(id);

/** Results file -> image id -> caption, in file order. */
export function readResults(file: string): Map<ImageId, string> {
  const data = readJson(file, '--results');
  if (!Array.isArray(data)) {
    throw new InputError(`${file} (--results) must be a JSON array of {"image_id", "caption"} objects (COCO results format), got ${describe(data)}`);
  }
  if (data.length === 0) throw new InputError(`${file} (--results) has no results`);
  const out = new Map<ImageId, string>();
  const firstIndex = new Map<ImageId, number>();
  data.forEach((r: unknown, i: number) => {
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new InputError(`${file} (--results) entry ${i}: expected an object {"image_id", "caption"}, got ${describe(r)}`);
    const { image_id: id, caption } = r as Record<string, unknown>;
    if (!isId(id)) throw new InputError(`${file} (--results) entry ${i}: "image_id" must be a number or a non-empty string, got ${describe(id)}`);
    if (typeof caption !== 'string') throw new InputError(`${file} (--results) entry ${i}: "caption" must be a string, got ${describe(caption)}`);
    if (out.has(id)) {
      throw new InputError(`${file} (--results): image_id ${show(id)} appears more than once (entries ${firstIndex.get(id)} and ${i}); the results format has one caption per image`);
    }
    out.set(id, caption);
    firstIndex.set(id, i);
  });
  return out;
}

/** Annotations file -> image id -> reference captions, images in the file's order ("images" first, if present). */
export function readAnnotations(file: string): Map<ImageId, string[]> {
  const data = readJson(file, '--annotations');
  if (typeof data !== 'object' || data === null || Array.isArray(data) || !Array.isArray((data as Record<string, unknown>).annotations)) {
    throw new InputError(`${file} (--annotations) must be a COCO captions file: an object with an "annotations" array of {"image_id", "caption"}, got ${describe(data)}`);
  }
  const d = data as { images?: unknown; annotations: unknown[] };
  const out = new Map<ImageId, string[]>();
  // The toolkit scores images in the order of the annotation file's images.
  if (d.images !== undefined) {
    if (!Array.isArray(d.images)) throw new InputError(`${file} (--annotations): "images" must be an array, got ${describe(d.images)}`);
    d.images.forEach((im: unknown, i: number) => {
      const id = typeof im === 'object' && im !== null ? (im as Record<string, unknown>).id : undefined;
      if (!isId(id)) throw new InputError(`${file} (--annotations) images[${i}]: "id" must be a number or a non-empty string, got ${describe(id)}`);
      if (!out.has(id)) out.set(id, []);
    });
  }
  d.annotations.forEach((a: unknown, i: number) => {
    if (typeof a !== 'object' || a === null || Array.isArray(a)) throw new InputError(`${file} (--annotations) annotations[${i}]: expected an object {"image_id", "caption"}, got ${describe(a)}`);
    const { image_id: id, caption } = a as Record<string, unknown>;
    if (!isId(id)) throw new InputError(`${file} (--annotations) annotations[${i}]: "image_id" must be a number or a non-empty string, got ${describe(id)}`);
    if (typeof caption !== 'string') throw new InputError(`${file} (--annotations) annotations[${i}]: "caption" must be a string, got ${describe(caption)}`);
    const list = out.get(id);
    if (list) list.push(caption);
    else out.set(id, [caption]);
  });
  return out;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return `an object with keys ${JSON.stringify(Object.keys(v as object).slice(0, 5))}`;
  const s = JSON.stringify(v);
  return `${typeof v} ${s.length > 40 ? s.slice(0, 40) + '...' : s}`;
}

export async function run(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs(argv, { values: { results: 'string', annotations: 'string' }, flags: ['json'], usage: USAGE });
  } catch (e) {
    console.error(`clipcap score: ${(e as Error).message}`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const resultsFile = args.values.results as string | undefined;
  const annotationsFile = args.values.annotations as string | undefined;
  if (!resultsFile || !annotationsFile || args.positional.length) {
    console.error(`clipcap score: ${args.positional.length ? `unexpected argument "${args.positional[0]}"` : 'both --results and --annotations are required'}\n${USAGE}`);
    return 2;
  }
  try {
    const res = readResults(resultsFile);
    const gts = readAnnotations(annotationsFile);
    const missing = [...res.keys()].filter((id) => !(gts.get(id)?.length));
    if (missing.length) {
      throw new InputError(
        `${missing.length} of ${res.size} image_id(s) in ${resultsFile} have no reference captions in ${annotationsFile}, e.g. ${missing.slice(0, 5).map(show).join(', ')}` +
          (missing.some((id) => gts.has(typeof id === 'number' ? String(id) : Number(id))) ? ' (ids differ in type: number vs string)' : ''),
      );
    }
    const { scores, count } = scoreCaptions(gts, res);
    const unscored = [...gts.values()].filter((v) => v.length).length - count;
    if (args.flags.json) {
      console.log(JSON.stringify(Object.fromEntries(METRIC_NAMES.map((m) => [m, scores[m]]))));
    } else {
      console.log(tableText(METRIC_NAMES.map((m) => ({ metric: m, score: scores[m].toFixed(4) }))));
      console.log(`\n${count} image(s) scored${unscored > 0 ? `; ${unscored} annotated image(s) without a result left out` : ''}`);
    }
    return 0;
  } catch (e) {
    if (e instanceof InputError) {
      console.error(`clipcap score: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
