/**
 * One writer at a time per output root: a sweep holds `<out>/.headsweep.lock` (a shard
 * `<out>/.headsweep.shard-<i>-of-<n>.lock`, so the shards of one sweep share a root) and a
 * compaction `<out>/.headsweep.compact.lock`. A second sweep on the same root stops before
 * it touches anything, saying who holds the lock; without it, the second sweep's start-up
 * would delete the first one's files in flight (sweep.ts removes killed sweeps' temporary
 * files) and leave false `errors` rows.
 *
 * The lock file names its holder (pid, host, when, what) and is created whole or not at
 * all: written under a temporary name, then hard-linked to the lock name, which fails if
 * the name exists (atomic on local file systems and on NFS, where `O_EXCL` is not always).
 * A lock whose holder is gone is taken over:
 * - on the same host, when no process has its pid (a sweep killed with SIGKILL, a power cut);
 * - from another host, when its file has not been touched for `STALE_AFTER_MS` (the holder
 *   touches it every `HEARTBEAT_MS` while it runs).
 * Written here rather than with `proper-lockfile`, which judges every lock by its age
 * alone and records no holder, so it could neither name who holds a lock nor free the lock
 * of a process that died on this host at once.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readdirSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { HeadsweepError, shownPath } from '../src/errors.ts';
import { readRegularFile } from '../src/files.ts';
import type { Shard } from './shard.ts';

/** How often a holder touches its lock file. */
const HEARTBEAT_MS = 60_000;
/** A lock of another host untouched this long is stale: its holder missed ten heartbeats. */
export const STALE_AFTER_MS = 10 * HEARTBEAT_MS;

/** What a lock file says of its holder. */
export interface LockHolder {
  pid: number;
  host: string;
  started_at: string;
  /** The command line, for the person who finds the lock held. */
  command: string;
  /** Distinguishes two holders with the same pid (a pid reused after a reboot). */
  token: string;
}

/** The lock file names headsweep writes into an output root (sweep.ts accepts them as its own). */
export function isLockFile(name: string): boolean {
  return /^\.headsweep(\.shard-\d+-of-\d+|\.compact)?\.lock(\.\d+\.[0-9a-f-]+\.tmp)?$/.test(name);
}

/** The lock of a sweep over the whole root, or of one shard of it. */
export function sweepLockName(shard: Shard | null): string {
  return shard === null ? '.headsweep.lock' : `.headsweep.shard-${shard.index}-of-${shard.count}.lock`;
}

export const COMPACT_LOCK = '.headsweep.compact.lock';

function readHolder(file: string): LockHolder | null {
  try {
    // Regular files only: a FIFO under the lock's name must not hang the sweep that checks it.
    const value = JSON.parse(readRegularFile(file).toString('utf8')) as Partial<LockHolder>;
    if (typeof value.pid !== 'number' || typeof value.host !== 'string' || typeof value.token !== 'string') return null;
    return value as LockHolder;
  } catch {
    return null;
  }
}

/** Whether a process with this pid runs on this host (EPERM: it does, as another user). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why the holder of `file` no longer holds it, or null when it may still. */
function staleReason(file: string, holder: LockHolder | null): string | null {
  let age: number;
  try {
    age = Date.now() - statSync(file).mtimeMs;
  } catch {
    return 'it is gone';
  }
  if (holder !== null && holder.host === hostname()) return processRuns(holder.pid) ? null : `process ${holder.pid} no longer runs`;
  if (age > STALE_AFTER_MS) return `it was last touched ${Math.round(age / 60_000)} minutes ago`;
  return null;
}

function describe(holder: LockHolder | null): string {
  if (holder === null) return 'a process whose lock file cannot be read';
  return `process ${holder.pid} on ${holder.host} (started ${holder.started_at}: ${holder.command})`;
}

/** A held lock; `release` removes it, if it is still this holder's. */
export class Lock {
  private timer: NodeJS.Timeout | null;
  private readonly onExit = () => this.release();

  private constructor(readonly file: string, private readonly holder: LockHolder) {
    // Touched while held, so another host can tell a live holder from a dead one.
    this.timer = setInterval(() => {
      try {
        const now = new Date();
        utimesSync(this.file, now, now);
      } catch {
        // Gone (removed by hand): nothing to keep fresh.
      }
    }, HEARTBEAT_MS);
    this.timer.unref();
    // A process that exits without releasing (an uncaught error) leaves no lock behind.
    process.once('exit', this.onExit);
  }

  /**
   * Takes `name` in `dir` (created if missing), after checking that no live holder has one
   * of `conflicts` (locks that exclude this one: a whole-root sweep and a shard's).
   * `what` says what is locked, for the message: "the output folder /x", "shard 1/4 of /x".
   */
  static acquire(dir: string, name: string, what: string, conflicts: (names: string[]) => string[] = () => []): Lock {
    mkdirSync(dir, { recursive: true });
    const file = join(dir, name);
    const holder: LockHolder = {
      pid: process.pid, host: hostname(), started_at: new Date().toISOString(), command: process.argv.slice(1).join(' ').slice(0, 500), token: randomUUID(),
    };
    const tmp = `${file}.${process.pid}.${holder.token}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(holder)}\n`);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          linkSync(tmp, file);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        const current = readHolder(file);
        const stale = staleReason(file, current);
        if (stale === null || attempt >= 3) throw held(what, file, current);
        takeOver(file, current);
      }
    } finally {
      unlinkSync(tmp);
    }
    const lock = new Lock(file, holder);
    // Locks that exclude this one, taken after ours: of two that start at once, at least one sees the other.
    for (const other of conflicts(readdirNames(dir))) {
      const path = join(dir, other);
      const current = readHolder(path);
      if (existsSync(path) && staleReason(path, current) === null) {
        lock.release();
        throw held(what, path, current);
      }
    }
    return lock;
  }

  release(): void {
    if (this.timer === null) return;
    clearInterval(this.timer);
    this.timer = null;
    process.off('exit', this.onExit);
    // Only our own: a lock taken over by another (ours judged stale) is theirs now.
    if (readHolder(this.file)?.token === this.holder.token) {
      try {
        unlinkSync(this.file);
      } catch {
        // Removed by hand meanwhile.
      }
    }
  }
}

function readdirNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Removes a stale lock: moved aside first, and put back if what was moved is not the
 * holder judged stale (another process took the lock over in between).
 */
function takeOver(file: string, judged: LockHolder | null): void {
  const aside = `${file}.${process.pid}.${randomUUID()}.tmp`;
  try {
    renameSync(file, aside);
  } catch {
    return;
  }
  const moved = readHolder(aside);
  if (judged !== null && moved?.token !== judged.token) {
    try {
      linkSync(aside, file);
    } catch {
      // Someone holds the name already: theirs stands.
    }
  }
  unlinkSync(aside);
}

function held(what: string, file: string, holder: LockHolder | null): HeadsweepError {
  const lock = shownPath(file);
  const way = holder !== null && holder.host === hostname()
    ? `wait for it to end (if that process is not a headsweep, its pid was reused: delete ${lock})`
    : `wait for it to end (its lock is taken over once untouched for ${STALE_AFTER_MS / 60_000} minutes; if that process is gone, delete ${lock})`;
  return new HeadsweepError(`${what} is being written by ${describe(holder)}; ${way}`, { stage: 'write', file });
}

