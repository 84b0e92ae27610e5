/**
 * The output tables (TABLES.md), written down once as Arrow schemas, and the builders
 * that turn one checkpoint's scores into rows of them.
 *
 * Columns are assembled from typed arrays with explicit Arrow types: strings are plain
 * Utf8 (apache-arrow's `tableFromArrays` would make them dictionaries, which some readers
 * surface as categoricals), counts that can pass 2^31 are Int64 from BigInt64Array, and a
 * missing score is a null, never a NaN. Row order is fixed by the loops below, so the same
 * scores always give byte-identical files.
 */
import {
  Field, Float64, Int32, Int64, List, makeData, RecordBatch, Schema, Struct, Table, Utf8,
  util, type Data, type DataType,
} from 'apache-arrow';
import type { ModelConfig } from '../src/model/config.ts';
import { HeadsweepError } from '../src/errors.ts';
import type { PromptSet } from '../src/prompts/types.ts';
import type { CheckpointScores } from '../src/score.ts';

export const TABLE_NAMES = ['heads', 'composition', 'checkpoint_scores', 'checkpoints', 'prompts', 'errors'] as const;
export type TableName = (typeof TABLE_NAMES)[number];

const required = <T extends DataType>(name: string, type: T) => new Field<T>(name, type, false);
const nullable = <T extends DataType>(name: string, type: T) => new Field<T>(name, type, true);
/** `prompts.tokens`: token ids of one sequence; items are never null. */
const TOKEN_LIST = new List(required('item', new Int32()));

export const SCHEMAS: Record<TableName, Schema> = {
  heads: new Schema([
    required('run', new Utf8()),
    nullable('step', new Int64()),
    nullable('tokens_seen', new Int64()),
    required('checkpoint', new Utf8()),
    required('prompt_set', new Utf8()),
    required('layer', new Int32()),
    required('head', new Int32()),
    nullable('prefix_matching', new Float64()),
    nullable('duplicate_token', new Float64()),
    nullable('previous_token', new Float64()),
    nullable('copying', new Float64()),
    nullable('label', new Utf8()),
  ]),
  composition: new Schema([
    required('run', new Utf8()),
    nullable('step', new Int64()),
    required('checkpoint', new Utf8()),
    required('src_layer', new Int32()),
    required('src_head', new Int32()),
    required('dst_layer', new Int32()),
    required('dst_head', new Int32()),
    required('kind', new Utf8()),
    required('score', new Float64()),
    required('baseline', new Float64()),
  ]),
  checkpoint_scores: new Schema([
    required('run', new Utf8()),
    nullable('step', new Int64()),
    required('checkpoint', new Utf8()),
    required('prompt_set', new Utf8()),
    nullable('mean_loss', new Float64()),
    nullable('icl_score', new Float64()),
    nullable('bigram_kl', new Float64()),
  ]),
  checkpoints: new Schema([
    required('run', new Utf8()),
    nullable('step', new Int64()),
    nullable('tokens_seen', new Int64()),
    required('path', new Utf8()),
    required('sha256', new Utf8()),
    required('n_layers', new Int32()),
    required('n_heads', new Int32()),
    required('d_model', new Int32()),
    required('d_head', new Int32()),
    required('d_vocab', new Int32()),
    required('n_ctx', new Int32()),
    nullable('normalization_type', new Utf8()),
    required('positional_embedding_type', new Utf8()),
    required('load_seconds', new Float64()),
    required('forward_seconds', new Float64()),
    required('weight_seconds', new Float64()),
    required('write_seconds', new Float64()),
  ]),
  prompts: new Schema([
    required('run', new Utf8()),
    required('prompt_set', new Utf8()),
    required('seq', new Int32()),
    required('tokens', TOKEN_LIST),
  ]),
  errors: new Schema([
    required('run', new Utf8()),
    required('path', new Utf8()),
    required('stage', new Utf8()),
    required('message', new Utf8()),
  ]),
};

