/**
 * Outputs written before tables version 2 (test/fixtures/tables-v1: a real sweep by the
 * code of that time, Arrow and Parquet, with its state entries and a manifest without
 * `tables_version`) stay readable: compaction, reruns and the report read its files with
 * the columns they lack as nulls, and DuckDB reads what comes out.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compactOutput } from '../pipeline/compact.ts';
import { readSweepOutput } from '../pipeline/report/read.ts';
import { TABLES_VERSION } from '../pipeline/tables.ts';
import { sweep } from './helpers/sweep-run.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tables-v1');
const CHECKPOINTS = { 'one-layer': 'random-1l-none-shortformer.safetensors', 'two-layer': 'random-2l-ln-standard.safetensors' };
// The v1 stems, sha256[:12] of the two fixture checkpoints at step 0.
const STEMS = { 'one-layer': 'step-000000000-6cdaa78ff3ee', 'two-layer': 'step-000000000-b5c19ce61318' };
// The checkpoints columns version 2 added.
const NEW_CONFIG_COLUMNS = [
  'attn_only', 'd_mlp', 'act_fn', 'gated_mlp', 'parallel_attn_mlp', 'rotary_dim', 'rotary_base', 'rotary_adjacent_pairs',
  'n_key_value_heads', 'scale_attn_by_inverse_layer_idx', 'eps', 'bos_token_id', 'model_config',
];

let base: string;
let db: DuckDBConnection;
const rows = async (sql: string) => (await db.runAndReadAll(sql)).getRowObjectsJS();

beforeAll(async () => {
  base = mkdtempSync(join(tmpdir(), 'headsweep-tables-v1-'));
  db = await (await DuckDBInstance.create()).connect();
});
afterAll(() => {
  db?.closeSync();
  rmSync(base, { recursive: true, force: true });
});

/** A copy of the fixture: its config, its output and the two checkpoints where the config's globs find them. */
function copyFixture(name: string): string {
  const dir = join(base, name);
  cpSync(join(FIXTURE, 'sweep.yaml'), join(dir, 'sweep.yaml'));
  cpSync(join(FIXTURE, 'out'), join(dir, 'out'), { recursive: true });
  for (const [run, file] of Object.entries(CHECKPOINTS)) {
    mkdirSync(join(dir, 'ckpts', run), { recursive: true });
    cpSync(join(import.meta.dirname, 'fixtures', file), join(dir, 'ckpts', run, file));
  }
  return dir;
}

/** The rows of one file of the fixture as the v1 code wrote them. */
function v1Rows(table: string, run: keyof typeof STEMS): Record<string, unknown>[] {
  return tableFromIPC(readFileSync(join(FIXTURE, 'out', table, `run=${run}`, `${STEMS[run]}.arrow`))).toArray().map((r) => r.toJSON());
}

