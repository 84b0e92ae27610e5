/**
 * A small synthetic sweep output folder laid out exactly as TABLES.md fixes it, for
 * tests that read or render outputs without scoring real checkpoints.
 *
 * Run `induction-2l` (2 layers × 4 heads, 5 steps, two prompt sets) has a phase change
 * at step 500: L1H2's prefix_matching jumps from 0.05 to 0.9 and its copying from 0 to
 * 0.8, L0H1 becomes a previous-token head that K-composes into L1H2, and the loss and
 * icl_score drop. Run `shortformer-1l` (1 layer × 2 heads) has one checkpoint of unknown
 * step, no composition pairs (a single layer) and one failed checkpoint in `errors`.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  DataType, Field, Float64, Int32, Int64, List, makeData, RecordBatch, Schema, Struct, Table,
  tableToIPC, Utf8, vectorFromArray,
} from 'apache-arrow';

export interface SampleRun {
  name: string;
  nLayers: number;
  nHeads: number;
  dModel: number;
  steps: (number | null)[];
  promptSets: string[];
}

export const SAMPLE_RUNS: readonly SampleRun[] = [
  { name: 'induction-2l', nLayers: 2, nHeads: 4, dModel: 64, steps: [0, 250, 500, 750, 1000], promptSets: ['repeated', 'natural'] },
  { name: 'shortformer-1l', nLayers: 1, nHeads: 2, dModel: 32, steps: [null], promptSets: ['repeated'] },
];
export const PHASE_CHANGE_STEP = 500;
export const INDUCTION_HEAD = { layer: 1, head: 2 };
export const PREVIOUS_TOKEN_HEAD = { layer: 0, head: 1 };

export type SampleTable = 'heads' | 'composition' | 'checkpoint_scores' | 'checkpoints' | 'prompts' | 'errors';

/**
 * Writes the sample under `root` (created if absent) and returns `root`. Tables named in
 * `omit` get no folder at all, as when a sweep did not compute them.
 */
export function writeSampleOutput(root: string, omit: readonly SampleTable[] = []): string {
  const write = (table: SampleTable, run: string, id: string, columns: Column[]): void => {
    if (!omit.includes(table)) writeArrow(join(root, table, `run=${run}`, `${id}.arrow`), columns);
  };
  for (const run of SAMPLE_RUNS) {
    for (const [index, step] of run.steps.entries()) {
      const checkpoint = `checkpoints/${run.name}/step${step ?? 'final'}.safetensors`;
      const sha = sha256(checkpoint);
      const id = `step-${step === null ? 'unknown' : String(step).padStart(9, '0')}-${sha.slice(0, 12)}`;
      const ctx = { run, step, index, checkpoint };
      write('heads', run.name, id, headsColumns(ctx));
      write('composition', run.name, id, compositionColumns(ctx));
      write('checkpoint_scores', run.name, id, checkpointScoreColumns(ctx));
      write('checkpoints', run.name, id, checkpointColumns(ctx, sha));
    }
    write('prompts', run.name, 'prompts', promptColumns(run));
  }
  const broken = 'checkpoints/shortformer-1l/truncated.safetensors';
  write('errors', 'shortformer-1l', `step-unknown-${sha256(broken).slice(0, 12)}`, [
    utf8('run', ['shortformer-1l']),
    utf8('path', [broken]),
    utf8('stage', ['load']),
    utf8('message', [`${broken}: header length 4096 exceeds the file size 1024`]),
  ]);
  writeFileSync(join(root, 'manifest.json'), JSON.stringify({
    name: 'sample-sweep',
    config: {},
    config_path: 'configs/sample.yaml',
    started_at: '2025-01-01T00:00:00.000Z',
    finished_at: '2025-01-01T00:01:00.000Z',
    backend: 'cpu',
    workers: 1,
    versions: { headsweep: '0.1.0' },
    counts: { checkpoints_planned: 7, scored: 6, failed: 1 },
    exit_code: 3,
  }, null, 2));
  return root;
}