/** What the tables say about a checkpoint besides its scores. */
export interface CheckpointRowInfo {
  run: string;
  step: number | null;
  tokensSeen: number | null;
  /** The path as the config's glob resolved it. */
  checkpoint: string;
  /** Hex sha256 of the checkpoint file. */
  sha256: string;
  config: ModelConfig;
  seconds: { load: number; forward: number; weights: number; write: number };
}

/**
 * The step and bytes part of a checkpoint's file stem: `step-<step, 9 digits>-<sha256[:12]>`,
 * or `step-unknown-<sha256[:12]>`, so a folder listing sorts by training step. The sweep
 * adds the source (`fileStem` in state.ts), so two paths never share a file.
 */
export function checkpointId(step: number | null, sha256: string): string {
  if (!/^[0-9a-f]{12}/i.test(sha256)) {
    throw new HeadsweepError(`checkpoint id: '${sha256}' is not a hex sha256`, { stage: 'write', key: 'sha256' });
  }
  const sha12 = sha256.slice(0, 12).toLowerCase();
  if (step === null) return `step-unknown-${sha12}`;
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new HeadsweepError(`checkpoint id: step ${step} is not a non-negative integer`, { stage: 'write', key: 'step' });
  }
  return `step-${String(step).padStart(9, '0')}-${sha12}`;
}

/**
 * One checkpoint's rows: `heads` (prompt set × layer × head), `composition`,
 * `checkpoint_scores` (one row per prompt set; bigram_kl repeats on each) and
 * `checkpoints` (one row). A table is
 * left out when the scores hold nothing for it (no prompt sets, no composition).
 *
 * labels: [promptSetIndex][layer * n_heads + head], null where a head has no label.
 */
export function checkpointTables(
  info: CheckpointRowInfo,
  scores: CheckpointScores,
  labels: (string | null)[][],
): Partial<Record<TableName, Table>> {
  const tables: Partial<Record<TableName, Table>> = {};
  if (scores.promptSets.length > 0) {
    tables.heads = headsTable(info, scores, labels);
    tables.checkpoint_scores = checkpointScoresTable(info, scores);
  }
  if (scores.composition !== undefined) tables.composition = compositionTable(info, scores);
  tables.checkpoints = checkpointsTable(info);
  return tables;
}

function headsTable(info: CheckpointRowInfo, scores: CheckpointScores, labels: (string | null)[][]): Table {
  const perSet = scores.nLayers * scores.nHeads;
  const sets = scores.promptSets;
  const n = sets.length * perSet;
  const layer = new Int32Array(n);
  const head = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    layer[i] = Math.floor((i % perSet) / scores.nHeads);
    head[i] = i % scores.nHeads;
  }
  // Per-head arrays are [n_layers * n_heads]; a prompt set's block of rows is that array.
  const tiled = (metric: string, perSetValues: (Float64Array | undefined)[]): Float64Array => {
    const out = new Float64Array(n).fill(NaN);
    perSetValues.forEach((values, p) => {
      if (values === undefined) return;
      if (values.length !== perSet) {
        throw new HeadsweepError(
          `${info.checkpoint}: ${metric} for prompt set '${sets[p].promptSet}' has ${values.length} values, ` +
            `expected n_layers * n_heads = ${scores.nLayers} * ${scores.nHeads} = ${perSet}`,
          { stage: 'write', file: info.checkpoint, key: metric },
        );
      }
      out.set(values, p * perSet);
    });
    return out;
  };
  const label: (string | null)[] = [];
  sets.forEach((_, p) => {
    for (let k = 0; k < perSet; k++) label.push(labels[p]?.[k] ?? null);
  });
  return tableOf('heads', n, [
    utf8Column(repeat(info.run, n)),
    int64Column(repeat(info.step, n)),
    int64Column(repeat(info.tokensSeen, n)),
    utf8Column(repeat(info.checkpoint, n)),
    utf8Column(sets.flatMap((s) => repeat(s.promptSet, perSet))),
    int32Column(layer),
    int32Column(head),
    float64Column(tiled('prefix_matching', sets.map((s) => s.prefix_matching))),
    float64Column(tiled('duplicate_token', sets.map((s) => s.duplicate_token))),
    float64Column(tiled('previous_token', sets.map((s) => s.previous_token))),
    // Copying is a weight score: the same values repeat in every prompt set's block.
    float64Column(tiled('copying', sets.map(() => scores.copying))),
    utf8Column(label),
  ]);
}

