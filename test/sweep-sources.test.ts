/**
 * Two checkpoint paths with the same bytes are two sources: each gets its own table files
 * (the stem names the source as well as the step and bytes), the manifest counts rows
 * that are there, and a rerun after one of them changes never touches the other's rows.
 * The same with unknown steps, where both files once raced for one name. An output whose
 * files still carry the stems of before (`step-<step>-<sha12>`) is taken over on the next
 * sweep without losing a row: a source that alone owns its files has them renamed (no
 * scoring), sources that shared files are scored again, and no file of the old scheme is
 * left once no state entry lists it.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Manifest } from '../pipeline/manifest.ts';
import { readState, writeState } from '../pipeline/state.ts';
import { assemble, tempDir, tinyParts } from './helpers/safetensors.ts';
import { eventsOf, sweep, tableFiles, tableSnapshot } from './helpers/sweep-run.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const SERIES = join(import.meta.dirname, '..', 'data', 'checkpoints', 'attn-only-1l');
const bundled = (step: number) => join(SERIES, `step-${String(step).padStart(6, '0')}.safetensors`);

/** `<dir>/ck/` with `files` (name → source file) and `<dir>/sweep.yaml` over them as run `r`. */
function folder(name: string, files: Record<string, string>, promptSet = '{name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 2, seed: 0}'): { dir: string; config: string; out: string } {
  const dir = join(tmp.dir, name);
  mkdirSync(join(dir, 'ck'), { recursive: true });
  for (const [file, from] of Object.entries(files)) copyFileSync(from, join(dir, 'ck', file));
  const config = join(dir, 'sweep.yaml');
  writeFileSync(config, [
    `name: ${name}`,
    'output: out',
    'checkpoints:',
    '  - {run: r, paths: ["ck/*.safetensors"]}',
    'prompt_sets:',
    `  - ${promptSet}`,
    'metrics: [prefix_matching, previous_token, copying, composition, mean_loss]',
    'workers: 1',
  ].join('\n'));
  return { dir, config, out: join(dir, 'out') };
}

/** Every row of one table of an output, from its Arrow files. */
function rows(out: string, table: string): Record<string, unknown>[] {
  return tableFiles(out).filter((f) => f.startsWith(`${table}/`) && f.endsWith('.arrow'))
    .flatMap((f) => tableFromIPC(readFileSync(join(out, f))).toArray().map((r) => r.toJSON() as Record<string, unknown>));
}

/** For each table, how many rows each checkpoint path has. */
function rowsPerPath(out: string): Record<string, Record<string, number>> {
  const count: Record<string, Record<string, number>> = {};
  for (const table of ['heads', 'composition', 'checkpoint_scores', 'checkpoints']) {
    count[table] = {};
    for (const row of rows(out, table)) {
      const path = String(row.checkpoint ?? row.path);
      count[table][path] = (count[table][path] ?? 0) + 1;
    }
  }
  return count;
}

const manifest = (out: string) => JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;

/** 1 layer × 4 heads, one prompt set: rows of one checkpoint. */
const ONE = { heads: 4, composition: 0, checkpoint_scores: 1, checkpoints: 1 };

describe('final.safetensors, a copy of step-001500.safetensors beside it', () => {
  const s = folder('copy', {
    'step-001250.safetensors': bundled(1250),
    'step-001500.safetensors': bundled(1500),
    'final.safetensors': bundled(1500),
  });

  beforeAll(async () => {
    const run = await sweep([s.config]);
    expect(run.code, run.other.join('\n')).toBe(0);
  });

  test('each of the three sources has its own files and rows; the manifest counts the rows that are there', () => {
    const heads = tableFiles(s.out).filter((f) => f.startsWith('heads/') && f.endsWith('.arrow'));
    expect(heads).toHaveLength(3);
    const perPath = rowsPerPath(s.out);
    for (const path of ['ck/final.safetensors', 'ck/step-001250.safetensors', 'ck/step-001500.safetensors']) {
      expect(perPath.heads[path], path).toBe(ONE.heads);
      expect(perPath.checkpoint_scores[path], path).toBe(ONE.checkpoint_scores);
      expect(perPath.checkpoints[path], path).toBe(ONE.checkpoints);
    }
    const counted = manifest(s.out).counts.rows;
    expect(counted.heads).toBe(rows(s.out, 'heads').length);
    expect(counted.checkpoints).toBe(rows(s.out, 'checkpoints').length);
    expect(counted.checkpoint_scores).toBe(rows(s.out, 'checkpoint_scores').length);
  });

  test('final replaced by other bytes: the rerun rescores final alone and step 1500 keeps its rows', async () => {
    const step1500 = readState(s.out, 'r', 'ck/step-001500.safetensors')!;
    const others = [...step1500.files, ...readState(s.out, 'r', 'ck/step-001250.safetensors')!.files];
    const before = tableSnapshot(s.out, () => others);
    copyFileSync(bundled(1250), join(s.dir, 'ck', 'final.safetensors'));
    const run = await sweep([s.config]);
    expect(run.code, run.other.join('\n')).toBe(0);
    expect(eventsOf(run.events, 'checkpoint_started').map((e) => [e.path, e.reason])).toEqual([['ck/final.safetensors', 'changed']]);
    for (const f of step1500.files) expect(existsSync(join(s.out, f)), f).toBe(true);
    const perPath = rowsPerPath(s.out);
    expect(perPath.heads['ck/step-001500.safetensors']).toBe(ONE.heads);
    expect(perPath.heads['ck/final.safetensors']).toBe(ONE.heads);
    expect(rows(s.out, 'checkpoints').find((r) => r.path === 'ck/final.safetensors')!.step).toBe(1250n);
    // step 1500's files and step 1250's are those of the first sweep.
    expect(tableSnapshot(s.out, () => others)).toEqual(before);
  });
});

