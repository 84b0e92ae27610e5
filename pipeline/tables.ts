/**
 * The output tables (TABLES.md), written down once as column lists (`COLUMNS`, the score
 * columns from the metric registry) from which the Arrow schemas, TABLES.md and every
 * reader derive, and the builders that turn one checkpoint's scores into rows of them.
 *
 * Columns are assembled from typed arrays with explicit Arrow types: strings are plain
 * Utf8 (apache-arrow's `tableFromArrays` would make them dictionaries, which some readers
 * surface as categoricals), counts that can pass 2^31 are Int64 from BigInt64Array, and a
 * missing score is a null, never a NaN. Row order is fixed by the loops below, so the same
 * scores always give byte-identical files.
 */
import {
  Bool, DataType, Field, Float64, Int32, Int64, List, makeData, RecordBatch, Schema, Struct, Table, Utf8,
  util, type Data,
} from 'apache-arrow';
import { MODEL_CONFIG_FIELDS, type ModelConfig } from '../src/model/config.ts';
import { HeadsweepError } from '../src/errors.ts';
import {
  CHECKPOINT_METRICS, HEAD_METRICS, METRICS, headScores, metricSpec, type MetricName,
} from '../src/metrics/registry.ts';
import type { ColumnSpec, ColumnType } from '../src/metrics/spec.ts';
import type { PromptSet } from '../src/prompts/types.ts';
import type { CheckpointScores } from '../src/score.ts';

export const TABLE_NAMES = ['heads', 'composition', 'checkpoint_scores', 'checkpoints', 'prompts', 'errors'] as const;
export type TableName = (typeof TABLE_NAMES)[number];

/**
 * The version of the tables' schemas, recorded in every manifest (`tables_version`);
 * raise it with any column added, and add the change to TABLES.md's list of versions.
 * 1: before the field was written. 2: `heads` gains `first_token`; `checkpoints` gains
 * the model config fields past `positional_embedding_type` and `model_config`. Readers
 * take the files of any earlier version, a column it lacks being null (`asCurrentSchema`),
 * so a column added later must be nullable.
 */
export const TABLES_VERSION = 2;

export type { ColumnSpec, ColumnType };

const column = (name: string, type: ColumnType, nullable: boolean, meaning: string): ColumnSpec => ({ name, type, nullable, meaning });

const RUN = column('run', 'Utf8', false, 'the run the checkpoint belongs to (config `checkpoints[].run`)');
const STEP = column('step', 'Int64', true, 'training step, from the checkpoint\'s metadata or `step_regex`; null when unknown');
const TOKENS_SEEN = column('tokens_seen', 'Int64', true, 'training tokens seen, from the checkpoint\'s metadata; null when unknown');
const CHECKPOINT = column('checkpoint', 'Utf8', false, 'the checkpoint path as the config\'s glob resolved it');
const PROMPT_SET = column('prompt_set', 'Utf8', false, 'the prompt set the scores were measured on');

/** A score's column: named after the metric, Float64, null where it was not computed. */
function scoreColumn(name: MetricName): ColumnSpec {
  const spec = metricSpec(name);
  const range = spec.range === null ? '' : `, in [${spec.range.join(', ')}]`;
  const repeats = spec.kind === 'weights'
    ? '; a weight score, so the same value repeats for every prompt set'
    : spec.per === 'checkpoint' ? '; one value per checkpoint, repeated on each of its prompt sets\' rows' : '';
  const nullWhen = 'nullWhen' in spec ? ` or ${spec.nullWhen}` : '';
  return column(name, 'Float64', true, `${spec.summary}${range} (${spec.definedIn})${repeats}; null when not computed${nullWhen}`);
}

/**
 * The `checkpoints` columns of the model config, one per field of MODEL_CONFIG_FIELDS
 * (the `satisfies` makes a new field a type error here until it has its column). Fields
 * that tables version 1 did not have are nullable: null in its files.
 */
