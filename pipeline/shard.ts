/**
 * Splitting one sweep over several machines. Shard `i/n` (0 <= i < n) scores the
 * checkpoints `assignShard` gives it; every shard can write into the same output root,
 * since each checkpoint's files are named by the checkpoint alone (TABLES.md), and
 * `headsweep compact` merges what they wrote.
 *
 * Which shard a checkpoint goes to is the sha256 of its key (run and path) modulo n,
 * not a round robin over the sorted plan. Round robin balances counts exactly, but a new
 * checkpoint sorting into the middle of the list (a new step of an earlier run) shifts
 * every later checkpoint to another shard, so a nightly incremental rerun on n machines
 * would redo work that another shard already holds. A hash keeps each checkpoint on the
 * same shard for as long as n stays the same, needs no view of the whole plan, and is
 * the same on every machine whatever order the files were listed in. The price is a
 * balance that is only statistical: with few checkpoints per shard, counts can differ
 * by a few (and a shard can get none).
 */
import { createHash } from 'node:crypto';
import { HeadsweepError } from '../src/errors.ts';

/** Shard `index` of `count`, 0-based. */
export interface Shard {
  index: number;
  count: number;
}

/**
 * The key a checkpoint is assigned by: `<run>` NUL `<path>`, where `path` is the
 * checkpoint path as the config's glob resolved it (relative to the config folder, or
 * absolute when the glob was). The NUL keeps `run` and `path` apart whatever they hold;
 * in Python the same key is `f"{run}\0{path}"`.
 *
 * Relative globs give the same keys on every machine; with absolute globs every machine
 * must mount the checkpoints at the same place.
 */
export function checkpointKey(run: string, path: string): string {
  return `${run}\u0000${path}`;
}

/**
 * The shard (0 .. n-1) that scores the checkpoint with this key: the first 8 bytes of
 * sha256(key, UTF-8), read as a big-endian unsigned integer, modulo n.
 */
export function assignShard(checkpointKey: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new HeadsweepError(`shard count must be a whole number >= 1, got ${n}`, { stage: 'config', key: 'shard' });
  }
  const digest = createHash('sha256').update(checkpointKey, 'utf8').digest();
  return Number(digest.readBigUInt64BE(0) % BigInt(n));
}

/** Whether `shard` scores the checkpoint with this key; every key is in exactly one shard of n. */
export function inShard(checkpointKey: string, shard: Shard): boolean {
  return assignShard(checkpointKey, shard.count) === shard.index;
}

/** `i/n`, the form `--shard` takes. */
export function shardLabel(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

/**
 * The manifest file a shard writes into a shared output root: `manifest.json` for a
 * sweep that is not sharded, `manifest.shard-<i>-of-<n>.json` for shard i of n, so n
 * shards never overwrite each other's manifest. `headsweep compact` reads both forms.
 */
export function manifestFileName(shard: Shard | null): string {
  return shard === null ? 'manifest.json' : `manifest.shard-${shard.index}-of-${shard.count}.json`;
}

/** The shard a manifest file name stands for, null for `manifest.json`, undefined for other names. */
export function shardOfManifestFile(name: string): Shard | null | undefined {
  if (name === 'manifest.json') return null;
  const m = /^manifest\.shard-(\d+)-of-(\d+)\.json$/.exec(name);
  if (m === null) return undefined;
  const shard = { index: Number(m[1]), count: Number(m[2]) };
  return shard.count >= 1 && shard.index < shard.count ? shard : undefined;
}

/**
 * Parses `i/n` (shard i of n, 0 <= i < n). `source` names where the text came from
 * (`--shard` by default) in the error.
 */
export function parseShard(text: string, source = '--shard'): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (m === null) throw shardError(source, `must be i/n (shard i of n, counting from 0), got '${text}'`);
  return checkedShard(Number(m[1]), Number(m[2]), source, `'${text}'`);
}

