/**
 * Idle workers share a checkpoint (src/work.ts, pipeline/pool.ts): a sweep of one
 * checkpoint on two workers cuts its work in two, one part per thread, and merges the
 * parts. Its tables must be those of the same sweep on one worker, byte for byte (the
 * checkpoints table without its measured `*_seconds` columns), for an attention-only
 * model and one with MLPs, with every metric on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import { loadConfig } from '../pipeline/config.ts';
import type { SweepEvent } from '../pipeline/events.ts';
import { buildPlan } from '../pipeline/plan.ts';
import { runSweep } from '../pipeline/sweep.ts';
import { METRIC_NAMES } from '../src/score.ts';
import { tempDir } from './helpers/safetensors.ts';
import { tableSnapshot } from './helpers/sweep-run.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const REPO = join(import.meta.dirname, '..');

const CHECKPOINTS = {
  'attn-only-2l': `${REPO}/data/checkpoints/attn-only-2l/step-001500.safetensors`,
  'gelu-2l': `${REPO}/data/checkpoints/gelu-2l/step-000775.safetensors`,
};

describe.each(Object.entries(CHECKPOINTS))('one %s checkpoint', (run, path) => {
  const config = tmp.file(`${run}.yaml`, [
    `name: shared-${run}`,
    'output: unused',
    'checkpoints:',
    `  - {run: ${run}, paths: ["${path}"]}`,
    'prompt_sets:',
    '  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 10, seed: 0}',
    `  - {name: nat, kind: tokens, path: "${REPO}/data/prompts/nat.jsonl"}`,
    `metrics: [${METRIC_NAMES.join(', ')}]`,
    `bigram: {path: "${REPO}/data/corpus/npm-readmes.txt", tokenizer: char64}`,
    'icl: {early: 10, late: 45}',
    'batch_size: 2',
  ].join('\n'));

  async function sweepOn(workers: number, file = config): Promise<{ root: string; shared: number[] }> {
    const root = join(tmp.dir, `${run}-${file === config ? '' : 'budget-'}workers-${workers}`);
    const finished: Extract<SweepEvent, { event: 'checkpoint_finished' }>[] = [];
    const plan = await buildPlan(loadConfig(file), { out: root, workers });
    if (file !== config) expect(plan.maxInFlight).toBe(1);
    const result = await runSweep(plan, {
      log: (e) => e.event === 'checkpoint_finished' && finished.push(e),
    });
    expect(result.exitCode).toBe(EXIT.ok);
    return { root, shared: finished.map((e) => e.workers) };
  }

  test('two workers share it and write the tables of one', async () => {
    const one = await sweepOn(1);
    const two = await sweepOn(2);
    expect([one.shared, two.shared]).toEqual([[1], [2]]);
    const tables = tableSnapshot(one.root);
    expect([...tables.keys()].some((f) => f.startsWith('heads/'))).toBe(true);
    expect(tableSnapshot(two.root)).toEqual(tables);
  });

  test('a memory budget that holds one copy of it keeps it on one thread: every part would load it whole', async () => {
    const budget = tmp.file(`${run}-budget.yaml`, `${readFileSync(config, 'utf8')}\nmemory_budget_mb: 1\n`);
    expect((await sweepOn(2, budget)).shared).toEqual([1]);
  });
});
