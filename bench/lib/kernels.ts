// Per-kernel time of one call of `f` (tf.profile), printed as the `top` heaviest kernels: shared by the
// benchmarks' --profile / --kernels options.
import * as tf from '@tensorflow/tfjs';

export async function printKernelProfile(label: string, f: () => void | Promise<void>, top = 15): Promise<void> {
  const info = await tf.profile(async () => {
    await f();
    return tf.scalar(0);
  });
  const byName = new Map<string, { ms: number; n: number }>();
  for (const k of info.kernels) {
    const e = byName.get(k.name) ?? { ms: 0, n: 0 };
    e.ms += k.kernelTimeMs as number;
    e.n += 1;
    byName.set(k.name, e);
  }
  const total = [...byName.values()].reduce((a, e) => a + e.ms, 0);
  console.log(`  kernels of one ${label} step: ${total.toFixed(0)} ms in ${info.kernels.length} calls`);
  for (const [name, e] of [...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)) console.log(`    ${name.padEnd(24)} ${e.ms.toFixed(1).padStart(7)} ms  ${String(e.n).padStart(5)} calls`);
}
