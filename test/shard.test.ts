/**
 * Shard assignment: the documented hash (checked against values computed with Python's
 * hashlib), a disjoint cover of every key for several n, independence from listing
 * order, and the shard read from `--shard`, Kubernetes and Slurm, with one test per
 * malformed value asserting that the message names the flag or variable at fault.
 */
import { describe, expect, it } from 'vitest';
import {
  assignShard, checkpointKey, inShard, manifestFileName, parseShard, shardFromEnv, shardLabel, shardOfManifestFile,
} from '../pipeline/shard.ts';

// 60 checkpoints of three runs, as a config's globs would resolve them.
const KEYS = ['induction-2l', 'induction-4l', 'shortformer-1l'].flatMap((run) =>
  Array.from({ length: 20 }, (_, i) => checkpointKey(run, `checkpoints/${run}/step${String(i * 500).padStart(6, '0')}.safetensors`)));

describe('assignShard', () => {
  it('is the first 8 bytes of sha256(run NUL path) modulo n (values from hashlib)', () => {
    // python: int.from_bytes(hashlib.sha256(f"{run}\0{path}".encode()).digest()[:8], "big") % n
    expect(assignShard(checkpointKey('induction-2l', 'checkpoints/step000100.safetensors'), 4)).toBe(2);
    expect(assignShard(checkpointKey('induction-2l', 'checkpoints/step000200.safetensors'), 4)).toBe(2);
    expect(assignShard(checkpointKey('shortformer-1l', 'ckpt/final.safetensors'), 3)).toBe(1);
    expect(assignShard(checkpointKey('a', 'b'), 7)).toBe(6);
    expect(checkpointKey('a', 'b')).toBe('a\u0000b');
  });

  it('puts every key in exactly one shard, for n = 1, 2, 3, 4 and 7', () => {
    for (const n of [1, 2, 3, 4, 7]) {
      const shards = Array.from({ length: n }, (_, index) => KEYS.filter((k) => inShard(k, { index, count: n })));
      expect(shards.flat().sort()).toEqual([...KEYS].sort());
      expect(shards.reduce((sum, s) => sum + s.length, 0)).toBe(KEYS.length);
      for (const key of KEYS) expect(shards.filter((s) => s.includes(key))).toHaveLength(1);
    }
  });

  it('spreads 60 checkpoints over 4 shards with none empty', () => {
    const counts = [0, 0, 0, 0];
    for (const key of KEYS) counts[assignShard(key, 4)]++;
    expect(counts.every((c) => c > 0)).toBe(true);
  });

  it('does not depend on listing order or on which other checkpoints exist', () => {
    const before = new Map(KEYS.map((k) => [k, assignShard(k, 4)]));
    const reversed = [...KEYS].reverse().map((k) => [k, assignShard(k, 4)] as const);
    expect(new Map(reversed)).toEqual(before);
    // A new step of the first run (what a nightly run finds) moves no existing checkpoint.
    const grown = [checkpointKey('induction-2l', 'checkpoints/induction-2l/step000250.safetensors'), ...KEYS];
    expect(grown.slice(1).map((k) => assignShard(k, 4))).toEqual(KEYS.map((k) => before.get(k)));
  });

  it('rejects a shard count below 1', () => {
    expect(() => assignShard('a', 0)).toThrow('shard count must be a whole number >= 1, got 0');
    expect(() => assignShard('a', 1.5)).toThrow('got 1.5');
  });
});

describe('parseShard', () => {
  it('reads i/n', () => {
    expect(parseShard('0/4')).toEqual({ index: 0, count: 4 });
    expect(parseShard(' 3 / 4 ')).toEqual({ index: 3, count: 4 });
    expect(parseShard('0/1')).toEqual({ index: 0, count: 1 });
    expect(shardLabel(parseShard('2/3'))).toBe('2/3');
  });

  it('names --shard (or the given source) when the value is malformed', () => {
    expect(() => parseShard('3/2')).toThrow("--shard '3/2': the shard index must be below the shard count (0 <= i < 2)");
    expect(() => parseShard('4/4')).toThrow("--shard '4/4': the shard index must be below the shard count (0 <= i < 4)");
    expect(() => parseShard('x/4')).toThrow("--shard must be i/n (shard i of n, counting from 0), got 'x/4'");
    expect(() => parseShard('1')).toThrow("--shard must be i/n (shard i of n, counting from 0), got '1'");
    expect(() => parseShard('-1/4')).toThrow("got '-1/4'");
    expect(() => parseShard('0/0')).toThrow("--shard '0/0': the shard count must be >= 1");
    expect(() => parseShard('5/2', 'HEADSWEEP_SHARD')).toThrow("HEADSWEEP_SHARD '5/2'");
  });

  it('throws a config-stage error keyed by the source, so the CLI exits with 2', () => {
    try {
      parseShard('3/2');
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ name: 'HeadsweepError', stage: 'config', key: '--shard' });
    }
  });
});