function checkpointScoresTable(info: CheckpointRowInfo, scores: CheckpointScores): Table {
  const sets = scores.promptSets;
  const n = sets.length;
  return tableOf('checkpoint_scores', n, [
    utf8Column(repeat(info.run, n)),
    int64Column(repeat(info.step, n)),
    utf8Column(repeat(info.checkpoint, n)),
    utf8Column(sets.map((s) => s.promptSet)),
    float64Column(Float64Array.from(sets, (s) => s.mean_loss ?? NaN)),
    float64Column(Float64Array.from(sets, (s) => s.icl_score ?? NaN)),
    // A per-checkpoint score: the same value on every prompt set's row, as copying repeats in heads.
    float64Column(new Float64Array(n).fill(scores.bigram_kl ?? NaN)),
  ]);
}

function compositionTable(info: CheckpointRowInfo, scores: CheckpointScores): Table {
  const c = scores.composition!;
  const n = c.score.length;
  return tableOf('composition', n, [
    utf8Column(repeat(info.run, n)),
    int64Column(repeat(info.step, n)),
    utf8Column(repeat(info.checkpoint, n)),
    int32Column(c.src_layer),
    int32Column(c.src_head),
    int32Column(c.dst_layer),
    int32Column(c.dst_head),
    utf8Column(c.kind),
    float64Column(c.score),
    float64Column(new Float64Array(n).fill(c.baseline)),
  ]);
}

/** The checkpoint's one `checkpoints` row: its model config and the seconds each stage took. */
export function checkpointsTable(info: CheckpointRowInfo): Table {
  const c = info.config;
  const int = (v: number) => int32Column(Int32Array.of(v));
  const float = (v: number) => float64Column(Float64Array.of(v));
  return tableOf('checkpoints', 1, [
    utf8Column([info.run]),
    int64Column([info.step]),
    int64Column([info.tokensSeen]),
    utf8Column([info.checkpoint]),
    utf8Column([info.sha256]),
    int(c.n_layers), int(c.n_heads), int(c.d_model), int(c.d_head), int(c.d_vocab), int(c.n_ctx),
    utf8Column([c.normalization_type]),
    utf8Column([c.positional_embedding_type]),
    float(info.seconds.load),
    float(info.seconds.forward),
    float(info.seconds.weights),
    float(info.seconds.write),
  ]);
}

/** The token ids of every prompt sequence of a run, one row per (prompt set, sequence). */
export function promptsTable(run: string, promptSets: PromptSet[]): Table {
  const sequences = promptSets.flatMap((s) => s.sequences);
  const n = sequences.length;
  return tableOf('prompts', n, [
    utf8Column(repeat(run, n)),
    utf8Column(promptSets.flatMap((s) => repeat(s.name, s.sequences.length))),
    int32Column(Int32Array.from(promptSets.flatMap((s) => s.sequences.map((_, i) => i)))),
    listInt32Column(sequences),
  ]);
}

/** One row per checkpoint (or other input) that failed, with the stage it failed in. */
export function errorsTable(rows: { run: string; path: string; stage: string; message: string }[]): Table {
  return tableOf('errors', rows.length, [
    utf8Column(rows.map((r) => r.run)),
    utf8Column(rows.map((r) => r.path)),
    utf8Column(rows.map((r) => r.stage)),
    utf8Column(rows.map((r) => r.message)),
  ]);
}