const CONFIG_COLUMNS = {
  n_layers: ['Int32', false, 'layers'],
  n_heads: ['Int32', false, 'attention heads per layer'],
  d_model: ['Int32', false, 'width of the residual stream'],
  d_head: ['Int32', false, 'width of each head'],
  d_vocab: ['Int32', false, 'vocabulary size'],
  n_ctx: ['Int32', false, 'context length'],
  attn_only: ['Bool', true, 'true when the model has no MLPs'],
  d_mlp: ['Int32', true, 'width of the MLPs; null for attention-only models'],
  act_fn: ['Utf8', true, 'the MLPs\' activation (`gelu_new`, `gelu`, `gelu_fast`, `relu`, `silu`, ...); null for attention-only models'],
  gated_mlp: ['Bool', true, 'whether the MLPs are gated (`W_gate`)'],
  parallel_attn_mlp: ['Bool', true, 'whether attention and MLP read the same residual stream (parallel blocks)'],
  normalization_type: ['Utf8', true, '`LN`, `LNPre`, `RMS`, `RMSPre`, or null for no norm'],
  positional_embedding_type: ['Utf8', false, '`standard`, `shortformer` or `rotary`'],
  rotary_dim: ['Int32', true, 'dimensions of each head that rotate; null unless rotary'],
  rotary_base: ['Float64', true, 'the rotary frequency base'],
  rotary_adjacent_pairs: ['Bool', true, 'whether rotary rotates adjacent pairs (2i, 2i+1) rather than halves'],
  n_key_value_heads: ['Int32', true, 'key/value heads of grouped-query attention; null when every query head has its own'],
  scale_attn_by_inverse_layer_idx: ['Bool', true, 'whether layer l divides its attention scores by l + 1 as well'],
  eps: ['Float64', true, 'the norms\' epsilon'],
  bos_token_id: ['Int32', true, 'the BOS id prompts get; null for none'],
} as const satisfies Record<(typeof MODEL_CONFIG_FIELDS)[number], readonly [ColumnType, boolean, string]>;

/**
 * Every table's columns in order, with what each holds: the schemas below, TABLES.md
 * (`npm run docs`) and every reader derive from this. Score columns come from the metric
 * registry, in its order.
 */
export const COLUMNS: Record<TableName, readonly ColumnSpec[]> = {
  heads: [
    RUN, STEP, TOKENS_SEEN, CHECKPOINT, PROMPT_SET,
    column('layer', 'Int32', false, '0-based layer'),
    column('head', 'Int32', false, '0-based head within the layer'),
    ...HEAD_METRICS.map(scoreColumn),
    column('label', 'Utf8', true,
      'the first `classify` rule the head matches on this prompt set\'s scores (`induction`, `previous_token`, ...); null when none does'),
  ],
  composition: [RUN, STEP, CHECKPOINT, ...METRICS.flatMap((m) => (m.per === 'head_pair' ? m.columns : []))],
  checkpoint_scores: [RUN, STEP, CHECKPOINT, PROMPT_SET, ...CHECKPOINT_METRICS.map(scoreColumn)],
  checkpoints: [
    RUN, STEP, TOKENS_SEEN,
    column('path', 'Utf8', false, 'the checkpoint path (same as `checkpoint` in the other tables)'),
    column('sha256', 'Utf8', false, 'hex sha256 of the file'),
    ...MODEL_CONFIG_FIELDS.map((f) => column(f, CONFIG_COLUMNS[f][0], CONFIG_COLUMNS[f][1], CONFIG_COLUMNS[f][2])),
    column('model_config', 'Utf8', true, 'the resolved model config as JSON, every field (the columns above and any later ones)'),
    column('load_seconds', 'Float64', false, 'wall-clock seconds spent loading the checkpoint'),
    column('forward_seconds', 'Float64', false, 'seconds on forward passes and the scores that need them'),
    column('weight_seconds', 'Float64', false, 'seconds on the weight-based scores'),
    column('write_seconds', 'Float64', false, 'seconds writing its tables'),
  ],
  prompts: [
    RUN,
    column('prompt_set', 'Utf8', false, 'prompt set name'),
    column('seq', 'Int32', false, '0-based index of the sequence within its prompt set'),
    column('tokens', 'List<Int32>', false, 'the token ids exactly as fed to the model (BOS included when prepended)'),
  ],
  errors: [
    RUN,
    column('path', 'Utf8', false, 'the file that failed'),
    column('stage', 'Utf8', false, 'where it failed: `load`, `forward`, `score`, `write`, `worker`, ...'),
    column('message', 'Utf8', false, 'what went wrong, naming the file, tensor key or shape at fault'),
  ],
};