describe('compacting an output of tables version 1', () => {
  it('gives the current schema with the new columns null, read by DuckDB, from Arrow and from Parquet alike', async () => {
    const dir = copyFixture('compact');
    const parquetOnly = copyFixture('compact-parquet');
    for (const file of readdirSync(join(parquetOnly, 'out'), { recursive: true, encoding: 'utf8' })) {
      if (file.endsWith('.arrow')) rmSync(join(parquetOnly, 'out', file));
    }
    for (const root of [dir, parquetOnly]) {
      const { manifest } = await compactOutput(join(root, 'out'));
      expect(manifest.tables_version).toBe(TABLES_VERSION);
      expect(manifest.sources.map((s) => s.tables_version)).toEqual([1]);
      expect(manifest.counts.rows.heads).toBe(3 * 2 + 8 * 2);

      const parquet = (table: string) => `read_parquet('${root}/out/compacted/parquet/${table}/**/*.parquet', hive_partitioning=false)`;
      const heads = await rows(`select run, prompt_set, layer, head, prefix_matching, first_token, copying, label from ${parquet('heads')} order by all`);
      expect(heads).toHaveLength(22);
      expect(heads.every((r) => r.first_token === null)).toBe(true);
      // The scores the v1 files hold come through unchanged.
      const v1 = v1Rows('heads', 'two-layer').map((r) => ({
        run: r.run, prompt_set: r.prompt_set, layer: r.layer, head: r.head, prefix_matching: r.prefix_matching,
        first_token: null, copying: r.copying, label: r.label,
      }));
      expect(heads.filter((r) => r.run === 'two-layer')).toEqual(v1.sort((a, b) =>
        String(a.prompt_set).localeCompare(String(b.prompt_set)) || Number(a.layer) - Number(b.layer) || Number(a.head) - Number(b.head)));

      const checkpoints = await rows(`select run, n_layers, n_heads, normalization_type, positional_embedding_type, ${NEW_CONFIG_COLUMNS.join(', ')}
        from ${parquet('checkpoints')} order by run`);
      expect(checkpoints).toEqual([
        { run: 'one-layer', n_layers: 1, n_heads: 3, normalization_type: null, positional_embedding_type: 'shortformer',
          ...Object.fromEntries(NEW_CONFIG_COLUMNS.map((c) => [c, null])) },
        { run: 'two-layer', n_layers: 2, n_heads: 4, normalization_type: 'LN', positional_embedding_type: 'standard',
          ...Object.fromEntries(NEW_CONFIG_COLUMNS.map((c) => [c, null])) },
      ]);
    }
    // Arrow and Parquet partitions of one output compact to the same bytes.
    expect(readFileSync(join(parquetOnly, 'out', 'compacted', 'heads.arrow')).equals(readFileSync(join(dir, 'out', 'compacted', 'heads.arrow')))).toBe(true);
    expect(readFileSync(join(parquetOnly, 'out', 'compacted', 'checkpoints.arrow')).equals(readFileSync(join(dir, 'out', 'compacted', 'checkpoints.arrow')))).toBe(true);
  });
});

/**
 * The one file of a checkpoint's table in a rerun output. A rerun renames version-1 files
 * (stems without the source suffix) to the current stems, bytes unchanged, so the file is
 * found by its stem's start.
 */
function tableFile(dir: string, table: string, run: keyof typeof STEMS, ext: 'arrow' | 'parquet'): string {
  const folder = join(dir, 'out', table, `run=${run}`);
  const found = readdirSync(folder).filter((f) => f.startsWith(`${STEMS[run]}-`) && f.endsWith(`.${ext}`));
  expect(found, `${folder}: ${readdirSync(folder).join(', ')}`).toHaveLength(1);
  return join(folder, found[0]);
}

