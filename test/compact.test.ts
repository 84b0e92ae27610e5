/**
 * Compaction on real files: seven checkpoints of two runs (one failed) are written with
 * the sweep's own table builders and sinks, once as one machine would and once split over
 * three shards (`assignShard`), either into one shared root or into three roots. All
 * three compactions must give the same bytes, every partition row must appear once in
 * key order, and DuckDB must read the Parquet dataset with `run` from the folder names.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { Float64, Table, tableFromIPC, tableToIPC, Utf8, util, vectorFromArray } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelConfig, type ModelConfig } from '../src/model/config.ts';
import type { CheckpointScores } from '../src/score.ts';
import type { PromptSet } from '../src/prompts/types.ts';
import { main } from '../pipeline/cli.ts';
import { compactOutput, isCompactionEntry, type CompactedManifest } from '../pipeline/compact.ts';
import type { Manifest } from '../pipeline/manifest.ts';
import { assignShard, checkpointKey, manifestFileName, type Shard } from '../pipeline/shard.ts';
import { writeFileAtomic } from '../pipeline/sinks/atomic.ts';
import { writeTableFile, type OutputFormat } from '../pipeline/sinks/index.ts';
import {
  checkpointId, checkpointTables, errorsTable, promptsTable, SCHEMAS, TABLE_NAMES, type TableName,
} from '../pipeline/tables.ts';

interface Run {
  run: string;
  config: ModelConfig;
  promptSets: PromptSet[];
}

interface Ckpt {
  run: Run;
  path: string;
  step: number | null;
  /** Set for the checkpoint that failed to load. */
  failure?: string;
}

const model = (n_layers: number, n_heads: number, positional: 'standard' | 'shortformer'): ModelConfig => modelConfig({
  n_layers, n_heads, d_model: 4 * n_heads, d_head: 4, d_vocab: 20, n_ctx: 16,
  attn_only: true, normalization_type: positional === 'standard' ? 'LN' : null, positional_embedding_type: positional, eps: 1e-5,
});

// Prompt sets in config order 'repeated', 'natural': the compacted heads sort them by name.
const INDUCTION: Run = {
  run: 'induction-2l',
  config: model(2, 2, 'standard'),
  promptSets: [
    { name: 'repeated', sequences: [Int32Array.of(1, 5, 7, 1, 5, 7), Int32Array.of(2, 9, 2, 9)] },
    { name: 'natural', sequences: [Int32Array.of(3, 4, 5, 6, 7)] },
  ],
};
const SHORTFORMER: Run = {
  run: 'shortformer-1l',
  config: model(1, 3, 'shortformer'),
  promptSets: [{ name: 'repeated', sequences: [Int32Array.of(8, 9, 8, 9)] }],
};
const RUNS = [INDUCTION, SHORTFORMER];

const CKPTS: Ckpt[] = [
  { run: INDUCTION, path: 'ckpts/induction-2l/step0.safetensors', step: 0 },
  { run: INDUCTION, path: 'ckpts/induction-2l/step100.safetensors', step: 100 },
  { run: INDUCTION, path: 'ckpts/induction-2l/step200.safetensors', step: 200 },
  { run: INDUCTION, path: 'ckpts/induction-2l/final.safetensors', step: null },
  { run: SHORTFORMER, path: 'ckpts/shortformer-1l/step50.safetensors', step: 50 },
  // Past 2^31: the step stays Int64 through compaction and Parquet.
  { run: SHORTFORMER, path: 'ckpts/shortformer-1l/step3000000000.safetensors', step: 3_000_000_000 },
  { run: SHORTFORMER, path: 'ckpts/shortformer-1l/broken.safetensors', step: null, failure: 'header length 4096 exceeds the file size 1024' },
];

const sha256 = (text: string | Uint8Array) => createHash('sha256').update(text).digest('hex');

