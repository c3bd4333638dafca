// A one-writer lock file: created exclusively with the writer's pid, the start time of that process
// and the boot it runs in (Linux: /proc/<pid>/stat field 22 and /proc/sys/kernel/random/boot_id). A
// lock whose process is gone (killed writer), or whose pid now belongs to another process (the pid was
// reused after a restart: another start time or boot), is taken over. Used by embedding stores and
// training runs. Every refusal names the lock file and how to clear it.
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

/** The start time of a process (clock ticks since boot, /proc/<pid>/stat field 22), or null where unknown. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // field 2 (the command) is in parentheses and may hold spaces: count fields after the last ')'
    const rest = stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/);
    const start = rest[22 - 3];
    return start && /^\d+$/.test(start) ? start : null;
  } catch {
    return null;
  }
}

let cachedBootId: string | null | undefined;

/** This machine's boot id (Linux), or null. */
export function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId;
}

interface LockOwner {
  pid: number;
  start: string | null;
  boot: string | null;
}

/** The lock file's text: the pid on the first line (as older versions wrote it), then start and boot. */
function lockText(): string {
  const start = processStartTime(process.pid);
  const boot = bootId();
  return `${process.pid}\n${start ? `start ${start}\n` : ''}${boot ? `boot ${boot}\n` : ''}`;
}

function readOwner(lockPath: string): LockOwner {
  const text = fs.readFileSync(lockPath, 'utf8');
  const field = (k: string) => new RegExp(`^${k} (\\S+)$`, 'm').exec(text)?.[1] ?? null;
  return { pid: Number.parseInt(text, 10), start: field('start'), boot: field('boot') };
}

/**
 * Is the lock's writer still running? Its pid must be alive and, where the lock records them, be the
 * same process: same boot, same start time (else the pid was reused by another process).
 */
function ownerAlive(o: LockOwner): boolean {
  if (!Number.isFinite(o.pid) || o.pid <= 0 || !isAlive(o.pid)) return false;
  const boot = bootId();
  if (o.boot && boot && o.boot !== boot) return false;
  if (o.start) {
    const now = processStartTime(o.pid);
    if (now && now !== o.start) return false;
  }
  return true;
}

/**
 * Take the lock at `lockPath` for this process, or throw: `messages.busy(pid)` when another live
 * process holds it, `messages.self` when this process already does (both followed by the lock file and
 * how to clear it). Release with releaseLock.
 */
export function acquireLock(lockPath: string, messages: { busy: (pid: number) => string; self: string }): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(lockPath, 'wx');
      fs.writeSync(fd, lockText());
      fs.closeSync(fd);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = readOwner(lockPath);
      if (owner.pid === process.pid && ownerAlive(owner)) throw new Error(`${messages.self} (lock file ${lockPath})`);
      if (owner.pid !== process.pid && ownerAlive(owner)) {
        throw new Error(`${messages.busy(owner.pid)} (lock file ${lockPath}; if process ${owner.pid} is not that writer any more, delete the lock file and rerun)`);
      }
      fs.rmSync(lockPath, { force: true }); // left by a killed writer, or its pid now belongs to another process
    }
  }
  throw new Error(`cannot take the lock ${lockPath}; if no other process is writing there, delete it and rerun`);
}

/** Release a lock taken by this process (a lock of another process is left alone). */
export function releaseLock(lockPath: string): void {
  try {
    if (Number.parseInt(fs.readFileSync(lockPath, 'utf8'), 10) === process.pid) fs.rmSync(lockPath, { force: true });
  } catch {
    /* already gone */
  }
}
