/**
 * A whole sweep over the bundled demo series, twice: once through the real CLI with one
 * worker, once through the library with two. Each checkpoint's files depend only on that
 * checkpoint, so both must hold the same tables (all but the timing columns byte for
 * byte), with the row counts the config implies. A third run is stopped with SIGINT.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import { loadConfig } from '../pipeline/config.ts';
import type { Manifest } from '../pipeline/manifest.ts';
import { buildPlan } from '../pipeline/plan.ts';
import { runSweep, type SweepResult } from '../pipeline/sweep.ts';
import { TABLE_NAMES } from '../pipeline/tables.ts';
import { BACKENDS } from '../src/backend.ts';
import { headsweep, type CliRun } from './helpers/cli.ts';
import { files } from './helpers/sweep-run.ts';
import { tempDir } from './helpers/safetensors.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const REPO = join(import.meta.dirname, '..');
const RUNS = { 'planted-2l': { checkpoints: 5, layers: 2, heads: 2 }, 'shortformer-1l': { checkpoints: 2, layers: 1, heads: 3 } };
const RRT_COUNT = 4;
const NAT_COUNT = 8; // lines in data/prompts/nat.jsonl
const PROMPT_SETS = 2;

// Small prompt sets keep the test quick; every metric is on so every table is written.
const CONFIG = tmp.file('demo-small.yaml', [
  'name: demo-small',
  'output: {dir: out-config, formats: [arrow, parquet]}',
  'checkpoints:',
  `  - {run: planted-2l, paths: ["${REPO}/data/demo/planted-2l/*.safetensors"]}`,
  `  - {run: shortformer-1l, paths: ["${REPO}/data/demo/shortformer-1l/*.safetensors"]}`,
  'prompt_sets:',
  `  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: ${RRT_COUNT}, seed: 0}`,
  `  - {name: nat, kind: tokens, path: "${REPO}/data/prompts/nat.jsonl"}`,
  'icl: {early: 10, late: 45}',
  'batch_size: 4',
].join('\n'));

const OUT_1 = join(tmp.dir, 'workers-1');
const OUT_2 = join(tmp.dir, 'workers-2');
let cli: CliRun;
let library: SweepResult;

function rows(file: string): Record<string, unknown>[] {
  return tableFromIPC(readFileSync(file)).toArray().map((r) => r.toJSON() as Record<string, unknown>);
}

function tableRows(root: string, table: string): Record<string, unknown>[] {
  return files(root).filter((f) => f.startsWith(`${table}/`) && f.endsWith('.arrow')).flatMap((f) => rows(join(root, f)));
}

function manifestOf(root: string): Manifest {
  return JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8')) as Manifest;
}

beforeAll(async () => {
  cli = await headsweep(['sweep', CONFIG, '--out', OUT_1, '--workers', '1']);
  library = await runSweep(await buildPlan(loadConfig(CONFIG), { out: OUT_2, workers: 2 }));
});

describe('demo series, 1 worker (CLI) and 2 workers (library)', () => {
  test('the CLI exits 0 with progress on stderr and the top heads on stdout', () => {
    expect(cli.code, cli.stderr).toBe(EXIT.ok);
    expect(library.exitCode).toBe(EXIT.ok);
    // stderr is a pipe here: one plain line per checkpoint.
    expect(cli.stderr).toMatch(/\[7\/7\] \S+ step \d+ scored: .*heads\/s, ETA 0:00/);
    // The planted induction head (METRICS.md §7) tops the latest checkpoint of its run.
    expect(cli.stdout).toMatch(/planted-2l {2}step 2000 {2}rrt: {2}L1H0 1\.000 induction/);
    expect(cli.stdout).toMatch(/^finished: 7\/7 checkpoints scored on \w+; tables in /m);
  });

  test('both write the same files; all but the timing columns are byte-identical', () => {
    const names = files(OUT_1);
    expect(files(OUT_2)).toEqual(names);
    for (const name of names.filter((n) => n !== 'manifest.json' && !n.startsWith('checkpoints/'))) {
      expect(readFileSync(join(OUT_2, name)).equals(readFileSync(join(OUT_1, name))), name).toBe(true);
    }
    // load/forward/weight/write seconds are measured, so only they may differ.
    const untimed = (root: string) => tableRows(root, 'checkpoints').map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !k.endsWith('_seconds'))));
    expect(untimed(OUT_2)).toEqual(untimed(OUT_1));
    expect(names.filter((n) => n.startsWith('checkpoints/'))).toHaveLength(2 * 7);
  });

  test('row counts match the config', () => {
    const runs = Object.values(RUNS);
    const expected = {
      heads: runs.reduce((n, r) => n + r.checkpoints * PROMPT_SETS * r.layers * r.heads, 0),
      // Pairs of heads in different layers (src before dst), three kinds each.
      composition: runs.reduce((n, r) => n + r.checkpoints * 3 * r.heads * r.heads * (r.layers * (r.layers - 1)) / 2, 0),
      checkpoint_scores: runs.reduce((n, r) => n + r.checkpoints * PROMPT_SETS, 0),
      checkpoints: 7,
      prompts: runs.length * (RRT_COUNT + NAT_COUNT),
      errors: 0,
    };
    expect(expected).toEqual({ heads: 52, composition: 60, checkpoint_scores: 14, checkpoints: 7, prompts: 24, errors: 0 });
    for (const table of TABLE_NAMES) expect(tableRows(OUT_1, table).length, table).toBe(expected[table]);
    expect(manifestOf(OUT_1).counts.rows).toEqual(expected);
    // Parquet beside every Arrow file.
    const all = files(OUT_1);
    expect(all.filter((f) => f.endsWith('.parquet')).map((f) => f.replace(/\.parquet$/, ''))).toEqual(
      all.filter((f) => f.endsWith('.arrow')).map((f) => f.replace(/\.arrow$/, '')),
    );
  });

  test('the manifest records the backend that ran, the workers and the counts', () => {
    const m1 = manifestOf(OUT_1);
    const m2 = manifestOf(OUT_2);
    expect(BACKENDS).toContain(m1.backend);
    expect(m2.backend).toBe(m1.backend);
    expect([m1.workers, m2.workers]).toEqual([1, 2]);
    for (const m of [m1, m2]) {
      expect(m).toMatchObject({ name: 'demo-small', status: 'finished', exit_code: 0, config_path: CONFIG });
      expect(m.counts).toMatchObject({ checkpoints_planned: 7, scored: 7, failed: 0 });
      expect(m.versions).toHaveProperty('@tensorflow/tfjs-core');
      expect(m.versions).toHaveProperty('piscina');
    }
    expect((m1.config as { output: { dir: string } }).output.dir).toBe(OUT_1);
    expect(library.manifest).toEqual(m2);
  });

  test('rows carry run, step, checkpoint path and labels as the series implies', () => {
    const heads = tableRows(OUT_1, 'heads').filter((r) => r.run === 'planted-2l' && r.prompt_set === 'rrt');
    const at = (step: number, layer: number, head: number) => heads.find((r) => r.step === BigInt(step) && r.layer === layer && r.head === head)!;
    expect(at(2000, 1, 0)).toMatchObject({ label: 'induction', checkpoint: `${REPO}/data/demo/planted-2l/step02000.safetensors`, tokens_seen: BigInt(2000 * 16 * 64) });
    expect(at(2000, 0, 0).label).toBe('previous_token');
    // The start of the series is noise: no head is labelled, none prefers the induction target.
    expect(heads.filter((r) => r.step === 0n).map((r) => r.label)).toEqual([null, null, null, null]);
    expect(at(0, 1, 0).prefix_matching).toBeLessThan(0.1);
    expect(at(2000, 1, 0).prefix_matching).toBeGreaterThan(0.999);
  });
});

describe('Ctrl-C', () => {
  test('SIGINT after the first checkpoint stops the sweep; the manifest says interrupted and every file reads', async () => {
    const out = join(tmp.dir, 'interrupted');
    const run = await new Promise<CliRun & { signalled: boolean }>((resolve, reject) => {
      import('node:child_process').then(({ spawn }) => {
        const child = spawn(process.execPath, [join(REPO, 'bin/headsweep.js'), 'sweep', CONFIG, '--out', out, '--workers', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        let signalled = false;
        child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
        child.stderr.setEncoding('utf8').on('data', (d: string) => {
          stderr += d;
          // Interrupt as soon as the first checkpoint is reported done.
          if (!signalled && stderr.includes('[1/7]')) {
            signalled = true;
            child.kill('SIGINT');
          }
        });
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr, signalled }));
      }, reject);
    });
    expect(run.signalled).toBe(true);
    expect(run.code, run.stderr).toBe(EXIT.failure);
    expect(run.stderr).toContain('interrupted; finishing the files being written');
    const m = manifestOf(out);
    expect(m).toMatchObject({ status: 'interrupted', exit_code: EXIT.failure });
    expect(m.counts.scored).toBeGreaterThanOrEqual(1);
    expect(m.counts.scored).toBeLessThan(7);
    expect(run.stdout).toMatch(new RegExp(`^interrupted: ${m.counts.scored}/7 checkpoints scored, ${7 - m.counts.scored} not run`, 'm'));
    const written = files(out);
    expect(written.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // A checkpoint is either whole (all four tables) or absent; every file decodes.
    for (const f of written.filter((n) => n.endsWith('.arrow'))) expect(() => rows(join(out, f))).not.toThrow();
    expect(written.filter((f) => f.startsWith('checkpoints/') && f.endsWith('.arrow'))).toHaveLength(m.counts.scored);
    expect(tableRows(out, 'heads').length).toBe(m.counts.rows.heads);
  });
});