/** Scores that differ per checkpoint, prompt set and head, with a few NaN (→ null) cells. */
function scoresOf(c: Ckpt, index: number): CheckpointScores {
  const { n_layers: L, n_heads: H } = c.run.config;
  const perHead = (seed: number) => Float64Array.from({ length: L * H }, (_, k) => ((seed * 7 + k * 3 + index) % 11) / 10);
  const scores: CheckpointScores = {
    nLayers: L,
    nHeads: H,
    promptSets: c.run.promptSets.map((s, p) => ({
      promptSet: s.name,
      prefix_matching: perHead(p + 1),
      previous_token: perHead(p + 5).map((v, k) => (k === 1 && index % 2 === 0 ? NaN : v)),
      mean_loss: 3 - index / 4 - p / 8,
      icl_score: p === 0 ? -index / 8 : null,
    })),
    copying: perHead(9).map((v) => 2 * v - 1),
    seconds: { forward: 0.5, weights: 0.25 },
  };
  if (L > 1) {
    const rows = [0, 1].flatMap((sh) => [0, 1].flatMap((dh) => (['Q', 'K', 'V'] as const).map((kind) => ({ sh, dh, kind }))));
    scores.composition = {
      src_layer: Int32Array.from(rows, () => 0),
      src_head: Int32Array.from(rows, (r) => r.sh),
      dst_layer: Int32Array.from(rows, () => 1),
      dst_head: Int32Array.from(rows, (r) => r.dh),
      kind: rows.map((r) => r.kind),
      score: Float64Array.from(rows, (r, k) => (k + index) / 40 + (r.kind === 'K' ? 0.5 : 0)),
      baseline: 1 / Math.sqrt(c.run.config.d_model),
    };
  }
  return scores;
}

/**
 * Writes what a sweep (or shard `shard` of one) writes for `ckpts`: every table file,
 * each run's prompts, and its manifest.
 */
async function writeSweep(root: string, ckpts: Ckpt[], shard: Shard | null, formats: OutputFormat[] = ['arrow']): Promise<void> {
  const rows = Object.fromEntries(TABLE_NAMES.map((t) => [t, 0])) as Record<TableName, number>;
  for (const r of RUNS) {
    const data = promptsTable(r.run, r.promptSets);
    await writeTableFile(root, 'prompts', r.run, 'prompts', data, formats);
    rows.prompts += data.numRows;
  }
  for (const c of ckpts) {
    const index = CKPTS.indexOf(c);
    const sha = sha256(c.path);
    const stem = checkpointId(c.step, sha);
    if (c.failure !== undefined) {
      await writeTableFile(root, 'errors', c.run.run, stem, errorsTable([{ run: c.run.run, path: c.path, stage: 'load', message: `${c.path}: ${c.failure}` }]), formats);
      rows.errors++;
      continue;
    }
    const info = {
      run: c.run.run, step: c.step, tokensSeen: c.step === null ? null : c.step * 2048, checkpoint: c.path, sha256: sha,
      config: c.run.config, seconds: { load: 0.125, forward: 0.5, weights: 0.25, write: 0.0625 },
    };
    const labels = c.run.promptSets.map(() => Array.from({ length: c.run.config.n_layers * c.run.config.n_heads }, (_, k) => (k === 3 && index > 1 ? 'induction' : null)));
    for (const [table, data] of Object.entries(checkpointTables(info, scoresOf(c, index), labels)) as [TableName, Table][]) {
      await writeTableFile(root, table, c.run.run, stem, data, formats);
      rows[table] += data.numRows;
    }
  }
  const failed = ckpts.filter((c) => c.failure !== undefined).length;
  const manifest: Manifest = {
    name: 'compact-test', status: 'finished', config: {}, config_path: 'configs/compact-test.yaml',
    started_at: '2025-01-01T00:00:00.000Z', finished_at: '2025-01-01T00:01:00.000Z', backend: 'cpu', workers: 1,
    versions: { headsweep: '0.1.0' },
    counts: { checkpoints_planned: ckpts.length, scored: ckpts.length - failed, failed, rows },
    exit_code: failed > 0 ? 3 : 0,
  };
  await writeFileAtomic(join(root, manifestFileName(shard)), JSON.stringify(manifest, null, 2));
}

const shardOf = (c: Ckpt) => assignShard(checkpointKey(c.run.run, c.path), 3);
const shardCkpts = (index: number) => CKPTS.filter((c) => shardOf(c) === index);

