// Scores of a trained run on the validation (dev) split: the numbers to tune a recipe on, so that the
// test photos are scored only once per configuration that is kept (notebook 06). Captions every
// validation photo (one caption per photo, as for evaluation) and scores it against its references.
import type { ProfileConfig } from '../config';
import { loadSubsets } from '../data/build';
import { frameColumns, groupImages } from '../data/schema';
import { openEmbeddings } from '../embed/open';
import { openEmbeddingsOfRun, readRunConfig } from '../run/run';
import { retrievalCaptions } from './baselines';
import { captionWithRun, type DecodeConfig } from './caption';
import { captionDiversity, type Diversity } from './diversity';
import { scoreCaptions, type MetricScores } from './metrics/index';
import { mulberry32, shuffled } from '../util/rng';

/** A seeded sample of `n` photos (0 or n >= all: every photo), in their original order: the same photos for every trial. */
export function devSample<T>(groups: T[], n: number): T[] {
  if (!(n > 0) || n >= groups.length) return groups;
  const keep = new Set(shuffled(groups.map((_, i) => i), mulberry32(2024)).slice(0, n));
  return groups.filter((_, i) => keep.has(i));
}

export interface DevScores {
  photos: number;
  scores: MetricScores;
  diversity: Diversity;
  /** A few (photo id, caption) pairs to read. */
  samples: [string, string][];
}

/** Caption the validation photos with the run at `runDir` and score them (BLEU, ROUGE-L, CIDEr-D). */
export async function scoreOnDev(profile: ProfileConfig, runDir: string, decode: DecodeConfig, photos = 0): Promise<DevScores> {
  const config = readRunConfig(runDir);
  if (!config) throw new Error(`${runDir} is not a ClipCap run (no config.json)`);
  const emb = openEmbeddingsOfRun(config);
  const groups = devSample(groupImages(frameColumns(loadSubsets(profile).val), 'val subset').filter((g) => emb.has(g.image_id)), photos);
  if (groups.length === 0) throw new Error('no validation photo has an embedding: run notebooks 01 and 02 first');
  const captions = await captionWithRun(runDir, groups.map((g) => g.image_id), decode, { embeddings: (id) => emb.get(id) });
  const caps = groups.map((g) => captions.get(g.image_id)!);
  const refs = new Map(groups.map((g) => [g.image_id, g.captions]));
  return { photos: groups.length, scores: scoreCaptions(refs, captions).scores, diversity: captionDiversity(caps), samples: groups.slice(0, 5).map((g, i) => [g.image_id, caps[i]]) };
}

/** Nearest-neighbour retrieval (the baseline the captioners must beat) scored on the validation photos. */
export async function retrievalOnDev(profile: ProfileConfig, k: number, photos = 0): Promise<DevScores> {
  const emb = openEmbeddings(profile);
  const subsets = loadSubsets(profile);
  const train = groupImages(frameColumns(subsets.train), 'train subset').filter((g) => emb.has(g.image_id));
  const val = devSample(groupImages(frameColumns(subsets.val), 'val subset').filter((g) => emb.has(g.image_id)), photos);
  const captions = retrievalCaptions(train, (id) => emb.get(id), new Map(val.map((g) => [g.image_id, emb.get(g.image_id)])), k);
  const refs = new Map(val.map((g) => [g.image_id, g.captions]));
  return { photos: val.length, scores: scoreCaptions(refs, captions).scores, diversity: captionDiversity(captions.values()), samples: val.slice(0, 5).map((g) => [g.image_id, captions.get(g.image_id)!]) };
}