/**
 * The shard a batch scheduler gives this process, or null when none does:
 *
 * - Kubernetes Indexed Job: `JOB_COMPLETION_INDEX` (set by Kubernetes) of
 *   `JOB_COMPLETIONS` (not set by Kubernetes: the Job spec must pass its
 *   `completions` in this variable).
 * - Slurm job array: `SLURM_ARRAY_TASK_ID` of `SLURM_ARRAY_TASK_COUNT`. Task ids start
 *   at `SLURM_ARRAY_TASK_MIN` (`--array=1-4` gives 1..4) and advance by
 *   `SLURM_ARRAY_TASK_STEP` (`--array=0-6:2`), so the shard index is
 *   (TASK_ID − TASK_MIN) / TASK_STEP. Id lists with gaps (`--array=1,5,7`) cannot be
 *   mapped onto 0..n-1 and are rejected.
 *
 * Kubernetes is read first; a pod does not run inside a Slurm allocation.
 */
export function shardFromEnv(env: Record<string, string | undefined> = process.env): Shard | null {
  if (present(env.JOB_COMPLETION_INDEX)) {
    const index = envInteger(env, 'JOB_COMPLETION_INDEX');
    if (!present(env.JOB_COMPLETIONS)) {
      throw shardError('JOB_COMPLETIONS', `is not set while JOB_COMPLETION_INDEX is ${index}: set it to the Job's spec.completions`);
    }
    const count = envInteger(env, 'JOB_COMPLETIONS');
    return checkedShard(index, count, 'JOB_COMPLETION_INDEX', `${index} with JOB_COMPLETIONS=${count}`);
  }
  if (present(env.SLURM_ARRAY_TASK_ID)) {
    const id = envInteger(env, 'SLURM_ARRAY_TASK_ID');
    if (!present(env.SLURM_ARRAY_TASK_COUNT)) {
      throw shardError('SLURM_ARRAY_TASK_COUNT', `is not set while SLURM_ARRAY_TASK_ID is ${id}`);
    }
    const count = envInteger(env, 'SLURM_ARRAY_TASK_COUNT');
    const min = present(env.SLURM_ARRAY_TASK_MIN) ? envInteger(env, 'SLURM_ARRAY_TASK_MIN') : 0;
    const step = present(env.SLURM_ARRAY_TASK_STEP) ? envInteger(env, 'SLURM_ARRAY_TASK_STEP') : 1;
    const offset = id - min;
    const what = `${id} with SLURM_ARRAY_TASK_MIN=${min}, SLURM_ARRAY_TASK_STEP=${step}, SLURM_ARRAY_TASK_COUNT=${count}`;
    if (step < 1 || offset < 0 || offset % step !== 0) {
      throw shardError('SLURM_ARRAY_TASK_ID', `${what} is not on the array's range: use a contiguous --array=0-${Math.max(count - 1, 0)}`);
    }
    return checkedShard(offset / step, count, 'SLURM_ARRAY_TASK_ID', what);
  }
  return null;
}

function present(value: string | undefined): value is string {
  return value !== undefined && value.trim() !== '';
}

function envInteger(env: Record<string, string | undefined>, name: string): number {
  const text = env[name]!.trim();
  if (!/^\d+$/.test(text)) throw shardError(name, `must be a whole number >= 0, got '${text}'`);
  return Number(text);
}

function checkedShard(index: number, count: number, source: string, shown: string): Shard {
  if (!Number.isSafeInteger(count) || count < 1) throw shardError(source, `${shown}: the shard count must be >= 1`);
  if (!Number.isSafeInteger(index) || index >= count) {
    throw shardError(source, `${shown}: the shard index must be below the shard count (0 <= i < ${count})`);
  }
  return { index, count };
}

function shardError(source: string, reason: string): HeadsweepError {
  return new HeadsweepError(`${source} ${reason}`, { stage: 'config', key: source });
}
