/**
 * Nightly operations through real processes on the demo series: a sweep killed with
 * SIGKILL at several points and run again ends with a clean sweep's tables; three shards
 * run as three concurrent processes into one root (shard from --shard, from a Kubernetes
 * Indexed Job's environment, from a Slurm array's) write the same files as one process,
 * and compact to the same tables.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import { compactOutput, type CompactedManifest } from '../pipeline/compact.ts';
import type { Manifest } from '../pipeline/manifest.ts';
import { headsweep } from './helpers/cli.ts';
import { tempDir } from './helpers/safetensors.ts';
import { demoConfig, eventsOf, files, sweep, tableFiles, tableSnapshot, type SweepRun } from './helpers/sweep-run.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const CHECKPOINTS = 7;
const CONFIG = demoConfig(tmp.dir, 'nightly-test');
const CLEAN = join(tmp.dir, 'clean');

beforeAll(async () => {
  const clean = await sweep([CONFIG, '--out', CLEAN]);
  expect(clean.code, clean.other.join('\n')).toBe(EXIT.ok);
});

/** Every table file under a final name decodes: a kill never leaves half a file there. */
function expectWholeFiles(root: string): void {
  for (const f of tableFiles(root).filter((n) => n.endsWith('.arrow'))) {
    expect(() => tableFromIPC(readFileSync(join(root, f))), f).not.toThrow();
  }
}

describe('SIGKILL at any moment', () => {
  test('killed before its first checkpoint is written, after 1 and after 3 more, then run to the end: the tables of one clean sweep', async () => {
    const out = join(tmp.dir, 'killed');
    const kills: { when: string; at: (events: readonly SweepRun['events'][number][]) => boolean }[] = [
      { when: 'first checkpoint started', at: (events) => eventsOf(events, 'checkpoint_started').length === 1 },
      { when: '1 checkpoint finished', at: (events) => eventsOf(events, 'checkpoint_finished').length === 1 },
      { when: '3 checkpoints finished', at: (events) => eventsOf(events, 'checkpoint_finished').length === 3 },
    ];
    let finished = 0;
    for (const kill of kills) {
      const run = await sweep([CONFIG, '--out', out], { onEvent: (events) => (kill.at(events) ? 'SIGKILL' : undefined) });
      expect(run.signal, kill.when).toBe('SIGKILL');
      expect(eventsOf(run.events, 'sweep_finished'), kill.when).toEqual([]);
      finished += eventsOf(run.events, 'checkpoint_finished').length;
      expectWholeFiles(out);
    }
    expect(finished).toBeGreaterThanOrEqual(4);

    const last = await sweep([CONFIG, '--out', out]);
    expect(last.code, last.other.join('\n')).toBe(EXIT.ok);
    // What a killed sweep finished before the kill is not scored again.
    const skipped = eventsOf(last.events, 'checkpoint_skipped').length;
    expect(skipped).toBeGreaterThanOrEqual(4);
    expect(skipped + eventsOf(last.events, 'checkpoint_finished').length).toBe(CHECKPOINTS);
    expect(files(out).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(tableFiles(out)).toEqual(tableFiles(CLEAN));
    expect(tableSnapshot(out)).toEqual(tableSnapshot(CLEAN));
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;
    expect(m.counts).toMatchObject({ checkpoints_planned: CHECKPOINTS, scored: CHECKPOINTS - skipped, up_to_date: skipped, failed: 0 });
    expect(m.counts.rows).toEqual((JSON.parse(readFileSync(join(CLEAN, 'manifest.json'), 'utf8')) as Manifest).counts.rows);
  });
});

describe('three shards as three processes into one root', () => {
  const out = join(tmp.dir, 'sharded');
  let shards: SweepRun[];

  beforeAll(async () => {
    shards = await Promise.all([
      sweep([CONFIG, '--out', out, '--shard', '0/3']),
      sweep([CONFIG, '--out', out], { env: { JOB_COMPLETION_INDEX: '1', JOB_COMPLETIONS: '3' } }),
      sweep([CONFIG, '--out', out], { env: { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '3' } }),
    ]);
  });

  test('each scores its own checkpoints; together they score each once', () => {
    expect(shards.map((s) => s.code)).toEqual([EXIT.ok, EXIT.ok, EXIT.ok]);
    expect(shards.map((s) => eventsOf(s.events, 'sweep_started')[0].shard)).toEqual(['0/3', '1/3', '2/3']);
    const scored = shards.flatMap((s) => eventsOf(s.events, 'checkpoint_finished').map((e) => e.path));
    expect(scored).toHaveLength(CHECKPOINTS);
    expect(new Set(scored).size).toBe(CHECKPOINTS);
    const manifests = files(out).filter((f) => f.startsWith('manifest'));
    expect(manifests).toEqual(['manifest.shard-0-of-3.json', 'manifest.shard-1-of-3.json', 'manifest.shard-2-of-3.json']);
    const planned = manifests.map((f) => (JSON.parse(readFileSync(join(out, f), 'utf8')) as Manifest).counts.checkpoints_planned);
    expect(planned.reduce((a, b) => a + b, 0)).toBe(CHECKPOINTS);
  });

  test('their files are the files of one process', () => {
    expect(tableFiles(out)).toEqual(tableFiles(CLEAN));
    expect(tableSnapshot(out)).toEqual(tableSnapshot(CLEAN));
  });

  test('`headsweep compact` of the shards equals the compaction of one process', async () => {
    const compacted = await headsweep(['compact', out]);
    expect(compacted.code, compacted.stderr).toBe(EXIT.ok);
    await compactOutput(CLEAN);
    const arrowFiles = (root: string) => files(root).filter((f) => !f.includes('/') && f.endsWith('.arrow'));
    const names = arrowFiles(join(out, 'compacted'));
    expect(names).toEqual(['checkpoint_scores.arrow', 'checkpoints.arrow', 'composition.arrow', 'heads.arrow', 'prompts.arrow']);
    expect(tableSnapshot(join(out, 'compacted'), arrowFiles)).toEqual(tableSnapshot(join(CLEAN, 'compacted'), arrowFiles));
    const m = JSON.parse(readFileSync(join(out, 'compacted', 'manifest.json'), 'utf8')) as CompactedManifest;
    expect(m).toMatchObject({ complete: true, shards: { count: 3, present: [0, 1, 2], missing: [] } });
    expect(m.counts).toMatchObject({ checkpoints_planned: CHECKPOINTS, scored: CHECKPOINTS, failed: 0 });
  });
});
