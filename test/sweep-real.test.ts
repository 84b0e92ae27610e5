/**
 * The five models of `test/fixtures/real/`, each swept as its trainer wrote it (a
 * HuggingFace GPT-2 folder with safetensors, nanoGPT's ckpt.pt, a GPT-NeoX folder with a
 * float16 pytorch_model.bin, a Llama folder in bfloat16 with grouped-query attention, a
 * TransformerLens .pth with a Neel-style config.json) by a real sweep, beside the same
 * model's `NAME.tl.safetensors` in the same sweep. Every score read back from the tables
 * is within METRICS.md §7's tolerance of the independent float64 values (pattern scores
 * 1e-4; copying, composition, mean_loss and icl_score 1e-3), and equal to the scores of
 * the `.tl.safetensors` run: the conversion to TL names loses nothing.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../pipeline/config.ts';
import { buildPlan } from '../pipeline/plan.ts';
import { runSweep, type SweepResult } from '../pipeline/sweep.ts';
import { checkpointDigest } from '../src/checkpoint/checkpoint.ts';
import type { ExpectedPromptSet, ExpectedWeights } from './helpers/fixtures.ts';
import { PATTERN_TOL, TOL } from './helpers/golden.ts';
import { REAL } from './helpers/real.ts';
import { tempDir } from './helpers/safetensors.ts';
import { files } from './helpers/sweep-run.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

interface Case {
  name: string;
  family: string;
  path: string;
  tl: string;
  icl: [number, number];
}

const CASES = JSON.parse(readFileSync(join(REAL, 'cases.json'), 'utf8')) as Case[];
const PATTERNS = ['prefix_matching', 'duplicate_token', 'previous_token'] as const;
/** Columns that name where a row came from, not what was scored. */
const PROVENANCE = new Set(['run', 'step', 'tokens_seen', 'checkpoint']);

type Row = Record<string, unknown>;

function rows(out: string, table: string, run: string): Row[] {
  return files(out).filter((f) => f.startsWith(`${table}/run=${run}/`) && f.endsWith('.arrow'))
    .flatMap((f) => tableFromIPC(readFileSync(join(out, f))).toArray().map((r) => r.toJSON() as Row));
}

function scoresOnly(r: Row): Row {
  return Object.fromEntries(Object.entries(r).filter(([k]) => !PROVENANCE.has(k)));
}

/** `got` against `want`, named, when further apart than `tol`. */
function miss(at: string, got: unknown, want: number, tol: number): string[] {
  return typeof got === 'number' && Math.abs(got - want) <= tol ? [] : [`${at}: ${String(got)} vs ${want}`];
}

describe.each(CASES)('$name, swept as written', (c) => {
  const dir = join(tmp.dir, c.name);
  let result: SweepResult;
  let out: string;
  const expected = JSON.parse(readFileSync(join(REAL, `${c.name}.expected.json`), 'utf8')) as { prompt_sets: Record<string, ExpectedPromptSet> } & ExpectedWeights;
  const prompts = JSON.parse(readFileSync(join(REAL, `${c.name}.prompts.json`), 'utf8')) as Record<string, number[][]>;

  beforeAll(async () => {
    const sets = Object.entries(prompts).map(([name, seqs]) => {
      writeFileSync(join(tmp.dir, `${c.name}-${name}.jsonl`), seqs.map((s) => JSON.stringify(s)).join('\n'));
      return `  - {name: ${name}, kind: tokens, path: "${c.name}-${name}.jsonl"}`;
    });
    const config = tmp.file(`${c.name}.yaml`, [
      `name: ${c.name}`,
      `output: ${c.name}/out`,
      'checkpoints:',
      `  - {run: as-written, paths: ["${join(REAL, c.path)}"]}`,
      `  - {run: tl, paths: ["${join(REAL, c.tl)}"]}`,
      'prompt_sets:',
      ...sets,
      'metrics: [prefix_matching, duplicate_token, previous_token, copying, composition, mean_loss, icl_score]',
      `icl: {early: ${c.icl[0]}, late: ${c.icl[1]}}`,
      'batch_size: 3',
      'workers: 2',
      'backend: wasm',
    ].join('\n'));
    out = join(dir, 'out');
    result = await runSweep(await buildPlan(loadConfig(config)));
  });

  test('both runs are scored, the checkpoint read through its own family', () => {
    expect(result.errors).toEqual([]);
    expect(result.exitCode).toBe(0);
    const [row] = rows(out, 'checkpoints', 'as-written');
    expect(row.path).toBe(join(REAL, c.path));
    // The identity covers every file it is read from: the same digest the library gives.
    expect(row.sha256).toBe(checkpointDigest(join(REAL, c.path)).sha256);
    expect(row.attn_only).toBe(false);
    expect(result.manifest.counts).toMatchObject({ checkpoints_planned: 2, scored: 2, failed: 0 });
  });

  test.each(PATTERNS)('%s of every head within 1e-4 of the float64 values', (metric) => {
    const got = rows(out, 'heads', 'as-written');
    const misses: string[] = [];
    for (const [set, want] of Object.entries(expected.prompt_sets)) {
      for (const h of want.heads) {
        const row = got.find((r) => r.prompt_set === set && r.layer === h.layer && r.head === h.head);
        misses.push(...miss(`${set} L${h.layer}H${h.head}`, row?.[metric], h[metric], PATTERN_TOL));
      }
    }
    expect(got).toHaveLength(Object.values(expected.prompt_sets).reduce((n, s) => n + s.heads.length, 0));
    expect(misses).toEqual([]);
  });

  test('copying, composition, mean_loss and icl_score within 1e-3', () => {
    const misses: string[] = [];
    const heads = rows(out, 'heads', 'as-written');
    for (const h of expected.copying) {
      for (const set of Object.keys(expected.prompt_sets)) {
        const row = heads.find((r) => r.prompt_set === set && r.layer === h.layer && r.head === h.head);
        misses.push(...miss(`copying ${set} L${h.layer}H${h.head}`, row?.copying, h.copying, TOL));
      }
    }
    const composition = rows(out, 'composition', 'as-written');
    expect(composition).toHaveLength(expected.composition.length);
    expected.composition.forEach((e, i) => {
      const at = `composition row ${i} L${e.src_layer}H${e.src_head}→L${e.dst_layer}H${e.dst_head} ${e.kind}`;
      const r = composition[i];
      if ([r.src_layer, r.src_head, r.dst_layer, r.dst_head, r.kind].join() !== [e.src_layer, e.src_head, e.dst_layer, e.dst_head, e.kind].join()) misses.push(`${at}: row is another pair`);
      misses.push(...miss(at, r.score, e.score, TOL), ...miss(`${at} baseline`, r.baseline, e.baseline, TOL));
    });
    const scores = rows(out, 'checkpoint_scores', 'as-written');
    for (const [set, want] of Object.entries(expected.prompt_sets)) {
      const row = scores.find((r) => r.prompt_set === set);
      misses.push(...miss(`${set} mean_loss`, row?.mean_loss, want.mean_loss, TOL), ...miss(`${set} icl_score`, row?.icl_score, want.icl_score!, TOL));
    }
    expect(misses).toEqual([]);
  });

  test('every score and label equals that of the same model as .tl.safetensors', () => {
    for (const table of ['heads', 'composition', 'checkpoint_scores']) {
      const written = rows(out, table, 'as-written').map(scoresOnly);
      expect(written.length, table).toBeGreaterThan(0);
      expect(written, table).toEqual(rows(out, table, 'tl').map(scoresOnly));
    }
  });
});