/** `prompts.tokens`: token ids of one sequence; items are never null. */
const TOKEN_LIST = new List(new Field('item', new Int32(), false));

function arrowType(type: ColumnType): DataType {
  switch (type) {
    case 'Utf8': return new Utf8();
    case 'Int32': return new Int32();
    case 'Int64': return new Int64();
    case 'Float64': return new Float64();
    case 'Bool': return new Bool();
    case 'List<Int32>': return TOKEN_LIST;
  }
}

export const SCHEMAS = Object.fromEntries(TABLE_NAMES.map((name) => [
  name, new Schema(COLUMNS[name].map((c) => new Field(c.name, arrowType(c.type), c.nullable))),
])) as Record<TableName, Schema>;

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
  // A weight score's one array fills every prompt set's block.
  const tiled = (metric: (typeof HEAD_METRICS)[number]): Float64Array => {
    const out = new Float64Array(n).fill(NaN);
    sets.forEach((set, p) => {
      const values = headScores(scores, p, metric);
      if (values === undefined) return;
      if (values.length !== perSet) {
        throw new HeadsweepError(
          `${info.checkpoint}: ${metric} for prompt set '${set.promptSet}' has ${values.length} values, ` +
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
  return tableOf('heads', n, {
    run: utf8Column(repeat(info.run, n)),
    step: int64Column(repeat(info.step, n)),
    tokens_seen: int64Column(repeat(info.tokensSeen, n)),
    checkpoint: utf8Column(repeat(info.checkpoint, n)),
    prompt_set: utf8Column(sets.flatMap((s) => repeat(s.promptSet, perSet))),
    layer: int32Column(layer),
    head: int32Column(head),
    ...Object.fromEntries(HEAD_METRICS.map((m) => [m, float64Column(tiled(m))])),
    label: utf8Column(label),
  });
}

function checkpointScoresTable(info: CheckpointRowInfo, scores: CheckpointScores): Table {
  const sets = scores.promptSets;
  const n = sets.length;
  // A per-checkpoint score: the same value on every prompt set's row, as copying repeats in heads.
  const values = (m: (typeof CHECKPOINT_METRICS)[number]): Float64Array => {
    const spec = metricSpec(m);
    return spec.per === 'prompt_set'
      ? Float64Array.from(sets, (s) => s[spec.name] ?? NaN)
      : new Float64Array(n).fill(scores[spec.name] ?? NaN);
  };
  return tableOf('checkpoint_scores', n, {
    run: utf8Column(repeat(info.run, n)),
    step: int64Column(repeat(info.step, n)),
    checkpoint: utf8Column(repeat(info.checkpoint, n)),
    prompt_set: utf8Column(sets.map((s) => s.promptSet)),
    ...Object.fromEntries(CHECKPOINT_METRICS.map((m) => [m, float64Column(values(m))])),
  });
}

function compositionTable(info: CheckpointRowInfo, scores: CheckpointScores): Table {
  const c = scores.composition!;
  const n = c.score.length;
  return tableOf('composition', n, {
    run: utf8Column(repeat(info.run, n)),
    step: int64Column(repeat(info.step, n)),
    checkpoint: utf8Column(repeat(info.checkpoint, n)),
    src_layer: int32Column(c.src_layer),
    src_head: int32Column(c.src_head),
    dst_layer: int32Column(c.dst_layer),
    dst_head: int32Column(c.dst_head),
    kind: utf8Column(c.kind),
    score: float64Column(c.score),
    baseline: float64Column(new Float64Array(n).fill(c.baseline)),
  });
}

/**
 * The resolved model config as JSON: the fields in MODEL_CONFIG_FIELDS order, then any
 * others sorted, so equal configs always give equal text.
 */
export function modelConfigJson(c: ModelConfig): string {
  const known: readonly string[] = MODEL_CONFIG_FIELDS;
  const rest = Object.keys(c).filter((k) => !known.includes(k)).sort();
  const record = c as unknown as Record<string, unknown>;
  return JSON.stringify(Object.fromEntries([...known, ...rest].map((k) => [k, record[k] ?? null])));
}

/** The checkpoint's one `checkpoints` row: its model config and the seconds each stage took. */
export function checkpointsTable(info: CheckpointRowInfo): Table {
  const c = info.config;
  const float = (v: number) => float64Column(Float64Array.of(v));
  return tableOf('checkpoints', 1, {
    run: utf8Column([info.run]),
    step: int64Column([info.step]),
    tokens_seen: int64Column([info.tokensSeen]),
    path: utf8Column([info.checkpoint]),
    sha256: utf8Column([info.sha256]),
    ...Object.fromEntries(MODEL_CONFIG_FIELDS.map((f) => [f, scalarColumn(CONFIG_COLUMNS[f][0], c[f])])),
    model_config: utf8Column([modelConfigJson(c)]),
    load_seconds: float(info.seconds.load),
    forward_seconds: float(info.seconds.forward),
    weight_seconds: float(info.seconds.weights),
    write_seconds: float(info.seconds.write),
  });
}

/** The token ids of every prompt sequence of a run, one row per (prompt set, sequence). */
export function promptsTable(run: string, promptSets: PromptSet[]): Table {
  const sequences = promptSets.flatMap((s) => s.sequences);
  const n = sequences.length;
  return tableOf('prompts', n, {
    run: utf8Column(repeat(run, n)),
    prompt_set: utf8Column(promptSets.flatMap((s) => repeat(s.name, s.sequences.length))),
    seq: int32Column(Int32Array.from(promptSets.flatMap((s) => s.sequences.map((_, i) => i)))),
    tokens: listInt32Column(sequences),
  });
}

/** One row per checkpoint (or other input) that failed, with the stage it failed in. */
export function errorsTable(rows: { run: string; path: string; stage: string; message: string }[]): Table {
  return tableOf('errors', rows.length, {
    run: utf8Column(rows.map((r) => r.run)),
    path: utf8Column(rows.map((r) => r.path)),
    stage: utf8Column(rows.map((r) => r.stage)),
    message: utf8Column(rows.map((r) => r.message)),
  });
}

/**
 * Assembles columns, by name, into a one-batch table of `SCHEMAS[name]`, checking that
 * every column is there with its type and that required columns hold no nulls (a NaN
 * composition score would otherwise turn into a null the schema promises never to have).
 */
function tableOf(name: TableName, length: number, columns: Record<string, Data>): Table {
  const schema = SCHEMAS[name];
  const extra = Object.keys(columns).filter((c) => !schema.fields.some((f) => f.name === c));
  if (extra.length > 0) {
    throw new HeadsweepError(`table ${name}: no column named ${extra.join(', ')}`, { stage: 'write', key: `${name}.${extra[0]}` });
  }
  const children = schema.fields.map((field) => {
    const column = columns[field.name];
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
    return column;
  });
  const rows = makeData({ type: new Struct(schema.fields), length, children });
  return new Table(schema, [new RecordBatch(schema, rows)]);
}

/**
 * A table file's rows as `SCHEMAS[name]`, whatever tables version wrote it: columns are
 * matched by name, and a nullable column the file lacks (added in a later version) is all
 * null. A column of another type, a missing required column or a column the schema does
 * not know (a newer headsweep's file) is an error naming the file.
 */
export function asCurrentSchema(data: Table, name: TableName, file: string): Table {
  const schema = SCHEMAS[name];
  const fail = (reason: string, key: string) => new HeadsweepError(
    `${file}: ${reason}; its columns (${describeSchema(data.schema)}) do not fit the ${name} table of TABLES.md, ` +
      `tables version ${TABLES_VERSION} (${describeSchema(schema)})`,
    { stage: 'load', file, key: `${name}.${key}` },
  );
  const unknown = data.schema.fields.filter((f) => !schema.fields.some((g) => g.name === f.name));
  if (unknown.length > 0) throw fail(`column '${unknown[0].name}' is not one of the table's (a file of a newer headsweep?)`, unknown[0].name);
  const found = schema.fields.map((field) => {
    const at = data.schema.fields.findIndex((f) => f.name === field.name);
    if (at < 0) {
      if (!field.nullable) throw fail(`the required column '${field.name}' is missing`, field.name);
      return -1;
    }
    const have = data.schema.fields[at];
    // The file's type goes first: readers type List children as the Int_ base class, which
    // compares equal to Int32 only in this direction.
    if (!util.compareTypes(have.type, field.type) || (have.nullable && !field.nullable)) {
      throw fail(`column '${field.name}' is ${have.type}${have.nullable ? '?' : ''}, not ${field.type}${field.nullable ? '?' : ''}`, field.name);
    }
    return at;
  });
  if (found.every((at, i) => at === i) && data.schema.fields.length === schema.fields.length) return data;
  const batches = data.batches.map((batch) => {
    const children = schema.fields.map((field, i) => (found[i] < 0 ? nullColumn(field.type, batch.numRows) : batch.data.children[found[i]]));
    return new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: batch.numRows, children }));
  });
  return new Table(schema, batches);
}

export function describeSchema(schema: Schema): string {
  return schema.fields.map((f) => `${f.name}: ${f.type}${f.nullable ? '?' : ''}`).join(', ');
}

/** A column of `length` nulls (values zeroed, so equal tables give equal bytes). */
function nullColumn(type: DataType, length: number): Data {
  const nulls = { nullBitmap: new Uint8Array(Math.ceil(length / 8)), nullCount: length };
  if (DataType.isUtf8(type)) return makeData({ type, length, valueOffsets: new Int32Array(length + 1), data: new Uint8Array(0), ...nulls });
  if (DataType.isBool(type)) return makeData({ type, length, data: new Uint8Array(Math.ceil(length / 8)), ...nulls });
  if (DataType.isInt(type) || DataType.isFloat(type)) return makeData({ type, length, data: new type.ArrayType(length), ...nulls } as never);
  throw new HeadsweepError(`no null column of type ${type}`, { stage: 'load' });
}

/** One value as a one-row column of `type`; null stays null. */
function scalarColumn(type: ColumnType, value: string | number | boolean | null): Data {
  switch (type) {
    case 'Utf8': return utf8Column([value as string | null]);
    case 'Int32': return nullableInt32Column([value as number | null]);
    case 'Int64': return int64Column([value as number | null]);
    case 'Float64': return float64Column(Float64Array.of((value as number | null) ?? NaN));
    case 'Bool': return boolColumn([value as boolean | null]);
    case 'List<Int32>': throw new HeadsweepError('a token list is not a scalar', { stage: 'write' });
  }
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

function nullableInt32Column(values: readonly (number | null)[]): Data<Int32> {
  return makeData({
    type: new Int32(), length: values.length, data: Int32Array.from(values, (v) => v ?? 0),
    ...validity(values.length, (i) => values[i] !== null),
  });
}

/** Bool, bit-packed as Arrow stores it (bit i of the bytes = row i); null stays null. */
function boolColumn(values: readonly (boolean | null)[]): Data<Bool> {
  const data = new Uint8Array(Math.ceil(values.length / 8));
  values.forEach((v, i) => { if (v === true) data[i >> 3] |= 1 << (i & 7); });
  return makeData({ type: new Bool(), length: values.length, data, ...validity(values.length, (i) => values[i] !== null) });
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
