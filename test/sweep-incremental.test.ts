/**
 * Incremental sweeps through the real CLI on the demo series: a rerun with nothing new
 * scores nothing and rewrites nothing; a changed prompt set is the only work a rerun
 * does, and the result equals a clean sweep under the new settings, also when that rerun
 * is killed with SIGKILL halfway and run again. Another corpus for bigram_kl scores
 * bigram_kl alone again. A format added to the output is written from the stored rows
 * (no scoring); a format dropped leaves the files already written in it alone.
 */
import { cpSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { parquetTable } from '../pipeline/sinks/parquet.ts';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Manifest } from '../pipeline/manifest.ts';
import { tempDir } from './helpers/safetensors.ts';
import { headsweep } from './helpers/cli.ts';
import { demoConfig, eventsOf, files, sweep, tableFiles, tableSnapshot, type SweepRun } from './helpers/sweep-run.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const CHECKPOINTS = 7;
const SEED_0 = demoConfig(tmp.dir, 'seed-0', 0);
const SEED_7 = demoConfig(tmp.dir, 'seed-7', 7);
const CLEAN_0 = join(tmp.dir, 'clean-0');
const CLEAN_7 = join(tmp.dir, 'clean-7');

function copyOf(root: string, name: string): string {
  const to = join(tmp.dir, name);
  cpSync(root, to, { recursive: true, preserveTimestamps: true });
  return to;
}

function headsRows(root: string, promptSet: string): Record<string, unknown>[] {
  return tableFiles(root).filter((f) => f.startsWith('heads/') && f.endsWith('.arrow'))
    .flatMap((f) => tableFromIPC(readFileSync(join(root, f))).toArray().map((r) => r.toJSON() as Record<string, unknown>))
    .filter((r) => r.prompt_set === promptSet);
}

beforeAll(async () => {
  const runs = await Promise.all([sweep([SEED_0, '--out', CLEAN_0]), sweep([SEED_7, '--out', CLEAN_7])]);
  for (const run of runs) expect(run.code, run.other.join('\n')).toBe(0);
});

describe('rerunning the same config', () => {
  let rerun: SweepRun;
  let root: string;
  let before: Map<string, { bytes: string; mtimeMs: number }>;

  beforeAll(async () => {
    root = copyOf(CLEAN_0, 'rerun');
    before = new Map(tableFiles(root).map((f) => [f, { bytes: readFileSync(join(root, f)).toString('base64'), mtimeMs: statSync(join(root, f)).mtimeMs }]));
    rerun = await sweep([SEED_0, '--out', root]);
  });

  test('scores nothing: every checkpoint is skipped as up to date', () => {
    expect(rerun.code, rerun.other.join('\n')).toBe(0);
    expect(eventsOf(rerun.events, 'checkpoint_started')).toEqual([]);
    const skipped = eventsOf(rerun.events, 'checkpoint_skipped');
    expect(skipped).toHaveLength(CHECKPOINTS);
    expect(new Set(skipped.map((e) => e.reason))).toEqual(new Set(['up_to_date']));
    expect(eventsOf(rerun.events, 'work_planned')).toMatchObject([{ checkpoints: CHECKPOINTS, to_score: 0, up_to_date: CHECKPOINTS, waiting: 0 }]);
    expect(eventsOf(rerun.events, 'sweep_finished')).toMatchObject([{ status: 'finished', exit_code: 0, counts: { checkpoints: CHECKPOINTS, scored: 0, up_to_date: CHECKPOINTS, failed: 0 } }]);
    expect(rerun.stdout).toMatch(/^finished: 0\/7 checkpoints scored, 7 up to date on \w+/m);
  });

  test('rewrites no table file: same names, bytes (timing columns too) and mtimes', () => {
    expect(tableFiles(root)).toEqual([...before.keys()]);
    for (const [f, was] of before) {
      expect(readFileSync(join(root, f)).toString('base64'), f).toBe(was.bytes);
      expect(statSync(join(root, f)).mtimeMs, f).toBe(was.mtimeMs);
    }
    const m = JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8')) as Manifest;
    expect(m.counts).toMatchObject({ checkpoints_planned: CHECKPOINTS, scored: 0, up_to_date: CHECKPOINTS, failed: 0 });
    // The counts describe what the output holds, not what this sweep wrote.
    expect(m.counts.rows).toEqual((JSON.parse(readFileSync(join(CLEAN_0, 'manifest.json'), 'utf8')) as Manifest).counts.rows);
  });
});

