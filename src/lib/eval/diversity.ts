// How varied a system's captions are: distinct captions / photos, and the vocabulary (distinct words,
// lower-cased, punctuation stripped) used across all its captions. A captioner that ignores the image
// writes the same few captions for every photo: a low share and a small vocabulary.

export interface Diversity {
  /** Photos captioned. */
  captions: number;
  /** Distinct captions (compared lower-cased, punctuation and extra spaces stripped). */
  distinct: number;
  /** distinct / captions. */
  share: number;
  /** Distinct words used. */
  vocabulary: number;
}

function words(caption: string): string[] {
  return caption
    .toLowerCase()
    .replace(/[^\p{L}\p{N}' ]+/gu, ' ')
    .split(/\s+/)
    .filter((w) => w && w !== "'");
}

/** Diversity of a set of captions (one per photo). */
export function captionDiversity(captions: Iterable<string>): Diversity {
  const seen = new Set<string>();
  const vocab = new Set<string>();
  let n = 0;
  for (const c of captions) {
    n++;
    const w = words(c);
    seen.add(w.join(' '));
    for (const x of w) vocab.add(x);
  }
  return { captions: n, distinct: seen.size, share: n ? seen.size / n : 0, vocabulary: vocab.size };
}
