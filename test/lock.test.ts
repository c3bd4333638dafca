// The one-writer lock (util/lock.ts) that embedding stores and training runs take.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { acquireLock, releaseLock } from '../src/lib/util/lock';

const msgs = { busy: (pid: number) => `busy: held by ${pid}`, self: 'held by this process' };

test('a lock is exclusive while its process lives, taken over when that process is gone, released by its owner only', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-lock-'));
  const lock = path.join(dir, 'train.lock');
  acquireLock(lock, msgs);
  assert.equal(fs.readFileSync(lock, 'utf8').split('\n')[0], String(process.pid));
  assert.throws(() => acquireLock(lock, msgs), /held by this process/);
  releaseLock(lock);
  assert.ok(!fs.existsSync(lock));

  // held by a live process: refused, naming it
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
  try {
    fs.writeFileSync(lock, `${child.pid}\n`);
    assert.throws(() => acquireLock(lock, msgs), new RegExp(`busy: held by ${child.pid}`));
    releaseLock(lock); // not ours: left alone
    assert.ok(fs.existsSync(lock));
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
  }
  // its process is gone (killed writer): taken over
  acquireLock(lock, msgs);
  assert.equal(fs.readFileSync(lock, 'utf8').split('\n')[0], String(process.pid));
  releaseLock(lock);
});