test('a report written into the output folder, as the README does it, is left alone by the next sweep', async () => {
  const root = copyOf(CLEAN_0, 'with-report');
  const report = await headsweep(['report', root, '--html', join(root, 'report.html')]);
  expect(report.code, report.stderr).toBe(0);
  const page = readFileSync(join(root, 'report.html'), 'utf8');
  const rerun = await sweep([SEED_0, '--out', root]);
  expect(rerun.code, rerun.other.join('\n')).toBe(0);
  expect(eventsOf(rerun.events, 'checkpoint_skipped')).toHaveLength(CHECKPOINTS);
  expect(readFileSync(join(root, 'report.html'), 'utf8')).toBe(page);
});

test('a folder that is no sweep output is refused, without a word about its state', async () => {
  const root = join(tmp.dir, 'someone-elses');
  mkdirSync(root);
  writeFileSync(join(root, 'notes.txt'), 'mine');
  const run = await sweep([SEED_0, '--out', root]);
  expect(run.code).toBe(2);
  expect(run.other.join('\n')).toMatch(/holds files a sweep does not write \(notes\.txt\) and no sweep's manifest or \.state; choose a new or empty folder/);
  expect(files(root)).toEqual(['notes.txt']);
});

describe("changing one prompt set's seed", () => {
  let rerun: SweepRun;
  let root: string;
  let compositionMtimes: Map<string, number>;

  beforeAll(async () => {
    root = copyOf(CLEAN_0, 'reseeded');
    compositionMtimes = new Map(tableFiles(root).filter((f) => f.startsWith('composition/') && f.endsWith('.arrow')).map((f) => [f, statSync(join(root, f)).mtimeMs]));
    rerun = await sweep([SEED_7, '--out', root]);
  });

  test('scores that prompt set alone, on every checkpoint, without the weight scores', () => {
    expect(rerun.code, rerun.other.join('\n')).toBe(0);
    const started = eventsOf(rerun.events, 'checkpoint_started');
    expect(started).toHaveLength(CHECKPOINTS);
    for (const e of started) expect(e).toMatchObject({ reason: 'settings', prompt_sets: ['rrt'], weights: false });
    expect(eventsOf(rerun.events, 'checkpoint_finished').map((e) => e.prompt_sets)).toEqual(Array(CHECKPOINTS).fill(['rrt']));
    expect(eventsOf(rerun.events, 'checkpoint_skipped')).toEqual([]);
  });

  test("leaves nat's rows as they were and changes rrt's", () => {
    expect(headsRows(root, 'nat')).toEqual(headsRows(CLEAN_0, 'nat'));
    expect(headsRows(root, 'nat')).toHaveLength(5 * 2 * 2 + 2 * 3);
    expect(headsRows(root, 'rrt')).not.toEqual(headsRows(CLEAN_0, 'rrt'));
    // Composition is weight-only: its files were not even rewritten.
    expect(compositionMtimes.size).toBe(CHECKPOINTS);
    for (const [f, mtimeMs] of compositionMtimes) expect(statSync(join(root, f)).mtimeMs, f).toBe(mtimeMs);
  });

  test('ends with the tables of a clean sweep under the new seed', () => {
    expect(tableSnapshot(root)).toEqual(tableSnapshot(CLEAN_7));
  });

  test('killed with SIGKILL after two checkpoints and run again: the same tables as a clean sweep', async () => {
    const killed = copyOf(CLEAN_0, 'reseeded-killed');
    const first = await sweep([SEED_7, '--out', killed], {
      onEvent: (events) => (eventsOf(events, 'checkpoint_finished').length === 2 ? 'SIGKILL' : undefined),
    });
    expect(first.signal).toBe('SIGKILL');
    expect(eventsOf(first.events, 'sweep_finished')).toEqual([]);
    // A leftover of a write the kill cut short: removed at the start of the next sweep.
    const stale = join(killed, 'heads', 'run=planted-2l', 'step-000000500-a3d9ebdff944.arrow.999999.tmp');
    writeFileSync(stale, 'half a file');
    const second = await sweep([SEED_7, '--out', killed]);
    expect(second.code, second.other.join('\n')).toBe(0);
    // What the killed sweep finished is not scored again.
    expect(eventsOf(second.events, 'checkpoint_skipped').length).toBeGreaterThanOrEqual(2);
    expect(files(killed).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(tableSnapshot(killed)).toEqual(tableSnapshot(CLEAN_7));
  });
});

describe('another bigram corpus', () => {
  const REPO = join(import.meta.dirname, '..');
  const CORPUS = readFileSync(join(REPO, 'data', 'corpus', 'npm-readmes.txt'));
  const ckpts = (run: string, steps: number[]) => steps.map((s) => `"${REPO}/data/checkpoints/${run}/step-${String(s).padStart(6, '0')}.safetensors"`).join(', ');
  /** Three checkpoints of the d_vocab-64 series, bigram_kl against `corpus` (relative: it starts at the config's folder). */
  const config = (name: string, corpus: string) => tmp.file(`${name}.yaml`, [
    `name: ${name}`,
    'output: unused',
    'checkpoints:',
    `  - {run: attn-only-0l, paths: [${ckpts('attn-only-0l', [0, 400])}]}`,
    `  - {run: attn-only-1l, paths: [${ckpts('attn-only-1l', [1500])}]}`,
    'prompt_sets:',
    '  - {name: rrt, kind: repeated_random, length: 8, repeats: 2, count: 2, seed: 0}',
    'metrics: [previous_token, mean_loss, composition, bigram_kl]',
    `bigram: {path: ${corpus}, tokenizer: char64}`,
    'workers: 1',
  ].join('\n'));
  const bigramKl = (root: string) => tableFiles(root).filter((f) => f.startsWith('checkpoint_scores/') && f.endsWith('.arrow'))
    .map((f) => tableFromIPC(readFileSync(join(root, f))).getChild('bigram_kl')!.get(0) as number);

  let cleanA: string;
  let cleanB: string;
  let rerun: SweepRun;
  let root: string;

  beforeAll(async () => {
    writeFileSync(join(tmp.dir, 'corpus-a.txt'), CORPUS.subarray(0, 20_000));
    writeFileSync(join(tmp.dir, 'corpus-b.txt'), CORPUS.subarray(20_000, 40_000));
    const [a, b] = [config('corpus-a', 'corpus-a.txt'), config('corpus-b', 'corpus-b.txt')];
    cleanA = join(tmp.dir, 'clean-corpus-a');
    cleanB = join(tmp.dir, 'clean-corpus-b');
    const runs = await Promise.all([sweep([a, '--out', cleanA]), sweep([b, '--out', cleanB])]);
    for (const run of runs) expect(run.code, run.other.join('\n')).toBe(0);
    root = copyOf(cleanA, 'corpus-a-then-b');
    rerun = await sweep([b, '--out', root]);
  });

  test('scores only the weight scores again, with no prompt set, on every checkpoint', () => {
    expect(rerun.code, rerun.other.join('\n')).toBe(0);
    const started = eventsOf(rerun.events, 'checkpoint_started');
    expect(started).toHaveLength(3);
    for (const e of started) expect(e).toMatchObject({ reason: 'settings', prompt_sets: [], weights: true });
  });

  test('ends with the tables of a clean sweep against the new corpus', () => {
    expect(bigramKl(cleanB)).toHaveLength(3);
    bigramKl(cleanB).forEach((kl, i) => expect(kl).not.toBe(bigramKl(cleanA)[i]));
    expect(tableSnapshot(root)).toEqual(tableSnapshot(cleanB));
  });
});

describe('adding an output format, then dropping it', () => {
  let arrowOnly: string;
  let both: string;
  let root: string;
  let added: SweepRun;
  let dropped: SweepRun;
  let parquetBefore: Map<string, { bytes: string; mtimeMs: number }>;

  beforeAll(async () => {
    arrowOnly = join(tmp.dir, 'formats-arrow');
    both = join(tmp.dir, 'formats-both');
    const runs = await Promise.all([
      sweep([SEED_0, '--out', arrowOnly, '--format', 'arrow']),
      sweep([SEED_0, '--out', both, '--format', 'arrow', '--format', 'parquet']),
    ]);
    for (const run of runs) expect(run.code, run.other.join('\n')).toBe(0);
    root = copyOf(arrowOnly, 'formats-added');
    added = await sweep([SEED_0, '--out', root, '--format', 'arrow', '--format', 'parquet']);
    const parquet = tableFiles(root).filter((f) => f.endsWith('.parquet'));
    parquetBefore = new Map(parquet.map((f) => [f, { bytes: readFileSync(join(root, f)).toString('base64'), mtimeMs: statSync(join(root, f)).mtimeMs }]));
    dropped = await sweep([SEED_0, '--out', root, '--format', 'arrow']);
  });

  test('adding parquet scores nothing: every checkpoint is up to date and gets its Parquet files from the stored rows', () => {
    expect(added.code, added.other.join('\n')).toBe(0);
    expect(eventsOf(added.events, 'checkpoint_started')).toEqual([]);
    const skipped = eventsOf(added.events, 'checkpoint_skipped');
    expect(skipped).toHaveLength(CHECKPOINTS);
    for (const e of skipped) expect(e).toMatchObject({ reason: 'up_to_date', formats_added: ['parquet'] });
    expect(added.stdout).toMatch(/^finished: 0\/7 checkpoints scored, 7 up to date \(parquet written from the stored rows\) on \w+/m);
  });

  test('the output then holds the files of a clean sweep in both formats', async () => {
    expect(tableFiles(root)).toEqual(tableFiles(both));
    // The checkpoints table holds measured times: its Parquet rows are those of its Arrow file.
    expect(tableSnapshot(root)).toEqual(tableSnapshot(both));
    for (const f of tableFiles(root).filter((f) => f.startsWith('checkpoints/') && f.endsWith('.parquet'))) {
      const fromParquet = (await parquetTable(readFileSync(join(root, f)))).toArray().map((r) => r.toJSON());
      const fromArrow = tableFromIPC(readFileSync(join(root, f.replace(/parquet$/, 'arrow')))).toArray().map((r) => r.toJSON());
      expect(fromParquet, f).toEqual(fromArrow);
    }
  });

  test('Arrow added to a Parquet-only output: the files of a clean sweep in both formats, byte for byte', async () => {
    const parquetOnly = join(tmp.dir, 'formats-parquet');
    expect((await sweep([SEED_0, '--out', parquetOnly, '--format', 'parquet'])).code).toBe(0);
    const run = await sweep([SEED_0, '--out', parquetOnly, '--format', 'arrow', '--format', 'parquet']);
    expect(run.code, run.other.join('\n')).toBe(0);
    expect(eventsOf(run.events, 'checkpoint_started')).toEqual([]);
    expect(tableSnapshot(parquetOnly)).toEqual(tableSnapshot(both));
  });

  test('dropping parquet again scores nothing and leaves the Parquet files as they are', () => {
    expect(dropped.code, dropped.other.join('\n')).toBe(0);
    expect(eventsOf(dropped.events, 'checkpoint_started')).toEqual([]);
    expect(eventsOf(dropped.events, 'checkpoint_skipped')).toHaveLength(CHECKPOINTS);
    expect(parquetBefore.size).toBe(tableFiles(both).filter((f) => f.endsWith('.parquet')).length);
    for (const [f, was] of parquetBefore) {
      expect(readFileSync(join(root, f)).toString('base64'), f).toBe(was.bytes);
      expect(statSync(join(root, f)).mtimeMs, f).toBe(was.mtimeMs);
    }
  });
});