const made: string[] = [];
const tmp = (label: string) => {
  const dir = mkdtempSync(join(tmpdir(), `headsweep-compact-${label}-`));
  made.push(dir);
  return dir;
};

/** Every file below `dir`, by relative path, with its sha256. */
function tree(dir: string): Record<string, string> {
  const entries = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  return Object.fromEntries(entries.map((e) => {
    const file = join(e.parentPath, e.name);
    return [relative(dir, file), sha256(readFileSync(file))];
  }).sort(([a], [b]) => (a < b ? -1 : 1)));
}

const readArrow = (file: string): Table => tableFromIPC(readFileSync(file));
const rowsOf = (t: Table) => t.toArray().map((r) => r.toJSON() as Record<string, unknown>);
const compacted = (root: string) => join(root, 'compacted');

/** Every row of every partition file of `table` under the roots, as JSON lines, sorted. */
function partitionRows(roots: string[], table: TableName): string[] {
  const seen = new Map<string, Table>();
  for (const root of roots) {
    const folder = join(root, table);
    if (!existsSync(folder)) continue;
    for (const rel of readdirSync(folder, { recursive: true }) as string[]) {
      if (rel.endsWith('.arrow')) seen.set(rel, readArrow(join(folder, rel)));
    }
  }
  return [...seen.values()].flatMap((t) => rowsOf(t).map((r) => JSON.stringify(r, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)))).sort();
}

let single: string;
let shared: string;
let separate: string[];
let merged: string;
let manifests: Record<'single' | 'shared' | 'separate', CompactedManifest>;
let db: DuckDBConnection;
const query = async (sql: string) => (await db.runAndReadAll(sql)).getRowObjectsJS();

beforeAll(async () => {
  single = tmp('single');
  await writeSweep(single, CKPTS, null);
  shared = tmp('shared');
  separate = [];
  for (const index of [0, 1, 2]) {
    await writeSweep(shared, shardCkpts(index), { index, count: 3 });
    const own = tmp(`shard${index}`);
    await writeSweep(own, shardCkpts(index), { index, count: 3 });
    separate.push(own);
  }
  merged = tmp('merged');
  manifests = {
    single: (await compactOutput(single)).manifest,
    shared: (await compactOutput(shared)).manifest,
    separate: (await compactOutput(merged, { inputs: separate })).manifest,
  };
  db = await (await DuckDBInstance.create()).connect();
});