interface Context {
  run: SampleRun;
  step: number | null;
  /** Position of the checkpoint in its run, 0-based. */
  index: number;
  checkpoint: string;
}

/** The unknown-step checkpoint stands for a trained model. */
function trained(ctx: Context): boolean {
  return ctx.step === null || ctx.step >= PHASE_CHANGE_STEP;
}

function is(head: { layer: number; head: number }, layer: number, h: number): boolean {
  return head.layer === layer && head.head === h;
}

/** Small deterministic background score in [0.02, 0.05] that differs per head and step. */
function background(layer: number, head: number, index: number): number {
  return 0.02 + 0.01 * ((layer * 5 + head * 3 + index) % 4);
}

function headsColumns(ctx: Context): Column[] {
  const { run } = ctx;
  const rows: { promptSet: string; layer: number; head: number }[] = [];
  for (const promptSet of run.promptSets) {
    for (let layer = 0; layer < run.nLayers; layer++) {
      for (let head = 0; head < run.nHeads; head++) rows.push({ promptSet, layer, head });
    }
  }
  const on = trained(ctx);
  return [
    utf8('run', rows.map(() => run.name)),
    int64('step', rows.map(() => ctx.step)),
    int64('tokens_seen', rows.map(() => (ctx.step === null ? null : ctx.step * 4096))),
    utf8('checkpoint', rows.map(() => ctx.checkpoint)),
    utf8('prompt_set', rows.map((r) => r.promptSet)),
    int32('layer', rows.map((r) => r.layer)),
    int32('head', rows.map((r) => r.head)),
    float64('prefix_matching', rows.map((r) => {
      if (!is(INDUCTION_HEAD, r.layer, r.head)) return background(r.layer, r.head, ctx.index);
      return on ? (r.promptSet === 'repeated' ? 0.9 : 0.6) : 0.05;
    })),
    float64('duplicate_token', rows.map((r) => background(r.head, r.layer, ctx.index))),
    float64('previous_token', rows.map((r) => {
      if (!is(PREVIOUS_TOKEN_HEAD, r.layer, r.head)) return background(r.layer, r.head, ctx.index + 1);
      return on ? 0.85 : 0.1;
    })),
    float64('copying', rows.map((r) => {
      if (!is(INDUCTION_HEAD, r.layer, r.head)) return 2 * background(r.layer, r.head, ctx.index) - 0.07;
      return on ? 0.8 : 0.0;
    })),
    utf8('label', rows.map((r) => {
      if (!on) return null;
      if (is(INDUCTION_HEAD, r.layer, r.head) && run.nLayers > 1) return 'induction';
      return is(PREVIOUS_TOKEN_HEAD, r.layer, r.head) ? 'previous_token' : null;
    })),
  ];
}

function compositionColumns(ctx: Context): Column[] {
  const { run } = ctx;
  const rows: { sl: number; sh: number; dl: number; dh: number; kind: string }[] = [];
  for (let sl = 0; sl < run.nLayers; sl++) {
    for (let sh = 0; sh < run.nHeads; sh++) {
      for (let dl = sl + 1; dl < run.nLayers; dl++) {
        for (let dh = 0; dh < run.nHeads; dh++) {
          for (const kind of ['Q', 'K', 'V']) rows.push({ sl, sh, dl, dh, kind });
        }
      }
    }
  }
  const circuit = (r: (typeof rows)[number]): boolean =>
    r.kind === 'K' && is(PREVIOUS_TOKEN_HEAD, r.sl, r.sh) && is(INDUCTION_HEAD, r.dl, r.dh);
  return [
    utf8('run', rows.map(() => run.name)),
    int64('step', rows.map(() => ctx.step)),
    utf8('checkpoint', rows.map(() => ctx.checkpoint)),
    int32('src_layer', rows.map((r) => r.sl)),
    int32('src_head', rows.map((r) => r.sh)),
    int32('dst_layer', rows.map((r) => r.dl)),
    int32('dst_head', rows.map((r) => r.dh)),
    utf8('kind', rows.map((r) => r.kind)),
    float64('score', rows.map((r) => (circuit(r) && trained(ctx) ? 0.6 : 0.08 + background(r.sh, r.dh, ctx.index)))),
    float64('baseline', rows.map(() => 1 / Math.sqrt(run.dModel))),
  ];
}