describe('rerunning a sweep over an output of tables version 1', () => {
  it('keeps the unchanged checkpoints, adds a new one in version 2, and compacts the mixture', async () => {
    const dir = copyFixture('rerun-new');
    mkdirSync(join(dir, 'ckpts', 'planted'));
    cpSync(join(import.meta.dirname, 'fixtures', 'planted-induction-2l.safetensors'), join(dir, 'ckpts', 'planted', 'planted.safetensors'));
    const config = readFileSync(join(dir, 'sweep.yaml'), 'utf8')
      .replace('prompt_sets:', '  - run: planted\n    paths: ["ckpts/planted/*.safetensors"]\nprompt_sets:');
    writeFileSync(join(dir, 'sweep.yaml'), config);
    const before = readFileSync(join(dir, 'out', 'heads', 'run=one-layer', `${STEMS['one-layer']}.arrow`));

    const run = await sweep([join(dir, 'sweep.yaml')]);
    expect(run.code).toBe(0);
    expect(run.events.filter((e) => e.event === 'checkpoint_skipped').map((e) => (e as { run: string }).run).sort()).toEqual(['one-layer', 'two-layer']);
    expect(run.events.filter((e) => e.event === 'checkpoint_finished').map((e) => (e as { run: string }).run)).toEqual(['planted']);
    // The v1 files of the skipped checkpoints keep their bytes (under the current stem).
    expect(readFileSync(tableFile(dir, 'heads', 'one-layer', 'arrow')).equals(before)).toBe(true);
    const manifest = JSON.parse(readFileSync(join(dir, 'out', 'manifest.json'), 'utf8'));
    expect(manifest.tables_version).toBe(TABLES_VERSION);
    expect(manifest.counts.rows.checkpoints).toBe(3);

    await compactOutput(join(dir, 'out'));
    const checkpoints = await rows(`select run, n_layers, attn_only, d_mlp, eps, model_config
      from read_parquet('${dir}/out/compacted/parquet/checkpoints/**/*.parquet', hive_partitioning=false) order by run`);
    expect(checkpoints.map((r) => [r.run, r.n_layers, r.attn_only, r.d_mlp, r.eps])).toEqual([
      ['one-layer', 1, null, null, null], ['planted', 2, true, null, 1e-5], ['two-layer', 2, null, null, null],
    ]);
    expect(checkpoints.map((r) => r.model_config === null)).toEqual([true, false, true]);
    expect(JSON.parse(checkpoints[1].model_config as string)).toMatchObject({ n_layers: 2, n_heads: 2, d_model: 96, attn_only: true, normalization_type: null });
  });

  it('scores a changed prompt set again and writes the kept rows, read back from the v1 files, in version 2', async () => {
    const dir = copyFixture('rerun-settings');
    const config = readFileSync(join(dir, 'sweep.yaml'), 'utf8');
    writeFileSync(join(dir, 'sweep.yaml'), config.replace('count: 4, seed: 1}', 'count: 4, seed: 2}'));

    const run = await sweep([join(dir, 'sweep.yaml')]);
    expect(run.code).toBe(0);
    const started = run.events.filter((e) => e.event === 'checkpoint_started') as { reason: string; prompt_sets: string[] }[];
    expect(started.map((e) => [e.reason, e.prompt_sets])).toEqual([['settings', ['rescored']], ['settings', ['rescored']]]);

    for (const ckpt of Object.keys(STEMS) as (keyof typeof STEMS)[]) {
      const file = tableFile(dir, 'heads', ckpt, 'parquet');
      const described = await rows(`describe select * from read_parquet('${file}')`);
      expect(described.map((r) => r.column_name)).toContain('first_token');
      // The kept prompt set's rows are the v1 rows, with first_token (not asked for) null.
      const kept = await rows(`select * from read_parquet('${file}') where prompt_set = 'kept' order by layer, head`);
      expect(kept).toEqual(v1Rows('heads', ckpt).filter((r) => r.prompt_set === 'kept').map((r) => ({ ...r, first_token: null })));
      const scores = await rows(`select prompt_set, mean_loss, icl_score from read_parquet('${tableFile(dir, 'checkpoint_scores', ckpt, 'parquet')}') order by prompt_set`);
      const v1Scores = v1Rows('checkpoint_scores', ckpt);
      expect(scores[0]).toEqual({ prompt_set: 'kept', mean_loss: v1Scores[0].mean_loss, icl_score: v1Scores[0].icl_score });
      expect(scores[1].mean_loss).not.toBe(v1Scores[1].mean_loss);
      // The checkpoint was loaded again, so its checkpoints row has the whole config now.
      const [row] = await rows(`select attn_only, gated_mlp, rotary_base, bos_token_id, model_config from read_parquet('${tableFile(dir, 'checkpoints', ckpt, 'parquet')}')`);
      expect({ ...row, model_config: undefined }).toEqual({ attn_only: true, gated_mlp: false, rotary_base: 10000, bos_token_id: 0, model_config: undefined });
    }
  });
});

describe('the report on an output of tables version 1', () => {
  it('reads its rows with the per-head scores it lacks as null', async () => {
    const output = await readSweepOutput(join(copyFixture('report'), 'out'));
    if (!output.heads.present || !output.checkpointScores.present) throw new Error('tables missing');
    expect(output.heads.rows).toHaveLength(22);
    expect(output.heads.rows.every((r) => r.first_token === null && r.prefix_matching !== null)).toBe(true);
    expect(output.checkpointScores.rows.every((r) => r.bigram_kl === null && r.mean_loss !== null)).toBe(true);
  });
});
