/**
 * Worker faults: a checkpoint whose worker throws, hangs or ends its thread is retried on
 * a fresh thread, then recorded in `errors` with what happened on each attempt; every
 * other checkpoint is scored and the sweep exits 3. A checkpoint that succeeds on a retry
 * gives the same tables as a first try.
 *
 * Real pool, real threads, real checkpoints: the faults come from a fixture worker
 * (test/fixtures/workers/faulty.mjs) that runs the real handler and scoring, and faults
 * on the checkpoints whose file names ask for it. The CLI is pointed at it through
 * HEADSWEEP_WORKER, as a user would.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import { loadConfig } from '../pipeline/config.ts';
import { buildPlan } from '../pipeline/plan.ts';
import { CheckpointPool, type CheckpointOutcome, type PoolEvent } from '../pipeline/pool.ts';
import { runSweep } from '../pipeline/sweep.ts';
import { headsweep } from './helpers/cli.ts';
import { tempDir } from './helpers/safetensors.ts';
import { smallSeries } from './helpers/small-series.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());
afterEach(() => {
  delete process.env.HEADSWEEP_WORKER;
});

const FAULTY = join(import.meta.dirname, 'fixtures', 'workers', 'faulty.mjs');

/**
 * A sweep folder: `files` maps a name in ckpts/ to the demo step it copies. Two workers,
 * one retry, a 6 s timeout: a hang costs two timeouts, not a test's worth of waiting, and a
 * checkpoint scored on a machine busy with other work still finishes well inside one.
 */
function series(name: string, files: Record<string, string>): { dir: string; config: string; ckpt: (file: string) => string } {
  const dir = join(tmp.dir, name);
  const config = smallSeries(dir, name, files, ['workers: 2', 'retries: 1', 'task_timeout_s: 6']);
  return { dir, config, ckpt: (file) => join(dir, 'ckpts', file) };
}

/** The Arrow files of one table of run r, name → bytes (each has a Parquet file of the same rows beside it). */
function tableFiles(out: string, table: string): Map<string, Buffer> {
  const dir = join(out, table, 'run=r');
  return new Map(readdirSync(dir).filter((f) => f.endsWith('.arrow')).sort().map((f) => [f, readFileSync(join(dir, f))]));
}

test('throws and uncaught errors are retried on a fresh thread; persistent faults are recorded after 1 + retries attempts, a bad file at once', async () => {
  // The checkpoints that end up scored, under the same relative paths, scored by the real worker.
  const clean = series('clean', {
    'step00000.safetensors': '00000',
    'step00500.throw-once.safetensors': '00500',
    'step02000.uncaught-once.safetensors': '02000',
  });
  const reference = await runSweep(await buildPlan(loadConfig(clean.config)));
  expect(reference.exitCode).toBe(EXIT.ok);

  const s = series('faults', {
    'step00000.safetensors': '00000',
    'step00500.throw-once.safetensors': '00500',
    'step01000.throw.safetensors': '01000',
    'step01500.exit.safetensors': '01500',
    'step02000.uncaught-once.safetensors': '02000',
    'step02500.safetensors': '02000',
  });
  const plan = await buildPlan(loadConfig(s.config));
  // Broken after planning, so the worker finds out: a verdict on the file, not retried.
  writeFileSync(s.ckpt('step02500.safetensors'), readFileSync(s.ckpt('step02500.safetensors')).subarray(0, 16));
  process.env.HEADSWEEP_WORKER = FAULTY;
  const events: PoolEvent[] = [];
  const result = await runSweep(plan, { onPoolEvent: (e) => events.push(e) });

  expect(result.exitCode).toBe(EXIT.partial);
  expect(result.manifest).toMatchObject({ status: 'finished', exit_code: EXIT.partial });
  expect(result.manifest.counts).toMatchObject({ checkpoints_planned: 6, scored: 3, failed: 3 });
  expect(result.errors).toEqual([
    {
      run: 'r', path: 'ckpts/step01000.throw.safetensors', stage: 'worker',
      message: `${s.ckpt('step01000.throw.safetensors')}: worker gave up after 2 attempts (attempts 1–2: threw Error: injected fault)`,
    },
    {
      run: 'r', path: 'ckpts/step01500.exit.safetensors', stage: 'worker',
      message: `${s.ckpt('step01500.exit.safetensors')}: worker gave up after 2 attempts (attempts 1–2: its thread exited with code 1)`,
    },
    { run: 'r', path: 'ckpts/step02500.safetensors', stage: 'load', message: expect.stringMatching(new RegExp(`^${s.ckpt('step02500.safetensors')}: `)) },
  ]);

  // Checkpoints run concurrently, so compare the events in a fixed order.
  const byFile = [...events].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  expect(byFile).toEqual([
    { type: 'gave_up', file: s.ckpt('step01000.throw.safetensors'), attempts: 2, fault: 'threw', message: result.errors[0].message },
    { type: 'gave_up', file: s.ckpt('step01500.exit.safetensors'), attempts: 2, fault: 'exited', message: result.errors[1].message },
    { type: 'retried', file: s.ckpt('step00500.throw-once.safetensors'), attempt: 1, fault: 'threw', message: `${s.ckpt('step00500.throw-once.safetensors')}: attempt 1 threw Error: injected fault` },
    { type: 'retried', file: s.ckpt('step01000.throw.safetensors'), attempt: 1, fault: 'threw', message: `${s.ckpt('step01000.throw.safetensors')}: attempt 1 threw Error: injected fault` },
    { type: 'retried', file: s.ckpt('step01500.exit.safetensors'), attempt: 1, fault: 'exited', message: `${s.ckpt('step01500.exit.safetensors')}: attempt 1 its thread exited with code 1` },
    { type: 'retried', file: s.ckpt('step02000.uncaught-once.safetensors'), attempt: 1, fault: 'threw', message: `${s.ckpt('step02000.uncaught-once.safetensors')}: attempt 1 threw TypeError: injected uncaught fault` },
  ]);

  // The retried checkpoints' score tables are byte for byte those of a first try.
  const out = join(s.dir, 'out');
  for (const table of ['heads', 'checkpoint_scores']) {
    expect(tableFiles(out, table), table).toEqual(tableFiles(join(clean.dir, 'out'), table));
  }
  expect([...tableFiles(out, 'errors').keys()]).toHaveLength(3);
});

