// The data layer: caption sources loaded into one polars schema, seeded subsets, downloads, the
// offline language-model corpus. See each module for details.
export * from './schema';
export * from './read';
export * from './coco';
export * from './karpathy';
export * from './flickr';
export * from './mirror';
export * from './synthetic';
export * from './custom';
export * from './subset';
export * from './zip';
export * from './download';
export * from './remote';
export * from './build';
export * from './corpus';
