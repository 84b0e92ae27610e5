/**
 * The output tables round-trip: built from hand-made scores, written through the atomic
 * sink, read back with apache-arrow's own IPC reader. Values are small numbers chosen
 * here, so every expected cell below can be checked by eye.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC, Type, type Schema, type Table } from 'apache-arrow';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { modelConfig, type ModelConfig } from '../src/model/config.ts';
import type { CheckpointScores } from '../src/score.ts';
import { packageVersions, writeManifest, type Manifest } from '../pipeline/manifest.ts';
import { writeFileAtomic } from '../pipeline/sinks/atomic.ts';
import { writeTableFile } from '../pipeline/sinks/index.ts';
import {
  checkpointId, checkpointsTable, checkpointTables, errorsTable, promptsTable, SCHEMAS, TABLE_NAMES, TABLES_VERSION,
  type CheckpointRowInfo, type TableName,
} from '../pipeline/tables.ts';

const SHA = 'ab12cd34ef56' + '0'.repeat(52);

const config: ModelConfig = modelConfig({
  n_layers: 2, n_heads: 2, d_model: 8, d_head: 4, d_vocab: 16, n_ctx: 12,
  attn_only: true, normalization_type: null, positional_embedding_type: 'shortformer', eps: 1e-5,
});

const info: CheckpointRowInfo = {
  run: 'demo',
  step: 1500,
  // Above 2^31: proves tokens_seen really is Int64 end to end.
  tokensSeen: 3_000_000_000,
  checkpoint: 'ckpts/step1500.safetensors',
  sha256: SHA,
  config,
  seconds: { load: 0.25, forward: 1.5, weights: 0.125, write: 0 },
};

// Two prompt sets over 2 layers × 2 heads; arrays are [layer * n_heads + head].
const scores: CheckpointScores = {
  nLayers: 2,
  nHeads: 2,
  promptSets: [
    {
      promptSet: 'repeated',
      prefix_matching: Float64Array.of(0.1, 0.2, NaN, 0.9),
      previous_token: Float64Array.of(0.8, 0.05, 0.3, 0.4),
      mean_loss: 2.5,
      icl_score: null,
    },
    {
      promptSet: 'random',
      prefix_matching: Float64Array.of(0.01, 0.02, 0.03, 0.04),
      previous_token: Float64Array.of(0.7, 0.06, 0.2, 0.1),
      mean_loss: 3.25,
      icl_score: -0.5,
    },
  ],
  copying: Float64Array.of(-0.5, 0.25, 0.75, 1),
  composition: {
    src_layer: Int32Array.of(0, 0),
    src_head: Int32Array.of(0, 1),
    dst_layer: Int32Array.of(1, 1),
    dst_head: Int32Array.of(1, 0),
    kind: ['K', 'V'],
    score: Float64Array.of(0.5, 0.125),
    baseline: 1 / Math.sqrt(8),
  },
  bigram_kl: 0.75,
  seconds: { forward: 1.5, weights: 0.125 },
};

const labels = [
  ['previous_token', null, null, 'induction'],
  ['previous_token', null, null, null],
];

let out: string;
beforeEach(() => {
  out = mkdtempSync(join(tmpdir(), 'headsweep-tables-'));
});
afterEach(() => rmSync(out, { recursive: true, force: true }));

const read = (path: string): Table => tableFromIPC(readFileSync(path));
const fieldsOf = (schema: Schema) => schema.fields.map((f) => `${f.name}: ${f.type}${f.nullable ? '?' : ''}`);
const columnsOf = (t: Table) => fieldsOf(t.schema);
const values = (t: Table, name: string) => t.getChild(name)!.toArray() as unknown[];
const nullable = (t: Table, name: string) => [...t.getChild(name)!] as unknown[];

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() || e.isSymbolicLink())
    .map((e) => join(e.parentPath, e.name));
}

async function writeCheckpoint(): Promise<Record<string, Table>> {
  const stem = checkpointId(info.step, info.sha256);
  const tables = checkpointTables(info, scores, labels);
  const back: Record<string, Table> = {};
  for (const [name, table] of Object.entries(tables) as [TableName, Table][]) {
    const [path] = await writeTableFile(out, name, info.run, stem, table, ['arrow']);
    expect(path).toBe(join(out, name, 'run=demo', 'step-000001500-ab12cd34ef56.arrow'));
    back[name] = read(path);
  }
  return back;
}

describe('checkpointId', () => {
  it('pads the step to 9 digits and keeps 12 hex of the sha256', () => {
    expect(checkpointId(1500, SHA)).toBe('step-000001500-ab12cd34ef56');
    expect(checkpointId(0, SHA.toUpperCase())).toBe('step-000000000-ab12cd34ef56');
    expect(checkpointId(null, SHA)).toBe('step-unknown-ab12cd34ef56');
  });

  it('rejects a negative step and a sha256 that is not hex', () => {
    expect(() => checkpointId(-1, SHA)).toThrow('step -1 is not a non-negative integer');
    expect(() => checkpointId(1, 'not-a-sha')).toThrow("'not-a-sha' is not a hex sha256");
  });
});

describe('checkpoint tables written as Arrow IPC files', () => {
  it('writes heads, composition, checkpoint_scores and checkpoints, no .tmp left', async () => {
    const back = await writeCheckpoint();
    expect(Object.keys(back).sort()).toEqual(['checkpoint_scores', 'checkpoints', 'composition', 'heads']);
    expect(filesUnder(out).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // Each file carries exactly the schema written down in tables.ts.
    for (const [name, table] of Object.entries(back)) {
      expect(columnsOf(table)).toEqual(fieldsOf(SCHEMAS[name as TableName]));
    }
  });

  it('heads: one row per prompt set × layer × head with typed columns and nulls', async () => {
    const { heads } = await writeCheckpoint();
    expect(heads.numRows).toBe(8);
    expect(columnsOf(heads)).toEqual([
      'run: Utf8', 'step: Int64?', 'tokens_seen: Int64?', 'checkpoint: Utf8', 'prompt_set: Utf8',
      'layer: Int32', 'head: Int32', 'prefix_matching: Float64?', 'duplicate_token: Float64?',
      'previous_token: Float64?', 'first_token: Float64?', 'copying: Float64?', 'label: Utf8?',
    ]);
    // Plain Utf8, not the Dictionary tableFromArrays would have made.
    for (const name of ['run', 'checkpoint', 'prompt_set', 'label']) {
      expect(heads.schema.fields.find((f) => f.name === name)!.type.typeId).toBe(Type.Utf8);
    }
    expect(nullable(heads, 'run')).toEqual(Array(8).fill('demo'));
    expect(nullable(heads, 'step')).toEqual(Array(8).fill(1500n));
    expect(nullable(heads, 'tokens_seen')).toEqual(Array(8).fill(3_000_000_000n));
    expect(values(heads, 'step')).toBeInstanceOf(BigInt64Array);
    expect(nullable(heads, 'checkpoint')).toEqual(Array(8).fill('ckpts/step1500.safetensors'));
    expect(nullable(heads, 'prompt_set')).toEqual([...Array(4).fill('repeated'), ...Array(4).fill('random')]);
    expect(values(heads, 'layer')).toEqual(Int32Array.of(0, 0, 1, 1, 0, 0, 1, 1));
    expect(values(heads, 'head')).toEqual(Int32Array.of(0, 1, 0, 1, 0, 1, 0, 1));
    // The NaN at (repeated, L1H0) is a null; duplicate_token was never computed: all null.
    expect(nullable(heads, 'prefix_matching')).toEqual([0.1, 0.2, null, 0.9, 0.01, 0.02, 0.03, 0.04]);
    expect(heads.getChild('prefix_matching')!.nullCount).toBe(1);
    expect(nullable(heads, 'duplicate_token')).toEqual(Array(8).fill(null));
    expect(nullable(heads, 'first_token')).toEqual(Array(8).fill(null));
    expect(nullable(heads, 'previous_token')).toEqual([0.8, 0.05, 0.3, 0.4, 0.7, 0.06, 0.2, 0.1]);
    // copying is a weight score: the same four values in both prompt sets' blocks.
    expect(nullable(heads, 'copying')).toEqual([-0.5, 0.25, 0.75, 1, -0.5, 0.25, 0.75, 1]);
    expect(nullable(heads, 'label')).toEqual([
      'previous_token', null, null, 'induction', 'previous_token', null, null, null,
    ]);
  });

  it('composition, checkpoint_scores and checkpoints hold their rows', async () => {
    const { composition, checkpoint_scores, checkpoints } = await writeCheckpoint();
    expect(composition.numRows).toBe(2);
    expect(columnsOf(composition)).toEqual([
      'run: Utf8', 'step: Int64?', 'checkpoint: Utf8', 'src_layer: Int32', 'src_head: Int32',
      'dst_layer: Int32', 'dst_head: Int32', 'kind: Utf8', 'score: Float64', 'baseline: Float64',
    ]);
    expect(values(composition, 'src_head')).toEqual(Int32Array.of(0, 1));
    expect(values(composition, 'dst_head')).toEqual(Int32Array.of(1, 0));
    expect(nullable(composition, 'kind')).toEqual(['K', 'V']);
    expect(values(composition, 'score')).toEqual(Float64Array.of(0.5, 0.125));
    expect(values(composition, 'baseline')).toEqual(Float64Array.of(1 / Math.sqrt(8), 1 / Math.sqrt(8)));

    expect(checkpoint_scores.numRows).toBe(2);
    expect(columnsOf(checkpoint_scores)).toEqual([
      'run: Utf8', 'step: Int64?', 'checkpoint: Utf8', 'prompt_set: Utf8', 'mean_loss: Float64?', 'icl_score: Float64?', 'bigram_kl: Float64?',
    ]);
    expect(nullable(checkpoint_scores, 'prompt_set')).toEqual(['repeated', 'random']);
    expect(nullable(checkpoint_scores, 'mean_loss')).toEqual([2.5, 3.25]);
    expect(nullable(checkpoint_scores, 'icl_score')).toEqual([null, -0.5]);
    // One value per checkpoint, repeated on each prompt set's row.
    expect(nullable(checkpoint_scores, 'bigram_kl')).toEqual([0.75, 0.75]);

    expect(checkpoints.numRows).toBe(1);
    expect(columnsOf(checkpoints)).toEqual([
      'run: Utf8', 'step: Int64?', 'tokens_seen: Int64?', 'path: Utf8', 'sha256: Utf8',
      'n_layers: Int32', 'n_heads: Int32', 'd_model: Int32', 'd_head: Int32', 'd_vocab: Int32', 'n_ctx: Int32',
      'attn_only: Bool?', 'd_mlp: Int32?', 'act_fn: Utf8?', 'gated_mlp: Bool?', 'parallel_attn_mlp: Bool?',
      'normalization_type: Utf8?', 'positional_embedding_type: Utf8', 'rotary_dim: Int32?', 'rotary_base: Float64?',
      'rotary_adjacent_pairs: Bool?', 'n_key_value_heads: Int32?', 'scale_attn_by_inverse_layer_idx: Bool?',
      'eps: Float64?', 'bos_token_id: Int32?', 'model_config: Utf8?',
      'load_seconds: Float64', 'forward_seconds: Float64', 'weight_seconds: Float64', 'write_seconds: Float64',
    ]);
    const row = checkpoints.get(0)!.toJSON();
    expect({ ...row, model_config: undefined }).toEqual({
      run: 'demo', step: 1500n, tokens_seen: 3_000_000_000n, path: 'ckpts/step1500.safetensors', sha256: SHA,
      n_layers: 2, n_heads: 2, d_model: 8, d_head: 4, d_vocab: 16, n_ctx: 12,
      attn_only: true, d_mlp: null, act_fn: null, gated_mlp: false, parallel_attn_mlp: false,
      normalization_type: null, positional_embedding_type: 'shortformer', rotary_dim: null, rotary_base: 10000,
      rotary_adjacent_pairs: false, n_key_value_heads: null, scale_attn_by_inverse_layer_idx: false,
      eps: 1e-5, bos_token_id: null, model_config: undefined,
      load_seconds: 0.25, forward_seconds: 1.5, weight_seconds: 0.125, write_seconds: 0,
    });
    expect(JSON.parse(row.model_config as string)).toEqual(config);
  });

  it('checkpoints: every config field of a model with MLPs, rotary and grouped-query attention', async () => {
    const gqa = modelConfig({
      n_layers: 3, n_heads: 4, d_model: 16, d_head: 4, d_vocab: 50, n_ctx: 32,
      attn_only: false, d_mlp: 40, act_fn: 'silu', gated_mlp: true, parallel_attn_mlp: true,
      normalization_type: 'RMS', positional_embedding_type: 'rotary', rotary_dim: 2, rotary_base: 500,
      rotary_adjacent_pairs: true, n_key_value_heads: 2, scale_attn_by_inverse_layer_idx: true, eps: 1e-6, bos_token_id: 7,
    });
    const [file] = await writeTableFile(out, 'checkpoints', 'demo', 'gqa', checkpointsTable({ ...info, config: gqa }), ['arrow']);
    const row = read(file).get(0)!.toJSON();
    expect(Object.fromEntries(Object.entries(row).slice(5, 25))).toEqual({
      n_layers: 3, n_heads: 4, d_model: 16, d_head: 4, d_vocab: 50, n_ctx: 32,
      attn_only: false, d_mlp: 40, act_fn: 'silu', gated_mlp: true, parallel_attn_mlp: true,
      normalization_type: 'RMS', positional_embedding_type: 'rotary', rotary_dim: 2, rotary_base: 500,
      rotary_adjacent_pairs: true, n_key_value_heads: 2, scale_attn_by_inverse_layer_idx: true, eps: 1e-6, bos_token_id: 7,
    });
    // The JSON holds the same resolved config, fields in the order of MODEL_CONFIG_FIELDS.
    expect(row.model_config).toBe(
      '{"n_layers":3,"n_heads":4,"d_model":16,"d_head":4,"d_vocab":50,"n_ctx":32,"attn_only":false,"d_mlp":40,'
        + '"act_fn":"silu","gated_mlp":true,"parallel_attn_mlp":true,"normalization_type":"RMS","positional_embedding_type":"rotary",'
        + '"rotary_dim":2,"rotary_base":500,"rotary_adjacent_pairs":true,"n_key_value_heads":2,'
        + '"scale_attn_by_inverse_layer_idx":true,"eps":0.000001,"bos_token_id":7}',
    );
  });

  it('an unknown step and token count are nulls, and a checkpoint without prompt sets has no heads rows', async () => {
    const unknown = { ...info, step: null, tokensSeen: null };
    const tables = checkpointTables(unknown, { ...scores, promptSets: [], composition: undefined }, []);
    expect(Object.keys(tables)).toEqual(['checkpoints']);
    const stem = checkpointId(null, SHA);
    const [path] = await writeTableFile(out, 'checkpoints', 'demo', stem, tables.checkpoints!, ['arrow']);
    expect(path).toBe(join(out, 'checkpoints', 'run=demo', 'step-unknown-ab12cd34ef56.arrow'));
    const back = read(path);
    expect(nullable(back, 'step')).toEqual([null]);
    expect(nullable(back, 'tokens_seen')).toEqual([null]);
  });

  it('a per-head array of the wrong length names the checkpoint, metric and prompt set', () => {
    const short = { ...scores, promptSets: [{ ...scores.promptSets[0], previous_token: Float64Array.of(1, 2, 3) }] };
    expect(() => checkpointTables(info, short, labels)).toThrow(
      "ckpts/step1500.safetensors: previous_token for prompt set 'repeated' has 3 values, expected n_layers * n_heads = 2 * 2 = 4",
    );
  });

  it('a NaN composition score is refused rather than written as a null in a required column', () => {
    const bad = { ...scores, composition: { ...scores.composition!, score: Float64Array.of(0.5, NaN) } };
    expect(() => checkpointTables(info, bad, labels)).toThrow(
      "table composition: column 'score' is required but 1 of 2 values are missing (null or NaN)",
    );
  });
});

describe('prompts and errors tables', () => {
  it('prompts: one List<Int32> row per sequence, numbered within its prompt set', async () => {
    const table = promptsTable('demo', [
      { name: 'repeated', sequences: [Int32Array.of(1, 2, 3, 1, 2, 3), Int32Array.of(4, 5, 4, 5)] },
      { name: 'random', sequences: [Int32Array.of(7, 8, 9)] },
    ]);
    const [path] = await writeTableFile(out, 'prompts', 'demo', 'prompts', table, ['arrow']);
    expect(path).toBe(join(out, 'prompts', 'run=demo', 'prompts.arrow'));
    const back = read(path);
    expect(columnsOf(back)).toEqual(['run: Utf8', 'prompt_set: Utf8', 'seq: Int32', 'tokens: List<Int32>']);
    expect(nullable(back, 'prompt_set')).toEqual(['repeated', 'repeated', 'random']);
    expect(values(back, 'seq')).toEqual(Int32Array.of(0, 1, 0));
    const tokens = [...back.getChild('tokens')!].map((v) => [...(v as Iterable<number>)]);
    expect(tokens).toEqual([[1, 2, 3, 1, 2, 3], [4, 5, 4, 5], [7, 8, 9]]);
  });

  it('errors: one row per failure, including a run with none', async () => {
    const table = errorsTable([
      { run: 'demo', path: 'ckpts/bad.safetensors', stage: 'load', message: "ckpts/bad.safetensors: tensor 'embed.W_E' is missing" },
    ]);
    const back = read((await writeTableFile(out, 'errors', 'demo', 'errors', table, ['arrow']))[0]);
    expect(back.get(0)!.toJSON()).toEqual({
      run: 'demo', path: 'ckpts/bad.safetensors', stage: 'load', message: "ckpts/bad.safetensors: tensor 'embed.W_E' is missing",
    });
    expect(errorsTable([]).numRows).toBe(0);
    const empty = read((await writeTableFile(out, 'errors', 'empty', 'errors', errorsTable([]), ['arrow']))[0]);
    expect(empty.numRows).toBe(0);
    expect(columnsOf(empty)).toEqual(['run: Utf8', 'path: Utf8', 'stage: Utf8', 'message: Utf8']);
  });

  it('refuses a table whose schema is not the one for its name', async () => {
    await expect(writeTableFile(out, 'heads', 'demo', 'x', errorsTable([]), ['arrow'])).rejects.toThrow(
      'table heads: schema differs from TABLES.md',
    );
  });

  it('refuses a run name that would leave its folder', async () => {
    await expect(writeTableFile(out, 'errors', '../up', 'errors', errorsTable([]), ['arrow'])).rejects.toThrow(
      "run '../up' cannot be used in a file name",
    );
  });
});

describe('atomic placement', () => {
  it('a folder that cannot be created fails naming the path', async () => {
    const file = join(out, 'plain-file');
    writeFileSync(file, 'not a folder');
    const target = join(file, 'errors', 'run=demo', 'x.arrow');
    await expect(writeTableFile(file, 'errors', 'demo', 'x', errorsTable([]), ['arrow'])).rejects.toThrow(
      `cannot write ${target}: cannot create the folder ${join(file, 'errors', 'run=demo')}: ENOTDIR`,
    );
    expect(readFileSync(file, 'utf8')).toBe('not a folder');
  });

  it('a disk-full write says so, removes its .tmp and leaves the existing file byte-identical', async () => {
    const path = join(out, 'table.arrow');
    await writeFileAtomic(path, Uint8Array.of(1, 2, 3));
    // The writer opens `<name>.<pid>.tmp`; pointing that name at /dev/full makes the
    // kernel answer ENOSPC to the real write, as a full disk would.
    const tmp = `${path}.${process.pid}.tmp`;
    symlinkSync('/dev/full', tmp);
    await expect(writeFileAtomic(path, new Uint8Array(4096).fill(7))).rejects.toThrow(`disk full while writing ${path}`);
    expect(readFileSync(path)).toEqual(Buffer.from([1, 2, 3]));
    expect(filesUnder(out)).toEqual([path]);
  });

  it('a second write replaces the file whole', async () => {
    const path = join(out, 'a', 'b.json');
    await writeFileAtomic(path, 'first');
    await writeFileAtomic(path, 'second');
    expect(readFileSync(path, 'utf8')).toBe('second');
    expect(filesUnder(out)).toEqual([path]);
  });
});

describe('manifest', () => {
  it('is written atomically as JSON with installed versions', async () => {
    const versions = packageVersions();
    const arrowVersion = JSON.parse(readFileSync('node_modules/apache-arrow/package.json', 'utf8')).version;
    expect(versions['apache-arrow']).toBe(arrowVersion);
    expect(versions.node).toBe(process.versions.node);
    expect(versions.headsweep).toBe(JSON.parse(readFileSync('package.json', 'utf8')).version);
    expect(Object.keys(versions)).toContain('@tensorflow/tfjs-core');

    const rows = Object.fromEntries(TABLE_NAMES.map((t, i) => [t, i * 10])) as Record<TableName, number>;
    const manifest: Manifest = {
      name: 'demo', status: 'finished', config: { output: 'out/demo', workers: 2 }, config_path: 'configs/demo.yaml',
      started_at: '2025-01-01T00:00:00.000Z', finished_at: '2025-01-01T00:01:00.000Z', backend: 'wasm', workers: 2,
      shard: null, versions, tables_version: TABLES_VERSION, counts: { checkpoints_planned: 3, scored: 2, failed: 1, rows }, exit_code: 3,
      warnings: ['checkpoints[0].paths[1]: "later/*.safetensors" matches no files'],
    };
    await writeManifest(out, manifest);
    const text = readFileSync(join(out, 'manifest.json'), 'utf8');
    expect(JSON.parse(text)).toEqual(manifest);
    expect(Object.keys(JSON.parse(text))).toEqual([
      'name', 'status', 'config', 'config_path', 'started_at', 'finished_at', 'backend', 'workers', 'shard', 'versions', 'tables_version', 'counts', 'exit_code', 'warnings',
    ]);
    expect(filesUnder(out)).toEqual([join(out, 'manifest.json')]);
  });
});