/**
 * Assembles columns into a one-batch table of `SCHEMAS[name]`, checking each column's type
 * and that required columns hold no nulls (a NaN composition score would otherwise turn
 * into a null the schema promises never to have).
 */
function tableOf(name: TableName, length: number, columns: Data[]): Table {
  const schema = SCHEMAS[name];
  schema.fields.forEach((field, i) => {
    const column = columns[i];
    if (column === undefined || column.length !== length || !util.compareTypes(field.type, column.type)) {
      throw new HeadsweepError(
        `table ${name}: column '${field.name}' should be ${field.type} × ${length} rows, ` +
          `got ${column === undefined ? 'nothing' : `${column.type} × ${column.length}`}`,
        { stage: 'write', key: `${name}.${field.name}` },
      );
    }
    if (!field.nullable && column.nullCount > 0) {
      throw new HeadsweepError(
        `table ${name}: column '${field.name}' is required but ${column.nullCount} of ${length} values are missing (null or NaN)`,
        { stage: 'write', key: `${name}.${field.name}` },
      );
    }
  });
  const rows = makeData({ type: new Struct(schema.fields), length, children: columns });
  return new Table(schema, [new RecordBatch(schema, rows)]);
}

function repeat<T>(value: T, n: number): T[] {
  return new Array<T>(n).fill(value);
}

/** Validity bitmap (bit i set = row i present), or none when every row is present. */
function validity(n: number, present: (i: number) => boolean): { nullBitmap?: Uint8Array; nullCount: number } {
  const bitmap = new Uint8Array(Math.ceil(n / 8));
  let nullCount = 0;
  for (let i = 0; i < n; i++) {
    if (present(i)) bitmap[i >> 3] |= 1 << (i & 7);
    else nullCount++;
  }
  return nullCount === 0 ? { nullCount } : { nullBitmap: bitmap, nullCount };
}

function utf8Column(values: readonly (string | null)[]): Data<Utf8> {
  const encoder = new TextEncoder();
  const encoded = values.map((v) => encoder.encode(v ?? ''));
  const valueOffsets = new Int32Array(values.length + 1);
  encoded.forEach((bytes, i) => { valueOffsets[i + 1] = valueOffsets[i] + bytes.length; });
  const data = new Uint8Array(valueOffsets[values.length]);
  encoded.forEach((bytes, i) => data.set(bytes, valueOffsets[i]));
  return makeData({
    type: new Utf8(), length: values.length, valueOffsets, data,
    ...validity(values.length, (i) => values[i] !== null),
  });
}

function int32Column(values: Int32Array): Data<Int32> {
  return makeData({ type: new Int32(), length: values.length, data: values });
}

/** Int64 from numbers (steps, token counts pass 2^31); null stays null. */
function int64Column(values: readonly (number | null)[]): Data<Int64> {
  const data = BigInt64Array.from(values, (v) => BigInt(v ?? 0));
  return makeData({
    type: new Int64(), length: values.length, data,
    ...validity(values.length, (i) => values[i] !== null),
  });
}

/** Float64 with NaN written as null (TABLES.md: missing values are nulls, never NaN). */
function float64Column(values: Float64Array): Data<Float64> {
  return makeData({
    type: new Float64(), length: values.length, data: values,
    ...validity(values.length, (i) => !Number.isNaN(values[i])),
  });
}

function listInt32Column(lists: readonly Int32Array[]): Data<List<Int32>> {
  const valueOffsets = new Int32Array(lists.length + 1);
  lists.forEach((l, i) => { valueOffsets[i + 1] = valueOffsets[i] + l.length; });
  const items = new Int32Array(valueOffsets[lists.length]);
  lists.forEach((l, i) => items.set(l, valueOffsets[i]));
  return makeData({ type: TOKEN_LIST, length: lists.length, valueOffsets, child: int32Column(items) });
}
