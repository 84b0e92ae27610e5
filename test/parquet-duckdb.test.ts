/**
 * Parquet files as a reader outside JavaScript sees them: tables written in both formats,
 * then the Parquet opened with DuckDB and compared with the Arrow file cell by cell,
 * column types included.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelConfig, type ModelConfig } from '../src/model/config.ts';
import type { CheckpointScores } from '../src/score.ts';
import { writeTableFile } from '../pipeline/sinks/index.ts';
import { checkpointId, checkpointTables, promptsTable, type CheckpointRowInfo, type TableName } from '../pipeline/tables.ts';

const SHA = '0123456789ab' + 'f'.repeat(52);
const config: ModelConfig = modelConfig({
  n_layers: 1, n_heads: 3, d_model: 6, d_head: 2, d_vocab: 10, n_ctx: 8,
  attn_only: true, normalization_type: 'LN', positional_embedding_type: 'standard', eps: 1e-5,
});
const info: CheckpointRowInfo = {
  run: 'demo', step: 42, tokensSeen: 5_000_000_000, checkpoint: 'ckpts/a.safetensors', sha256: SHA, config,
  seconds: { load: 0.5, forward: 2, weights: 0.25, write: 0.125 },
};
// One layer × three heads, one prompt set; the NaN and the missing metrics become nulls.
const scores: CheckpointScores = {
  nLayers: 1,
  nHeads: 3,
  promptSets: [{
    promptSet: 'repeated',
    prefix_matching: Float64Array.of(0.75, NaN, 0.125),
    duplicate_token: Float64Array.of(0.5, 0.25, 0),
    mean_loss: 1.5,
  }],
  seconds: { forward: 2, weights: 0.25 },
};
const labels = [['induction', null, 'duplicate_token']];

let out: string;
let db: DuckDBConnection;
const rows = async (sql: string) => (await db.runAndReadAll(sql)).getRowObjectsJS();
const glob = (table: TableName, ext: string) => `${out}/${table}/**/*.${ext}`;

beforeAll(async () => {
  out = mkdtempSync(join(tmpdir(), 'headsweep-parquet-'));
  const stem = checkpointId(info.step, info.sha256);
  for (const [name, table] of Object.entries(checkpointTables(info, scores, labels))) {
    const paths = await writeTableFile(out, name as TableName, info.run, stem, table, ['arrow', 'parquet']);
    expect(paths).toEqual([
      join(out, name, 'run=demo', `${stem}.arrow`),
      join(out, name, 'run=demo', `${stem}.parquet`),
    ]);
  }
  const prompts = promptsTable('demo', [
    { name: 'repeated', sequences: [Int32Array.of(3, 1, 4, 3, 1, 4), Int32Array.of(2, 7)] },
  ]);
  await writeTableFile(out, 'prompts', 'demo', 'prompts', prompts, ['arrow', 'parquet']);
  db = await (await DuckDBInstance.create()).connect();
});

afterAll(() => {
  db?.closeSync();
  rmSync(out, { recursive: true, force: true });
});

describe('Parquet read by DuckDB', () => {
  it('heads: DuckDB column types match the Arrow schema', async () => {
    const described = await rows(`describe select * from read_parquet('${glob('heads', 'parquet')}', hive_partitioning=false)`);
    expect(described.map((r) => `${r.column_name}: ${r.column_type}`)).toEqual([
      'run: VARCHAR', 'step: BIGINT', 'tokens_seen: BIGINT', 'checkpoint: VARCHAR', 'prompt_set: VARCHAR',
      'layer: INTEGER', 'head: INTEGER', 'prefix_matching: DOUBLE', 'duplicate_token: DOUBLE',
      'previous_token: DOUBLE', 'first_token: DOUBLE', 'copying: DOUBLE', 'label: VARCHAR',
    ]);
  });

  it('heads: the same cells as the Arrow file, nulls included', async () => {
    const fromParquet = await rows(
      `select * from read_parquet('${glob('heads', 'parquet')}', hive_partitioning=false) order by prompt_set, layer, head`,
    );
    const arrowFile = join(out, 'heads', 'run=demo', `${checkpointId(42, SHA)}.arrow`);
    const fromArrow = tableFromIPC(readFileSync(arrowFile)).toArray().map((r) => r.toJSON());
    expect(fromParquet).toEqual(fromArrow);
    expect(fromParquet).toEqual([0, 1, 2].map((head) => ({
      run: 'demo', step: 42n, tokens_seen: 5_000_000_000n, checkpoint: 'ckpts/a.safetensors', prompt_set: 'repeated',
      layer: 0, head,
      prefix_matching: [0.75, null, 0.125][head],
      duplicate_token: [0.5, 0.25, 0][head],
      previous_token: null, first_token: null, copying: null,
      label: labels[0][head],
    })));
  });

  it('hive partitioning turns the run= folder into a column', async () => {
    expect(await rows(`select distinct run from read_parquet('${glob('heads', 'parquet')}', hive_partitioning=true)`))
      .toEqual([{ run: 'demo' }]);
  });

  it('checkpoint_scores and checkpoints keep their nulls and Int64 values', async () => {
    expect(await rows(`select prompt_set, mean_loss, icl_score from read_parquet('${glob('checkpoint_scores', 'parquet')}')`))
      .toEqual([{ prompt_set: 'repeated', mean_loss: 1.5, icl_score: null }]);
    expect(await rows(
      `select step, tokens_seen, sha256, n_heads, normalization_type, forward_seconds, write_seconds
       from read_parquet('${glob('checkpoints', 'parquet')}', hive_partitioning=false)`,
    )).toEqual([{
      step: 42n, tokens_seen: 5_000_000_000n, sha256: SHA, n_heads: 3, normalization_type: 'LN',
      forward_seconds: 2, write_seconds: 0.125,
    }]);
  });

  it('checkpoints: the model config columns with their DuckDB types, and the config as JSON', async () => {
    const described = await rows(`describe select * exclude (run, step, tokens_seen, path, sha256) from read_parquet('${glob('checkpoints', 'parquet')}', hive_partitioning=false)`);
    expect(described.map((r) => `${r.column_name}: ${r.column_type}`)).toEqual([
      'n_layers: INTEGER', 'n_heads: INTEGER', 'd_model: INTEGER', 'd_head: INTEGER', 'd_vocab: INTEGER', 'n_ctx: INTEGER',
      'attn_only: BOOLEAN', 'd_mlp: INTEGER', 'act_fn: VARCHAR', 'gated_mlp: BOOLEAN', 'parallel_attn_mlp: BOOLEAN',
      'normalization_type: VARCHAR', 'positional_embedding_type: VARCHAR', 'rotary_dim: INTEGER', 'rotary_base: DOUBLE',
      'rotary_adjacent_pairs: BOOLEAN', 'n_key_value_heads: INTEGER', 'scale_attn_by_inverse_layer_idx: BOOLEAN',
      'eps: DOUBLE', 'bos_token_id: INTEGER', 'model_config: VARCHAR',
      'load_seconds: DOUBLE', 'forward_seconds: DOUBLE', 'weight_seconds: DOUBLE', 'write_seconds: DOUBLE',
    ]);
    const [row] = await rows(`select attn_only, d_mlp, gated_mlp, rotary_dim, rotary_base, eps, bos_token_id, model_config
      from read_parquet('${glob('checkpoints', 'parquet')}')`);
    expect({ ...row, model_config: undefined }).toEqual({
      attn_only: true, d_mlp: null, gated_mlp: false, rotary_dim: null, rotary_base: 10000, eps: 1e-5, bos_token_id: null, model_config: undefined,
    });
    expect(JSON.parse(row.model_config as string)).toEqual(config);
  });

  it('prompts: tokens are an INTEGER[] list with its lengths and values', async () => {
    const described = await rows(`describe select * from read_parquet('${glob('prompts', 'parquet')}', hive_partitioning=false)`);
    expect(described.map((r) => `${r.column_name}: ${r.column_type}`)).toEqual([
      'run: VARCHAR', 'prompt_set: VARCHAR', 'seq: INTEGER', 'tokens: INTEGER[]',
    ]);
    expect(await rows(
      `select seq, len(tokens) as n, tokens from read_parquet('${glob('prompts', 'parquet')}') order by seq`,
    )).toEqual([
      { seq: 0, n: 6n, tokens: [3, 1, 4, 3, 1, 4] },
      { seq: 1, n: 2n, tokens: [2, 7] },
    ]);
  });
});
