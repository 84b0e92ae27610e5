/**
 * One bad checkpoint among good ones: it becomes a row in `errors` (run, path, stage,
 * message), every other checkpoint is still scored, and the sweep ends with exit code 3.
 * Two ways a file goes bad: already broken when the sweep plans (the real CLI), and
 * broken between planning and scoring, so the worker is the one that finds out.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import { loadConfig } from '../pipeline/config.ts';
import type { Manifest } from '../pipeline/manifest.ts';
import { buildPlan } from '../pipeline/plan.ts';
import { stateFile } from '../pipeline/state.ts';
import { runSweep } from '../pipeline/sweep.ts';
import { headsweep } from './helpers/cli.ts';
import { tempDir } from './helpers/safetensors.ts';
import { demoCheckpoint, smallSeries } from './helpers/small-series.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** A folder with steps 0 and 2000 of the demo series and step 1000 cut to `keep` bytes (or whole). */
function series(name: string, keep?: number): { config: string; bad: string } {
  const dir = join(tmp.dir, name);
  const config = smallSeries(dir, name, { 'step00000.safetensors': '00000', 'step02000.safetensors': '02000' }, ['workers: 1']);
  const bad = join(dir, 'ckpts', 'step01000.safetensors');
  const bytes = readFileSync(demoCheckpoint('01000'));
  writeFileSync(bad, keep === undefined ? bytes : bytes.subarray(0, keep));
  return { config, bad };
}

function tableRows(out: string, table: string): Record<string, unknown>[] {
  const dir = join(out, table, 'run=r');
  return readdirSync(dir).filter((f) => f.endsWith('.arrow')).sort()
    .flatMap((f) => tableFromIPC(readFileSync(join(dir, f))).toArray().map((r) => r.toJSON() as Record<string, unknown>));
}

const sha12 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 12);
/** The table files of ckpts/step<step>.safetensors (step 1000 unless told): named by step, bytes and source (the first 8 hex of its state entry's name). */
const errorsFiles = (out: string, bad: string, step = 1000) => ['arrow', 'parquet'].map((format) => `step-${String(step).padStart(9, '0')}-${sha12(bad)}-${basename(stateFile(out, 'r', `ckpts/step${String(step).padStart(5, '0')}.safetensors`)).slice(0, 8)}.${format}`);

test('a truncated checkpoint lands in errors with stage load; the others are scored; the CLI exits 3', async () => {
  const { config, bad } = series('truncated', 200_000);
  const run = await headsweep(['sweep', config]);
  const out = join(tmp.dir, 'truncated', 'out');
  expect(run.code, run.stderr).toBe(EXIT.partial);
  expect(run.stderr).toMatch(/headsweep: r: load failed: .*step01000\.safetensors: truncated file/);
  expect(run.stdout).toMatch(/^finished: 2\/3 checkpoints scored, 1 failed \(see .*\/errors\)/m);

  // The row names the path as the glob resolved it; the file is named by step and bytes.
  expect(readdirSync(join(out, 'errors', 'run=r'))).toEqual(errorsFiles(out, bad));
  const [error] = tableRows(out, 'errors');
  expect(error).toMatchObject({ run: 'r', path: 'ckpts/step01000.safetensors', stage: 'load' });
  expect(error.message).toMatch(new RegExp(`^${bad}: truncated file`));

  expect(tableRows(out, 'checkpoints').map((r) => [r.step, r.path])).toEqual([
    [0n, 'ckpts/step00000.safetensors'],
    [2000n, 'ckpts/step02000.safetensors'],
  ]);
  expect(tableRows(out, 'heads')).toHaveLength(2 * 4);
  const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;
  expect(m).toMatchObject({ status: 'finished', exit_code: EXIT.partial });
  expect(m.counts).toMatchObject({ checkpoints_planned: 3, scored: 2, failed: 1 });
  expect(m.counts.rows).toMatchObject({ errors: 1, checkpoints: 2, heads: 8 });
});

test('a checkpoint that breaks after planning fails in its worker, with the same kind of row', async () => {
  const { config, bad } = series('broken-later');
  const plan = await buildPlan(loadConfig(config));
  expect(plan.runs[0].checkpoints.every((c) => c.problem === null)).toBe(true);
  // The trainer rewrites the file while the sweep runs: only its first 16 bytes are left.
  writeFileSync(bad, readFileSync(bad).subarray(0, 16));
  const result = await runSweep(plan);

  expect(result.exitCode).toBe(EXIT.partial);
  expect(result.errors).toEqual([{ run: 'r', path: 'ckpts/step01000.safetensors', stage: 'load', message: expect.stringMatching(new RegExp(`^${bad}: `)) }]);
  const out = join(tmp.dir, 'broken-later', 'out');
  // A load failure comes back with no sha256 (worker.ts); the sweep hashes the bytes it finds to name the file.
  expect(readdirSync(join(out, 'errors', 'run=r'))).toEqual(errorsFiles(out, bad));
  expect(tableRows(out, 'errors').map((r) => r.stage)).toEqual(['load']);
  expect(tableRows(out, 'checkpoints').map((r) => r.step)).toEqual([0n, 2000n]);
  expect(result.manifest.counts).toMatchObject({ checkpoints_planned: 3, scored: 2, failed: 1 });
});

test('a table that cannot be written leaves no file of the result behind, only its errors row', async () => {
  const dir = join(tmp.dir, 'unwritable');
  const config = smallSeries(dir, 'unwritable', { 'step00000.safetensors': '00000' }, ['workers: 1']);
  // The heads files land first; the checkpoints row's Arrow file name is taken by a folder.
  const out = join(dir, 'out');
  const [arrow] = errorsFiles(out, join(dir, 'ckpts', 'step00000.safetensors'), 0);
  mkdirSync(join(out, 'checkpoints', 'run=r', arrow), { recursive: true });
  const result = await runSweep(await buildPlan(loadConfig(config)));

  expect(result.exitCode).toBe(EXIT.partial);
  expect(result.errors).toEqual([{ run: 'r', path: 'ckpts/step00000.safetensors', stage: 'write', message: expect.stringContaining(join(out, 'checkpoints', 'run=r', arrow)) }]);
  // No entry lists heads rows of this checkpoint, so none may be left for a reader to glob.
  expect(existsSync(join(dir, 'out', 'heads', 'run=r')) ? readdirSync(join(dir, 'out', 'heads', 'run=r')) : []).toEqual([]);
  expect(tableRows(join(dir, 'out'), 'errors').map((r) => r.stage)).toEqual(['write']);
});