describe('shardFromEnv', () => {
  it('is null outside a batch scheduler', () => {
    expect(shardFromEnv({})).toBeNull();
    expect(shardFromEnv({ JOB_COMPLETION_INDEX: '', SLURM_ARRAY_TASK_ID: ' ' })).toBeNull();
  });

  it('reads a Kubernetes Indexed Job', () => {
    expect(shardFromEnv({ JOB_COMPLETION_INDEX: '2', JOB_COMPLETIONS: '4' })).toEqual({ index: 2, count: 4 });
    expect(shardFromEnv({ JOB_COMPLETION_INDEX: '0', JOB_COMPLETIONS: '1' })).toEqual({ index: 0, count: 1 });
  });

  it('reads a Slurm array, counting from SLURM_ARRAY_TASK_MIN by SLURM_ARRAY_TASK_STEP', () => {
    expect(shardFromEnv({ SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '4' })).toEqual({ index: 3, count: 4 });
    // --array=1-4
    expect(shardFromEnv({ SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '1' })).toEqual({ index: 0, count: 4 });
    expect(shardFromEnv({ SLURM_ARRAY_TASK_ID: '4', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '1' })).toEqual({ index: 3, count: 4 });
    // --array=0-6:2 runs tasks 0, 2, 4, 6
    expect(shardFromEnv({
      SLURM_ARRAY_TASK_ID: '6', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_STEP: '2',
    })).toEqual({ index: 3, count: 4 });
  });

  it('reads Kubernetes first when both are set', () => {
    expect(shardFromEnv({
      JOB_COMPLETION_INDEX: '1', JOB_COMPLETIONS: '2', SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_COUNT: '8',
    })).toEqual({ index: 1, count: 2 });
  });

  it('names the variable at fault', () => {
    expect(() => shardFromEnv({ JOB_COMPLETION_INDEX: '4', JOB_COMPLETIONS: '4' }))
      .toThrow('JOB_COMPLETION_INDEX 4 with JOB_COMPLETIONS=4: the shard index must be below the shard count (0 <= i < 4)');
    expect(() => shardFromEnv({ JOB_COMPLETION_INDEX: '1' }))
      .toThrow("JOB_COMPLETIONS is not set while JOB_COMPLETION_INDEX is 1: set it to the Job's spec.completions");
    expect(() => shardFromEnv({ JOB_COMPLETION_INDEX: 'one', JOB_COMPLETIONS: '4' }))
      .toThrow("JOB_COMPLETION_INDEX must be a whole number >= 0, got 'one'");
    expect(() => shardFromEnv({ JOB_COMPLETION_INDEX: '0', JOB_COMPLETIONS: '0' }))
      .toThrow('JOB_COMPLETION_INDEX 0 with JOB_COMPLETIONS=0: the shard count must be >= 1');
    expect(() => shardFromEnv({ SLURM_ARRAY_TASK_ID: '2' }))
      .toThrow('SLURM_ARRAY_TASK_COUNT is not set while SLURM_ARRAY_TASK_ID is 2');
    expect(() => shardFromEnv({ SLURM_ARRAY_TASK_ID: '4', SLURM_ARRAY_TASK_COUNT: '4' }))
      .toThrow('SLURM_ARRAY_TASK_ID 4 with SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_STEP=1, SLURM_ARRAY_TASK_COUNT=4: the shard index must be below');
    expect(() => shardFromEnv({ SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '1' }))
      .toThrow('is not on the array\'s range: use a contiguous --array=0-3');
    expect(() => shardFromEnv({ SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_STEP: '2' }))
      .toThrow('SLURM_ARRAY_TASK_ID 3 with SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_STEP=2');
    expect(() => shardFromEnv({ SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_COUNT: 'four' }))
      .toThrow("SLURM_ARRAY_TASK_COUNT must be a whole number >= 0, got 'four'");
  });
});

describe('manifest file names', () => {
  it('gives each shard its own manifest and reads the name back', () => {
    expect(manifestFileName(null)).toBe('manifest.json');
    expect(manifestFileName({ index: 2, count: 4 })).toBe('manifest.shard-2-of-4.json');
    expect(shardOfManifestFile('manifest.shard-2-of-4.json')).toEqual({ index: 2, count: 4 });
    expect(shardOfManifestFile('manifest.json')).toBeNull();
    expect(shardOfManifestFile('manifest.shard-4-of-4.json')).toBeUndefined();
    expect(shardOfManifestFile('manifest.json.123.tmp')).toBeUndefined();
  });
});