test('two copies of a checkpoint without a step: both scored, each in its own files', async () => {
  const tiny = tmp.file('tiny.safetensors', assemble(tinyParts()));
  const s = folder('unknown-steps', { 'a.safetensors': tiny, 'b.safetensors': tiny },
    '{name: t, kind: repeated_random, length: 1, repeats: 2, count: 1, seed: 0}');
  const run = await sweep([s.config]);
  expect(run.code, [...run.other, ...eventsOf(run.events, 'checkpoint_failed').map((e) => e.message)].join('\n')).toBe(0);
  expect(eventsOf(run.events, 'checkpoint_finished')).toHaveLength(2);
  const stems = readdirSync(join(s.out, 'heads', 'run=r')).filter((f) => f.endsWith('.arrow'));
  expect(stems).toHaveLength(2);
  for (const stem of stems) expect(stem).toMatch(/^step-unknown-[0-9a-f]{12}-[0-9a-f]{8}\.arrow$/);
  expect(rowsPerPath(s.out).heads).toEqual({ 'ck/a.safetensors': 2, 'ck/b.safetensors': 2 });
});

describe('an output written with the stems of before', () => {
  /**
   * Turns a sweep's output into one the earlier scheme wrote: every file of `path`'s
   * entry renamed to `step-<step>-<sha12>`, the entry saying so; `alsoClaimedBy` gets an
   * entry listing the same files, as when two paths with the same bytes shared a stem.
   */
  async function toOldStems(out: string, path: string, alsoClaimedBy?: string): Promise<string[]> {
    const state = readState(out, 'r', path)!;
    const oldId = state.id.replace(/-[0-9a-f]{8}$/, '');
    expect(oldId).toMatch(/^step-\d{9}-[0-9a-f]{12}$/);
    const oldFiles = state.files.map((f) => f.replace(state.id, oldId));
    state.files.forEach((f, i) => renameSync(join(out, f), join(out, oldFiles[i])));
    await writeState(out, { ...state, id: oldId, files: oldFiles });
    if (alsoClaimedBy !== undefined) {
      const other = readState(out, 'r', alsoClaimedBy)!;
      for (const f of other.files) rmSync(join(out, f));
      await writeState(out, { ...other, id: oldId, files: oldFiles });
    }
    return oldFiles;
  }

  test('a source that alone owns its files has them renamed, with no scoring and the same bytes', async () => {
    const s = folder('old-alone', { 'step-001250.safetensors': bundled(1250), 'step-001500.safetensors': bundled(1500) });
    expect((await sweep([s.config])).code).toBe(0);
    const clean = tableSnapshot(s.out);
    const oldFiles = await toOldStems(s.out, 'ck/step-001500.safetensors');
    expect(readState(s.out, 'r', 'ck/step-001500.safetensors')!.files).toEqual(oldFiles);
    // One of them deleted by hand: written again from its Arrow sibling, still no scoring.
    rmSync(join(s.out, oldFiles.find((f) => f.startsWith('heads/') && f.endsWith('.parquet'))!));

    const run = await sweep([s.config]);
    expect(run.code, run.other.join('\n')).toBe(0);
    expect(eventsOf(run.events, 'checkpoint_started')).toEqual([]);
    expect(eventsOf(run.events, 'checkpoint_skipped')).toHaveLength(2);
    expect(tableSnapshot(s.out)).toEqual(clean);
    expect(manifest(s.out).counts.rows.heads).toBe(2 * ONE.heads);
  });

  test('two sources that shared one set of files are both scored again; no row is lost and no old file stays', async () => {
    const s = folder('old-shared', { 'step-001500.safetensors': bundled(1500), 'final.safetensors': bundled(1500) });
    expect((await sweep([s.config])).code).toBe(0);
    const clean = tableSnapshot(s.out);
    const oldFiles = await toOldStems(s.out, 'ck/step-001500.safetensors', 'ck/final.safetensors');
    expect(readState(s.out, 'r', 'ck/final.safetensors')!.files).toEqual(oldFiles);

    const run = await sweep([s.config]);
    expect(run.code, run.other.join('\n')).toBe(0);
    expect(eventsOf(run.events, 'checkpoint_started').map((e) => e.path).sort()).toEqual(['ck/final.safetensors', 'ck/step-001500.safetensors']);
    for (const f of oldFiles) expect(existsSync(join(s.out, f)), f).toBe(false);
    expect(tableSnapshot(s.out)).toEqual(clean);
  });
});
