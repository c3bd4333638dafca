// A one-writer lock file: created exclusively with the writer's pid; a lock whose process is gone
// (killed writer) is taken over. Used by embedding stores and training runs.
import * as fs from 'fs';

/** Whether a process with this pid exists (EPERM: it exists, owned by someone else). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take the lock at `lockPath` for this process, or throw: `messages.busy(pid)` when another live
 * process holds it, `messages.self` when this process already does. Release with releaseLock.
 */
export function acquireLock(lockPath: string, messages: { busy: (pid: number) => string; self: string }): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(lockPath, 'wx');
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number.parseInt(fs.readFileSync(lockPath, 'utf8'), 10);
      if (Number.isFinite(pid) && pid !== process.pid && isAlive(pid)) throw new Error(messages.busy(pid));
      if (pid === process.pid) throw new Error(messages.self);
      fs.rmSync(lockPath, { force: true }); // left by a killed writer
    }
  }
  throw new Error(`cannot take the lock ${lockPath}`);
}

/** Release a lock taken by this process (a lock of another process is left alone). */
export function releaseLock(lockPath: string): void {
  try {
    if (Number.parseInt(fs.readFileSync(lockPath, 'utf8'), 10) === process.pid) fs.rmSync(lockPath, { force: true });
  } catch {
    /* already gone */
  }
}