function checkpointScoreColumns(ctx: Context): Column[] {
  const { run } = ctx;
  const progress = ctx.step === null ? 1 : ctx.index / (run.steps.length - 1);
  return [
    utf8('run', run.promptSets.map(() => run.name)),
    int64('step', run.promptSets.map(() => ctx.step)),
    utf8('checkpoint', run.promptSets.map(() => ctx.checkpoint)),
    utf8('prompt_set', run.promptSets),
    float64('mean_loss', run.promptSets.map((p) => 6 - 2.5 * progress - (trained(ctx) ? 0.8 : 0) + (p === 'natural' ? 0.5 : 0))),
    float64('icl_score', run.promptSets.map((p) => (trained(ctx) ? -1.2 : -0.1) * (p === 'natural' ? 0.5 : 1))),
  ];
}

function checkpointColumns(ctx: Context, sha: string): Column[] {
  const { run } = ctx;
  return [
    utf8('run', [run.name]),
    int64('step', [ctx.step]),
    int64('tokens_seen', [ctx.step === null ? null : ctx.step * 4096]),
    utf8('path', [ctx.checkpoint]),
    utf8('sha256', [sha]),
    int32('n_layers', [run.nLayers]),
    int32('n_heads', [run.nHeads]),
    int32('d_model', [run.dModel]),
    int32('d_head', [run.dModel / run.nHeads]),
    int32('d_vocab', [100]),
    int32('n_ctx', [64]),
    utf8('normalization_type', [run.nLayers > 1 ? 'LN' : null]),
    utf8('positional_embedding_type', [run.nLayers > 1 ? 'standard' : 'shortformer']),
    float64('load_seconds', [0.01]),
    float64('forward_seconds', [0.02]),
    float64('weight_seconds', [0.005]),
    float64('write_seconds', [0.001]),
  ];
}

function promptColumns(run: SampleRun): Column[] {
  const rows = run.promptSets.flatMap((promptSet) => [0, 1].map((seq) => ({ promptSet, seq })));
  return [
    utf8('run', rows.map(() => run.name)),
    utf8('prompt_set', rows.map((r) => r.promptSet)),
    int32('seq', rows.map((r) => r.seq)),
    {
      field: new Field('tokens', new List(new Field('item', new Int32(), false)), false),
      values: rows.map((r) => [0, 10 + r.seq, 11, 12, 10 + r.seq, 11, 12]),
    },
  ];
}

interface Column {
  field: Field;
  values: unknown[];
}

// Nullability follows TABLES.md: only the columns marked `?` there are nullable.
const NULLABLE = new Set(['step', 'tokens_seen', 'prefix_matching', 'duplicate_token', 'previous_token', 'copying', 'label', 'normalization_type', 'mean_loss', 'icl_score']);

function utf8(name: string, values: (string | null)[]): Column {
  return { field: new Field(name, new Utf8(), NULLABLE.has(name)), values };
}
function int32(name: string, values: number[]): Column {
  return { field: new Field(name, new Int32(), false), values };
}
function int64(name: string, values: (number | null)[]): Column {
  return { field: new Field(name, new Int64(), NULLABLE.has(name)), values: values.map((v) => (v === null ? null : BigInt(v))) };
}
function float64(name: string, values: (number | null)[]): Column {
  return { field: new Field(name, new Float64(), NULLABLE.has(name)), values };
}

/**
 * Arrow IPC file with exactly the given fields: each column is built with its explicit
 * type, since `tableFromArrays` would make strings dictionary-encoded.
 */
function writeArrow(file: string, columns: Column[]): void {
  const length = columns[0].values.length;
  const schema = new Schema(columns.map((c) => c.field));
  const children = columns.map((c) => vectorFromArray(c.values, c.field.type as DataType).data[0]);
  const batch = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length, nullCount: 0, children }));
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, tableToIPC(new Table(batch), 'file'));
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