test('CLI: a checkpoint that hangs is stopped at the timeout, retried, recorded; the others are scored and the process exits 3', async () => {
  const s = series('hang', {
    'step00000.safetensors': '00000',
    'step01000.hang.safetensors': '01000',
    'step02000.safetensors': '02000',
  });
  process.env.HEADSWEEP_WORKER = FAULTY;
  // The process ending at all shows the spinning threads were terminated, not left running.
  const run = await headsweep(['sweep', s.config]);

  expect(run.code, run.stderr.slice(-2000)).toBe(EXIT.partial);
  expect(run.stderr).toContain(
    `headsweep: r: worker failed: ${s.ckpt('step01000.hang.safetensors')}: worker gave up after 2 attempts (attempts 1–2: timed out after 6 s; its thread was stopped)`,
  );
  expect(run.stdout).toMatch(/^finished: 2\/3 checkpoints scored, 1 failed \(see .*\/errors\)/m);
  expect([...tableFiles(join(s.dir, 'out'), 'checkpoints').keys()].map((f) => f.slice(0, 14))).toEqual(['step-000000000', 'step-000002000']);
});

test('a thread that runs out of memory is replaced and its checkpoint retried; the retry scores as a first try', async () => {
  const s = series('oom', { 'step00000.safetensors': '00000', 'step01000.oom-once.safetensors': '01000' });
  const events: PoolEvent[] = [];
  const pool = new CheckpointPool({
    workers: 1,
    retries: 1,
    // Room for tfjs and a small checkpoint; the fixture's arrays of doubles fill it in moments.
    resourceLimits: { maxOldGenerationSizeMb: 96 },
    filename: FAULTY,
    onEvent: (e) => events.push(e),
  });
  const outcomes: CheckpointOutcome[] = [];
  try {
    const backend = await pool.init('auto');
    const request = (file: string) => ({
      backend, file, promptSets: [], rules: [], config: null,
      score: { metrics: ['copying' as const], batchSize: 4, icl: { early: 1, late: 2 } },
    });
    // The good one first, then the other: OOM, retried on a fresh thread; then once more,
    // with the fault spent, as a plain try to compare the retry with.
    for (const file of ['step00000.safetensors', 'step01000.oom-once.safetensors', 'step01000.oom-once.safetensors']) {
      outcomes.push(await pool.score(request(s.ckpt(file))));
    }
  } finally {
    await pool.close();
  }

  expect(events).toEqual([{
    type: 'retried', file: s.ckpt('step01000.oom-once.safetensors'), attempt: 1, fault: 'out_of_memory',
    message: `${s.ckpt('step01000.oom-once.safetensors')}: attempt 1 its thread ran out of memory (Worker terminated due to reaching memory limit: JS heap out of memory)`,
  }]);
  const [good, retried, plain] = outcomes;
  if (!good.ok || !retried.ok || !plain.ok) throw new Error(`expected all scored: ${JSON.stringify(outcomes.map((o) => o.ok || o.message))}`);
  expect(retried.sha256).toBe(plain.sha256);
  expect(retried.scores.copying).toHaveLength(2 * 2);
  expect(retried.scores.copying).toEqual(plain.scores.copying);
  expect(good.scores.copying).not.toEqual(plain.scores.copying);
});
