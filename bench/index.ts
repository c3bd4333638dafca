// `npm run bench`: every bench/*.ts except this one, in turn, each in its own process (so that one
// benchmark's memory and backend state do not affect the next). Arguments after `--` go to each:
// `npm run bench -- --steps 5`. `--only NAME[,NAME]` picks benchmarks by file name (without .ts).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

function main(): number {
  const argv = process.argv.slice(2);
  let only: string[] | null = null;
  const pass: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--only') only = argv[++i].split(',');
    else pass.push(argv[i]);
  }
  const files = fs
    .readdirSync(__dirname)
    .filter((f) => f.endsWith('.ts') && f !== 'index.ts' && !f.endsWith('.d.ts'))
    .filter((f) => !only || only.includes(f.replace(/\.ts$/, '')))
    .sort();
  if (files.length === 0) {
    console.error(`no benchmarks${only ? ` named ${only.join(', ')}` : ''} in ${__dirname}`);
    return 2;
  }
  let failed = 0;
  for (const f of files) {
    console.log(`\n=== bench/${f} ${pass.join(' ')}`.trimEnd());
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, f), ...pass], { stdio: 'inherit' });
    const s = ((Date.now() - t0) / 1000).toFixed(0);
    if (r.status !== 0) {
      failed++;
      console.log(`=== bench/${f} failed (exit ${r.status ?? r.signal}) after ${s} s`);
    } else console.log(`=== bench/${f} done in ${s} s`);
  }
  return failed ? 1 : 0;
}

process.exitCode = main();