afterAll(() => {
  db?.closeSync();
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

describe('compacting one machine and three shards', () => {
  it('gives every shard some checkpoints, so the split is a real one', () => {
    expect([0, 1, 2].map((i) => shardCkpts(i).length)).toEqual([2, 2, 3]);
  });

  it('writes the same bytes for one root, three shards in one root and three roots', () => {
    const one = tree(compacted(single));
    delete one['manifest.json'];
    expect(Object.keys(one)).toEqual([
      'checkpoint_scores.arrow', 'checkpoints.arrow', 'composition.arrow', 'errors.arrow', 'heads.arrow',
      'parquet/checkpoint_scores/run=induction-2l/part-0.parquet', 'parquet/checkpoint_scores/run=shortformer-1l/part-0.parquet',
      'parquet/checkpoints/run=induction-2l/part-0.parquet', 'parquet/checkpoints/run=shortformer-1l/part-0.parquet',
      'parquet/composition/run=induction-2l/part-0.parquet',
      'parquet/errors/run=shortformer-1l/part-0.parquet',
      'parquet/heads/run=induction-2l/part-0.parquet', 'parquet/heads/run=shortformer-1l/part-0.parquet',
      'parquet/prompts/run=induction-2l/part-0.parquet', 'parquet/prompts/run=shortformer-1l/part-0.parquet',
      'prompts.arrow',
    ]);
    for (const other of [tree(compacted(shared)), tree(compacted(merged))]) {
      delete other['manifest.json'];
      expect(other).toEqual(one);
    }
  });

  it('holds every partition row exactly once, with the TABLES.md schema', () => {
    const expected: Record<TableName, number> = { heads: 4 * 2 * 4 + 2 * 1 * 3, composition: 4 * 12, checkpoint_scores: 4 * 2 + 2, checkpoints: 6, prompts: 4, errors: 1 };
    for (const table of TABLE_NAMES) {
      const t = readArrow(join(compacted(single), `${table}.arrow`));
      expect(util.compareSchemas(t.schema, SCHEMAS[table])).toBe(true);
      expect(t.batches).toHaveLength(1);
      expect(t.numRows).toBe(expected[table]);
      const rows = rowsOf(t).map((r) => JSON.stringify(r, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))).sort();
      expect(rows).toEqual(partitionRows([single], table));
      expect(rows).toEqual(partitionRows(separate, table));
    }
  });

  it('sorts by run, step (unknown last), checkpoint, then prompt set, layer and head', () => {
    const checkpoints = rowsOf(readArrow(join(compacted(single), 'checkpoints.arrow')));
    expect(checkpoints.map((r) => [r.run, r.step, r.path])).toEqual([
      ['induction-2l', 0n, 'ckpts/induction-2l/step0.safetensors'],
      ['induction-2l', 100n, 'ckpts/induction-2l/step100.safetensors'],
      ['induction-2l', 200n, 'ckpts/induction-2l/step200.safetensors'],
      ['induction-2l', null, 'ckpts/induction-2l/final.safetensors'],
      ['shortformer-1l', 50n, 'ckpts/shortformer-1l/step50.safetensors'],
      ['shortformer-1l', 3_000_000_000n, 'ckpts/shortformer-1l/step3000000000.safetensors'],
    ]);
    const heads = rowsOf(readArrow(join(compacted(single), 'heads.arrow')));
    // 'natural' before 'repeated' although the config lists 'repeated' first.
    expect(heads.slice(0, 5).map((r) => [r.step, r.prompt_set, r.layer, r.head])).toEqual([
      [0n, 'natural', 0, 0], [0n, 'natural', 0, 1], [0n, 'natural', 1, 0], [0n, 'natural', 1, 1], [0n, 'repeated', 0, 0],
    ]);
    // Step 0, prompt set 'repeated' (p = 0), index 0: prefix_matching (7 + 3k) % 11 / 10; previous_token
    // (35 + 3k) % 11 / 10 with head k = 1 null (even index); copying 2 (63 + 3k) % 11 / 10 - 1.
    expect(heads[4]).toEqual({
      run: 'induction-2l', step: 0n, tokens_seen: 0n, checkpoint: 'ckpts/induction-2l/step0.safetensors',
      prompt_set: 'repeated', layer: 0, head: 0, prefix_matching: 0.7, duplicate_token: null, previous_token: 0.2,
      first_token: null, copying: 2 * 0.8 - 1, label: null,
    });
    expect(heads[5].previous_token).toBeNull();
    const composition = rowsOf(readArrow(join(compacted(single), 'composition.arrow')));
    expect(composition.slice(0, 3).map((r) => [r.src_head, r.dst_head, r.kind])).toEqual([[0, 0, 'K'], [0, 0, 'Q'], [0, 0, 'V']]);
  });

  it('writes a manifest of the sources, the shards and the summed counts', () => {
    const counts = { checkpoints_planned: 7, scored: 6, failed: 1 };
    const rows = { heads: 38, composition: 48, checkpoint_scores: 10, checkpoints: 6, prompts: 4, errors: 1 };
    expect(manifests.single).toMatchObject({
      complete: true, warnings: [], shards: null, inputs: [single],
      sources: [{ file: join(single, 'manifest.json'), shard: null, status: 'finished', exit_code: 3, counts }],
      counts: { ...counts, rows },
      outputs: { arrow: { heads: 'heads.arrow' }, parquet: { composition: ['parquet/composition/run=induction-2l/part-0.parquet'] } },
    });
    expect(manifests.single.counts.files).toEqual({ heads: 6, composition: 4, checkpoint_scores: 6, checkpoints: 6, prompts: 2, errors: 1 });
    expect(manifests.shared).toMatchObject({
      complete: true, warnings: [], shards: { count: 3, present: [0, 1, 2], missing: [] }, counts: { ...counts, rows },
    });
    expect(manifests.shared.sources.map((s) => [relative(shared, s.file), s.shard])).toEqual([
      ['manifest.shard-0-of-3.json', '0/3'], ['manifest.shard-1-of-3.json', '1/3'], ['manifest.shard-2-of-3.json', '2/3'],
    ]);
    expect(manifests.separate).toMatchObject({ complete: true, inputs: separate, shards: { count: 3, missing: [] }, counts: { ...counts, rows } });
    // Each shard root holds both runs' prompts: the identical copies are read once.
    expect(manifests.separate.counts.files.prompts).toBe(2);
    expect(JSON.parse(readFileSync(join(compacted(merged), 'manifest.json'), 'utf8'))).toEqual(manifests.separate);
  });
});

describe('the Parquet dataset read by DuckDB', () => {
  const parquet = (root: string, table: TableName) => `${compacted(root)}/parquet/${table}/**/*.parquet`;

  it('sees run from the hive folders and the row count of each run', async () => {
    expect(await query(
      `select run, count(*) as n from read_parquet('${parquet(shared, 'heads')}', hive_partitioning=true) group by run order by run`,
    )).toEqual([{ run: 'induction-2l', n: 32n }, { run: 'shortformer-1l', n: 6n }]);
    for (const table of TABLE_NAMES) {
      const [{ n }] = await query(`select count(*) as n from read_parquet('${parquet(shared, table)}', hive_partitioning=true)`);
      expect(n).toBe(BigInt(manifests.shared.counts.rows[table]));
    }
  });

  it('keeps the column types and the cells of the Arrow file, in the same order', async () => {
    const described = await query(`describe select * from read_parquet('${parquet(merged, 'checkpoints')}', hive_partitioning=false)`);
    expect(described.slice(0, 6).map((r) => `${r.column_name}: ${r.column_type}`)).toEqual([
      'run: VARCHAR', 'step: BIGINT', 'tokens_seen: BIGINT', 'path: VARCHAR', 'sha256: VARCHAR', 'n_layers: INTEGER',
    ]);
    const fromParquet = await query(
      `select * from read_parquet('${parquet(merged, 'heads')}', hive_partitioning=false)
       order by run, step nulls last, checkpoint, prompt_set, layer, head`,
    );
    expect(fromParquet).toEqual(rowsOf(readArrow(join(compacted(merged), 'heads.arrow'))));
    expect(await query(`select tokens from read_parquet('${parquet(merged, 'prompts')}') where run = 'induction-2l' and prompt_set = 'repeated' order by seq`))
      .toEqual([{ tokens: [1, 5, 7, 1, 5, 7] }, { tokens: [2, 9, 2, 9] }]);
  });

  it('splits a run into parts of at most --part-rows rows', async () => {
    const root = tmp('parts');
    cpSync(single, root, { recursive: true });
    const { manifest } = await compactOutput(root, { partRows: 10 });
    expect(manifest.outputs.parquet.heads).toEqual([
      'parquet/heads/run=induction-2l/part-0.parquet', 'parquet/heads/run=induction-2l/part-1.parquet',
      'parquet/heads/run=induction-2l/part-2.parquet', 'parquet/heads/run=induction-2l/part-3.parquet',
      'parquet/heads/run=shortformer-1l/part-0.parquet',
    ]);
    // Parts in file name order, rows in file order: the sorted rows of the Arrow file.
    const fromParts = await query(
      `select * exclude (filename, file_row_number) from read_parquet('${parquet(root, 'heads')}',
       hive_partitioning=false, filename=true, file_row_number=true) order by filename, file_row_number`,
    );
    expect(fromParts).toEqual(rowsOf(readArrow(join(compacted(single), 'heads.arrow'))));
  });
});

describe('rerunning and partial inputs', () => {
  it('a rerun gives the same files, leaves no temporary folder and never touches the partitions', async () => {
    const root = tmp('rerun');
    cpSync(shared, root, { recursive: true });
    const partitions = () => Object.fromEntries(Object.entries(tree(root)).filter(([rel]) => !rel.startsWith('compacted') && !rel.startsWith('.compactions')));
    const before = partitions();
    const first = tree(compacted(root));
    await compactOutput(root);
    const second = tree(compacted(root));
    delete first['manifest.json'];
    delete second['manifest.json'];
    expect(second).toEqual(first);
    expect(partitions()).toEqual(before);
    expect(readdirSync(root).filter((n) => n.startsWith('compacted'))).toEqual(['compacted']);
  });

  it('names what it may leave in an output root, so a sweep can accept it', () => {
    expect(['compacted', '.compactions', 'compacted.4242.tmp', 'compacted.7.old', 'compacted.7.link'].every(isCompactionEntry)).toBe(true);
    expect(['compacted.tmp', 'compacted-old', 'heads', 'manifest.json'].some(isCompactionEntry)).toBe(false);
  });

  it('a rerun drops the files of a run that is gone', async () => {
    const root = tmp('gone');
    cpSync(single, root, { recursive: true });
    await compactOutput(root);
    for (const table of TABLE_NAMES) rmSync(join(root, table, 'run=shortformer-1l'), { recursive: true, force: true });
    const { manifest } = await compactOutput(root);
    expect(existsSync(join(compacted(root), 'parquet', 'heads', 'run=shortformer-1l'))).toBe(false);
    expect(existsSync(join(compacted(root), 'errors.arrow'))).toBe(false);
    expect(manifest.counts.rows).toEqual({ heads: 32, composition: 48, checkpoint_scores: 8, checkpoints: 4, prompts: 3, errors: 0 });
    expect(manifest.outputs.arrow.errors).toBeUndefined();
  });

  it('says which shard is missing and exits with 3 from the command line', async () => {
    const root = tmp('missing');
    cpSync(shared, root, { recursive: true });
    rmSync(join(root, 'manifest.shard-2-of-3.json'));
    expect(await main(['compact', root])).toBe(3);
    const manifest = JSON.parse(readFileSync(join(compacted(root), 'manifest.json'), 'utf8')) as CompactedManifest;
    expect(manifest.complete).toBe(false);
    expect(manifest.shards).toEqual({ count: 3, present: [0, 1], missing: [2] });
    expect(manifest.warnings).toEqual(['no manifest from shard(s) 2/3: not finished, or not written into these roots']);
    expect(manifest.counts).toMatchObject({ checkpoints_planned: 4, scored: 3, failed: 1 });
    // The rows of shard 2's files are there all the same: only its manifest is missing.
    expect(manifest.counts.rows.checkpoints).toBe(6);
  });

  it('flags an interrupted shard and a root without a manifest', async () => {
    const root = tmp('interrupted');
    cpSync(separate[0], root, { recursive: true });
    const file = join(root, 'manifest.shard-0-of-3.json');
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), status: 'interrupted' }));
    const bare = tmp('bare');
    cpSync(join(separate[1], 'heads'), join(bare, 'heads'), { recursive: true });
    const { manifest } = await compactOutput(tmp('out'), { inputs: [root, bare, separate[2]] });
    expect(manifest.complete).toBe(false);
    expect(manifest.warnings).toEqual([
      `${file}: status 'interrupted', so its sweep did not try every checkpoint`,
      `${bare}: no manifest.json or manifest.shard-<i>-of-<n>.json (a sweep writes it when it ends)`,
      'no manifest from shard(s) 1/3: not finished, or not written into these roots',
    ]);
  });

  it('compacts Parquet-only partitions to the same bytes as Arrow ones', async () => {
    const root = tmp('parquet-only');
    await writeSweep(root, CKPTS, null, ['parquet']);
    const { manifest } = await compactOutput(root);
    expect(manifest.counts.files.heads).toBe(6);
    const fromParquet = tree(compacted(root));
    const fromArrow = tree(compacted(single));
    delete fromParquet['manifest.json'];
    delete fromArrow['manifest.json'];
    expect(fromParquet).toEqual(fromArrow);
  });
});

