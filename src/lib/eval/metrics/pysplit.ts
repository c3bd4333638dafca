// Python's two ways of splitting a tokenized caption, reproduced exactly because the toolkit uses both:
// BLEU and CIDEr call `s.split()` (runs of any Unicode whitespace, no empty pieces) while ROUGE-L calls
// `s.split(" ")` (single spaces, empty pieces kept, so "" gives [""]).

// The characters for which Python's str.isspace() is true (Unicode White_Space plus the ASCII separators
// \x1c-\x1f that Python also treats as whitespace).
const PY_WS = '[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+';
const PY_WS_RE = new RegExp(PY_WS, 'u');
const PY_WS_SPLIT = new RegExp(PY_WS, 'gu');

/** Python's `s.split()`: words separated by runs of whitespace; leading/trailing whitespace ignored. */
export function pySplit(s: string): string[] {
  if (!PY_WS_RE.test(s)) return s.length ? [s] : [];
  return s.split(PY_WS_SPLIT).filter((w) => w.length > 0);
}

/** Python's `s.split(" ")`: split on every single space, keeping empty pieces. */
export function pySplitSpace(s: string): string[] {
  return s.split(' ');
}
