// `clipcap` command line: one subcommand per file in src/cli/.
//   clipcap lm       --model <dir|hub id> --prompt TEXT [--max-new-tokens N] [--greedy] [--json]
//   clipcap caption  --run data/runs/<name> [--beam N] [--json] IMAGE...
//   clipcap score    --results R.json --annotations A.json [--json]
const COMMANDS: Record<string, { file: string; summary: string }> = {
  lm: { file: './cli/lm', summary: 'continue a prompt with a GPT-2 model (local directory or hub id)' },
  caption: { file: './cli/caption', summary: 'caption images with a trained ClipCap run' },
  score: { file: './cli/score', summary: 'COCO caption metrics (BLEU-1..4, ROUGE-L, CIDEr-D) of a results file' },
};

function usage(): string {
  return ['usage: clipcap <command> [options]', '', ...Object.entries(COMMANDS).map(([k, v]) => `  ${k.padEnd(8)} ${v.summary}`), '', 'clipcap <command> --help for its options'].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h') {
    console.log(usage());
    return cmd ? 0 : 2;
  }
  const entry = COMMANDS[cmd];
  if (!entry) {
    console.error(`clipcap: unknown command "${cmd}"\n\n${usage()}`);
    return 2;
  }
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const mod = require(entry.file) as { run: (args: string[]) => Promise<number> };
  return mod.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(`clipcap: ${(e as Error).message}`);
    process.exitCode = 1;
  },
);