describe('inputs compaction refuses', () => {
  it('a partition without a required column, naming the file and the column', async () => {
    const root = tmp('schema');
    cpSync(single, root, { recursive: true });
    const file = join(root, 'checkpoint_scores', 'run=induction-2l', `${checkpointId(100, sha256('ckpts/induction-2l/step100.safetensors'))}.arrow`);
    const t = readArrow(file);
    writeFileSync(file, tableToIPC(t.select(['run', 'step', 'checkpoint', 'mean_loss']), 'file'));
    await expect(compactOutput(root)).rejects.toThrow(
      `${file}: the required column 'prompt_set' is missing; its columns (run: Utf8, step: Int64?, checkpoint: Utf8, mean_loss: Float64?) ` +
        'do not fit the checkpoint_scores table of TABLES.md, tables version 2 ' +
        '(run: Utf8, step: Int64?, checkpoint: Utf8, prompt_set: Utf8, mean_loss: Float64?, icl_score: Float64?, bigram_kl: Float64?)',
    );
    expect(readdirSync(root).filter((n) => n.startsWith('compacted'))).toEqual(['compacted']);
  });

  it('a partition with a column of another type or one the table does not have', async () => {
    const root = tmp('types');
    cpSync(single, root, { recursive: true });
    const file = join(root, 'checkpoint_scores', 'run=induction-2l', `${checkpointId(100, sha256('ckpts/induction-2l/step100.safetensors'))}.arrow`);
    const t = readArrow(file);
    writeFileSync(file, tableToIPC(t.assign(new Table({ mean_loss: vectorFromArray(['2.5', '3'], new Utf8()) })), 'file'));
    await expect(compactOutput(root)).rejects.toThrow(`${file}: column 'mean_loss' is Utf8?, not Float64?;`);
    writeFileSync(file, tableToIPC(t.assign(new Table({ tomorrow: vectorFromArray([1, 2], new Float64()) })), 'file'));
    await expect(compactOutput(root)).rejects.toThrow(`${file}: column 'tomorrow' is not one of the table's (a file of a newer headsweep?);`);
  });

  it('a file that is not Arrow, naming it', async () => {
    const root = tmp('garbage');
    cpSync(single, root, { recursive: true });
    const file = join(root, 'heads', 'run=induction-2l', 'step-000000000-000000000000.arrow');
    writeFileSync(file, 'not arrow');
    await expect(compactOutput(root)).rejects.toThrow(`${file}: not a readable Arrow IPC file`);
  });

  it('the same partition with different bytes in two roots, naming both', async () => {
    const other = tmp('rescored');
    cpSync(separate[0], other, { recursive: true });
    const rel = join('checkpoints', 'run=induction-2l', `${checkpointId(100, sha256('ckpts/induction-2l/step100.safetensors'))}.arrow`);
    // Rescoring changes the timings: the row is written again with another load time.
    await writeSweepRow(other, rel);
    await expect(compactOutput(tmp('out'), { inputs: [separate[0], other] })).rejects.toThrow(
      `${rel} differs between ${join(separate[0], rel)} and ${join(other, rel)}: the checkpoint was scored twice; keep one of the two files`,
    );
  });

  it('one checkpoint written under two file names, naming both files', async () => {
    const root = tmp('twice');
    cpSync(single, root, { recursive: true });
    const dir = join(root, 'checkpoint_scores', 'run=shortformer-1l');
    const original = join(dir, `${checkpointId(50, sha256('ckpts/shortformer-1l/step50.safetensors'))}.arrow`);
    const copy = join(dir, 'step-000000050-ffffffffffff.arrow');
    cpSync(original, copy);
    await expect(compactOutput(root)).rejects.toThrow(
      `checkpoint_scores: the row run=shortformer-1l, step=50, checkpoint=ckpts/shortformer-1l/step50.safetensors, prompt_set=repeated ` +
        `appears in ${original} and in ${copy}; a checkpoint was written twice (delete the stale file and compact again)`,
    );
  });
});

/** Rewrites the checkpoints row at `rel` with load_seconds 9, as a second scoring would. */
async function writeSweepRow(root: string, rel: string): Promise<void> {
  const c = CKPTS[1];
  const info = {
    run: c.run.run, step: c.step, tokensSeen: c.step! * 2048, checkpoint: c.path, sha256: sha256(c.path),
    config: c.run.config, seconds: { load: 9, forward: 0.5, weights: 0.25, write: 0.0625 },
  };
  const row = checkpointTables(info, { ...scoresOf(c, 1), promptSets: [], composition: undefined }, []).checkpoints!;
  const [path] = await writeTableFile(root, 'checkpoints', c.run.run, checkpointId(c.step, info.sha256), row, ['arrow']);
  expect(relative(root, path)).toBe(rel);
}
