// How caption text is written for the language model (training targets and LM pretraining alike).
//
// The sources disagree on style: COCO captions are mostly "A man riding a horse." while Flickr8k's
// are tokenised, "A man rides a horse ." Since ClipCap's beam search stops at the end of the
// sentence, every caption is written one way: single spaces, no space before punctuation, a capital
// first letter and a final period. Metrics are computed after the COCO toolkit's own tokenisation
// (lower case, punctuation removed), so this changes nothing there.
export function formatCaption(raw: string): string {
  let s = raw.replace(/\s+/g, ' ').trim();
  s = s.replace(/\s+([.,;:!?])/g, '$1').replace(/\s+'s\b/g, "'s");
  s = s.replace(/[\s.]+$/, '');
  if (!s) return '';
  return s.charAt(0).toUpperCase() + s.slice(1) + '.';
}

/** A generated caption as text for scoring and display: up to the end of the first sentence. */
export function cleanGenerated(text: string): string {
  const t = text.replace(/<\|endoftext\|>/g, ' ').replace(/\s+/g, ' ').trim();
  const dot = t.indexOf('.');
  return dot >= 0 ? t.slice(0, dot + 1) : t;
}
