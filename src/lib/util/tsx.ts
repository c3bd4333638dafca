// Child processes that run this project's TypeScript sources (extraction and captioning workers)
// start Node with tsx's loader.

/** The `--import` argument that loads tsx's ESM+CJS loader in a child process. */
export function tsxImportUrl(): string {
  return 'file://' + require.resolve('tsx');
}
