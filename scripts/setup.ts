// One-time machine setup for the notebooks: Jupyter's nbconvert + ipykernel, and the tslab kernel.
//
// - When `jupyter nbconvert` is missing: as root on Debian/Ubuntu it installs the apt packages
//   jupyter-nbconvert and python3-ipykernel; otherwise it stops with the command to run.
// - When OpenBLAS is missing (Linux): as root on Debian/Ubuntu it installs libopenblas0, which the wasm
//   backend's matMuls use (src/lib/tfjs/blas-matmul.ts); otherwise it says how, and goes on (the
//   matMuls then run on onnxruntime, about 1.2-2x slower per training step).
// - Registers the tslab kernel (`tslab install`) for the Python that has jupyter_client. The kernel
//   spec starts `tslab` from PATH; our npm scripts put node_modules/.bin on PATH.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { repoRoot } from '../src/lib/paths';

function run(cmd: string, args: string[], opts: { quiet?: boolean } = {}): { ok: boolean; stdout: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: opts.quiet ? 'pipe' : ['ignore', 'inherit', 'inherit'] });
  return { ok: r.status === 0, stdout: r.stdout ?? '' };
}

function has(cmd: string, args: string[]): boolean {
  return run(cmd, args, { quiet: true }).ok;
}

function ensureJupyter(): void {
  if (has('jupyter', ['nbconvert', '--version'])) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot && fs.existsSync('/usr/bin/apt-get')) {
    console.log('[setup] installing jupyter-nbconvert and python3-ipykernel with apt-get');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const upd = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const inst = spawnSync('apt-get', ['install', '-y', '-qq', 'jupyter-nbconvert', 'python3-ipykernel'], { stdio: 'inherit', env });
    if (upd.status === 0 && inst.status === 0 && has('jupyter', ['nbconvert', '--version'])) return;
  }
  throw new Error(
    'Jupyter is missing: `jupyter nbconvert` was not found. Install it with\n' +
      '  sudo apt-get install jupyter-nbconvert python3-ipykernel      (Debian/Ubuntu)\n' +
      'or\n  python3 -m pip install nbconvert ipykernel jupyterlab\nthen rerun this command.',
  );
}

function ensureBlas(): void {
  if (process.platform !== 'linux') return;
  const found = () => run('sh', ['-c', "ldconfig -p 2>/dev/null | grep -q 'libopenblas\\.so\\.0'"], { quiet: true }).ok;
  if (found()) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot && fs.existsSync('/usr/bin/apt-get')) {
    console.log('[setup] installing libopenblas0 with apt-get (the wasm backend\'s matMuls)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    spawnSync('apt-get', ['install', '-y', '-qq', 'libopenblas0'], { stdio: 'inherit', env });
    if (found()) return;
  }
  console.log('[setup] OpenBLAS not found: matMuls will run on onnxruntime (slower). To use it: sudo apt-get install libopenblas0');
}

/** The Python interpreter that runs Jupyter (has jupyter_client), for `tslab install`. */
function jupyterPython(): string {
  const candidates: string[] = [];
  try {
    const jupyter = spawnSync('sh', ['-c', 'command -v jupyter'], { encoding: 'utf8' }).stdout.trim();
    if (jupyter) {
      const shebang = fs.readFileSync(fs.realpathSync(jupyter), 'utf8').split('\n')[0];
      if (shebang.startsWith('#!')) candidates.push(shebang.slice(2).trim().split(/\s+/)[0]);
    }
  } catch {
    /* fall through */
  }
  candidates.push('/usr/bin/python3', 'python3');
  for (const py of candidates) if (has(py, ['-c', 'import jupyter_client, ipykernel'])) return py;
  for (const py of candidates) if (has(py, ['-c', 'import jupyter_client'])) return py;
  throw new Error('no Python with jupyter_client found; install python3-ipykernel (apt) or `pip install ipykernel`');
}

/**
 * Whether `python` sees a tslab kernel that starts `tslab` from PATH. Asks jupyter_client itself: the
 * `jupyter kernelspec` command lives in Debian's separate jupyter-client package, often absent.
 */
function kernelRegistered(py: string): boolean {
  const code =
    'import json\nfrom jupyter_client.kernelspec import KernelSpecManager\n' +
    "print(json.dumps({k: v['spec']['argv'] for k, v in KernelSpecManager().get_all_specs().items()}))";
  const r = run(py, ['-c', code], { quiet: true });
  if (!r.ok) return false;
  try {
    const specs = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as Record<string, string[]>;
    return Boolean(specs.tslab && specs.tslab[0] === 'tslab');
  } catch {
    return false;
  }
}

function ensureKernel(): void {
  const py = jupyterPython();
  if (kernelRegistered(py)) return;
  const tslab = path.join(repoRoot(), 'node_modules', '.bin', 'tslab');
  if (!fs.existsSync(tslab)) throw new Error('tslab is not installed: run `npm ci` first');
  console.log(`[setup] registering the tslab kernel for ${py}`);
  const r = run(tslab, ['install', `--python=${py}`]);
  if (!r.ok || !kernelRegistered(py)) throw new Error('`tslab install` failed; see the output above');
}

function main(): void {
  ensureJupyter();
  ensureBlas();
  ensureKernel();
  console.log('[setup] jupyter nbconvert and the tslab kernel are ready');
}

try {
  main();
} catch (e) {
  console.error(`[setup] ${(e as Error).message}`);
  process.exit(1);
}
