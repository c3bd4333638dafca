// Opening the embeddings a profile's notebook 02 extracted (data/<profile>/embeddings/<encoder>/).
import type { ProfileConfig } from '../config';
import { artifactPaths, encoderDir } from '../paths';
import { EmbeddingSet } from './embedding-set';
import { encoderName } from './encoders/index';

/** The embedding set of a profile's encoder (all its datasets). */
export function openEmbeddings(profile: ProfileConfig): EmbeddingSet {
  return EmbeddingSet.open(encoderDir(artifactPaths(profile).embeddings, encoderName(profile.encoder)));
}
