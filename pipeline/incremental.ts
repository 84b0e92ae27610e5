/**
 * Incremental sweeps: what work a checkpoint needs, decided from its stored state
 * (state.ts) and the keys of the current settings, and the scores of unchanged prompt
 * sets read back from its existing files when only some prompt sets need scoring.
 *
 * A checkpoint is identified by its run and path, its bytes (the sha256 of every file it
 * is read from, `Checkpoint.sha256`) and its step (all three make the file stem,
 * `fileStem` in state.ts). Its results are keyed by:
 *
 * - one key per prompt set, covering everything its `heads` and `checkpoint_scores`
 *   rows depend on but the per-checkpoint scores: the version of the score definitions
 *   (`SCORE_DEFINITIONS_VERSION`), the prompt set's spec as resolved by the config schema
 *   (defaults filled in), the sha256 of the token ids it became for the run's model, the
 *   metrics that appear in those rows (all but composition and bigram_kl; copying is
 *   among them because its values and the labels it feeds repeat in every prompt set's
 *   rows), the icl positions when icl_score is asked for, and the classify rules;
 * - one key for the scores computed once per checkpoint from its weights (`weights`):
 *   the composition table, and bigram_kl, whose value repeats on every checkpoint_scores
 *   row. It covers the definitions version, whether composition is asked for, and for
 *   bigram_kl the corpus file's sha256 and tokenizer; none when neither is asked for.
 *   A new corpus thus scores bigram_kl again with no forward pass.
 * - the tfjs backend that computed them, and the family conversion its weights were read
 *   through (`gpt2@1`, `Source.converter`), recorded beside the keys: another one means
 *   other numbers, so everything is scored again.
 *
 * The output formats are in no key: every format holds the same rows, so a format added
 * to the config is written from the files already there, and files of a format dropped
 * from it are left alone (until the checkpoint's rows change: then they would be stale).
 *
 * batch_size, workers, memory_budget_mb, retries and timeouts are in no key: they change
 * how fast numbers are computed, not the numbers.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { DataType, makeData, RecordBatch, Struct, Table, tableFromIPC, type Data, type Float64 } from 'apache-arrow';
import {
  METRICS, metricSpec, type HeadWeightsMetric, type MetricName, type MetricOfKind,
} from '../src/metrics/registry.ts';
import type { PromptSet } from '../src/prompts/types.ts';
import type { CheckpointScores, PromptSetScores } from '../src/score.ts';
import type { SweepConfig } from './config.ts';
import type { WorkReason } from './events.ts';
import { checkpointDigest } from '../src/checkpoint/checkpoint.ts';
import type { BigramCorpus, PlannedCheckpoint } from './plan.ts';
import { writeFileAtomic } from './sinks/atomic.ts';
import { OUTPUT_FORMATS, readTableFile, tableFileBytes, type OutputFormat } from './sinks/index.ts';
import { parquetTable } from './sinks/parquet.ts';
import { fileStem, isOldStem, sameStamps, stampFiles, storedConverter, storedStamps, type CheckpointState, type KeyedSet, type SourceStamp } from './state.ts';
import { checkpointId, type TableName } from './tables.ts';

/**
 * The version of what METRICS.md defines and how rows are built from scores. Raise it
 * with any change that alters a number or a label in the tables: every checkpoint is
 * then scored again on its next sweep.
 */
export const SCORE_DEFINITIONS_VERSION = 2;

/**
 * Scores computed once per checkpoint and keyed by the weights key, not by the prompt
 * sets': those that read no prompt set (weights, corpus), but for the per-head ones, whose
 * values and the labels they feed repeat in every prompt set's heads rows (copying).
 */
export const WEIGHTS_KEYED_METRICS: readonly MetricName[] = METRICS
  .filter((m) => (m.kind === 'weights' || m.kind === 'corpus') && m.per !== 'head')
  .map((m) => m.name);

export interface SettingsKeys {
  /** In config order; empty when no metric with values in heads or checkpoint_scores rows is asked for (no rows to key). */
  promptSets: KeyedSet[];
  /** Key of composition and bigram_kl; null when neither is asked for. */
  weights: string | null;
}

/** JSON with object keys sorted at every level, so equal values always give equal text. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}

function digest(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('hex');
}

/** sha256 over each sequence's length (uint32 LE) and its int32 LE token ids. */
function tokensDigest(set: PromptSet): string {
  const hash = createHash('sha256');
  const length = new Uint32Array(1);
  for (const seq of set.sequences) {
    length[0] = seq.length;
    hash.update(new Uint8Array(length.buffer));
    hash.update(new Uint8Array(seq.buffer, seq.byteOffset, seq.byteLength));
  }
  return hash.digest('hex');
}

/**
 * The keys of a run's results under `config`; `promptSets` are the run's built prompt
 * sets, in config order; `corpus` is the plan's (non-null when bigram_kl is asked for).
 */
export function settingsKeys(config: SweepConfig, promptSets: readonly PromptSet[], corpus: BigramCorpus | null): SettingsKeys {
  const metrics = [...config.metrics].sort();
  const rowMetrics = metrics.filter((m) => !WEIGHTS_KEYED_METRICS.includes(m));
  // Every metric but those of a table of their own (composition) has values in heads or checkpoint_scores rows.
  const hasRows = metrics.some((m) => metricSpec(m).per !== 'head_pair');
  const weightsKeyed = metrics.some((m) => WEIGHTS_KEYED_METRICS.includes(m));
  const bigram = metrics.includes('bigram_kl') ? { sha256: corpus!.sha256, tokenizer: corpus!.tokenizer } : null;
  return {
    promptSets: !hasRows ? [] : config.prompt_sets.map((spec, i) => ({
      name: spec.name,
      key: digest({
        definitions: SCORE_DEFINITIONS_VERSION,
        spec,
        tokens: tokensDigest(promptSets[i]),
        metrics: rowMetrics,
        icl: metrics.includes('icl_score') ? config.icl : null,
        classify: config.classify,
      }),
    })),
    weights: weightsKeyed ? digest({ definitions: SCORE_DEFINITIONS_VERSION, composition: metrics.includes('composition'), bigram }) : null,
  };
}

/** What one checkpoint needs done. */
export interface Work {
  reason: WorkReason;
  /** Prompt sets to score now, by name, in config order. */
  sets: string[];
  /** Whether the weights-keyed scores (composition, bigram_kl) are computed now. */
  weights: boolean;
  /** The stored entry whose files hold the rows that are kept; null when everything is computed. */
  keep: CheckpointState | null;
}

export type Decision =
  /**
   * Up to date. `restamp`: the file was touched (same bytes, new mtime), so its entry gets
   * the new stamp. `complete`: some of its files are missing in a format asked for (or
   * gone from disk), and are written from their other format (`completeFormats`).
   */
  | { kind: 'skip'; state: CheckpointState; restamp: boolean; complete: boolean }
  | { kind: 'work'; work: Work };

export interface Decided {
  decision: Decision;
  /** Size and mtime of each of its files before anything read them; null when one cannot be stat'ed (scoring will fail and say why). */
  stamp: SourceStamp | null;
  /**
   * The stem the stored entry's files take before anything else is done: set when they
   * carry the old stem of the same bytes and step and no other entry lists them.
   */
  renameTo: string | null;
}

function sameSets(a: readonly KeyedSet[], b: readonly KeyedSet[]): boolean {
  return a.length === b.length && a.every((s, i) => s.name === b[i].name && s.key === b[i].key);
}

/** Everything `keys` covers, computed afresh. */
export function allWork(reason: WorkReason, keys: SettingsKeys): Work {
  return { reason, sets: keys.promptSets.map((s) => s.name), weights: keys.weights !== null, keep: null };
}

function fullWork(reason: WorkReason, keys: SettingsKeys): Decision {
  return { kind: 'work', work: allWork(reason, keys) };
}

/** The identity `loadCheckpoint` will give, from the bytes on disk now; null when they cannot be read. */
function digestOf(ck: PlannedCheckpoint): string | null {
  try {
    return checkpointDigest(ck.file, { family: ck.readAs }).sha256;
  } catch {
    return null;
  }
}

/**
 * Decides from `prev` (the stored entry, or null) whether `ck` is up to date under
 * `keys`. Unchanged stamps (the size and mtime of every file the checkpoint is read from)
 * trust the stored sha256; otherwise the checkpoint is hashed. The backend is checked
 * later, by `withBackend`, once the pool has started one.
 */
export async function decide(
  out: string, ck: PlannedCheckpoint, keys: SettingsKeys, prev: CheckpointState | null,
  opts: { force: boolean; formats: readonly OutputFormat[]; listedElsewhere: (file: string) => boolean },
): Promise<Decided> {
  const stamp = stampFiles(ck.files);
  const whole = (reason: WorkReason): Decided => ({ decision: fullWork(reason, keys), stamp, renameTo: null });
  if (opts.force) return whole('force');
  if (prev === null) return whole('new');
  if (prev.status === 'failed' || stamp === null) return whole('retry');
  const touched = !sameStamps(stamp.file_stamps, storedStamps(prev, ck.files[0].name));
  const sha = touched ? digestOf(ck) : prev.sha256;
  if (sha === null) return whole('changed');
  if (storedConverter(prev) !== ck.source?.converter) return whole('settings');
  const stem = fileStem(ck, sha);
  let renameTo: string | null = null;
  if (stem !== prev.id) {
    // Files of before stems named their source are taken over when they are this
    // source's alone; shared ones (two paths, same bytes) hold another path's rows.
    const own = isOldStem(prev.id) && prev.id === checkpointId(ck.step, sha) && !prev.files.some(opts.listedElsewhere);
    if (!own) return whole('changed');
    renameTo = stem;
  }
  const decided = (decision: Decision): Decided => ({ decision, stamp, renameTo });
  const stems = [...filesByStem(out, prev.files).values()];
  // A table file deleted by hand in every format: nothing to write it from.
  if (stems.some((s) => s.present.length === 0)) return whole('settings');
  const complete = stems.some((s) => s.missing.length > 0 || opts.formats.some((f) => !s.present.includes(f)));
  if (sameSets(prev.prompt_sets, keys.promptSets) && prev.weights === keys.weights) {
    return decided({ kind: 'skip', state: prev, restamp: touched, complete });
  }
  const stored = new Set(prev.prompt_sets.map((s) => `${s.name}\u0000${s.key}`));
  const sets = keys.promptSets.filter((s) => !stored.has(`${s.name}\u0000${s.key}`)).map((s) => s.name);
  const weights = keys.weights !== null && keys.weights !== prev.weights;
  return decided({ kind: 'work', work: { reason: 'settings', sets, weights, keep: prev } });
}

/** A decision made before the backend was known, checked against it: other kernels mean other numbers, so everything is scored again. */
export function withBackend(d: Decision, keys: SettingsKeys, backend: string): Decision {
  const prev = d.kind === 'skip' ? d.state : d.work.keep;
  return prev === null || prev.backend === backend ? d : fullWork('settings', keys);
}

// ---------------------------------------------------------------------------------------
// Rows kept from the existing files

/**
 * The scores of the prompt sets not scored again, read back from the checkpoint's files,
 * with the per-head weight scores of its heads rows ([n_layers * n_heads]; undefined when
 * there are none) and the per-checkpoint scores asked for from its checkpoint_scores rows.
 */
export interface KeptRows extends Partial<Record<HeadWeightsMetric, Float64Array>>, Partial<Record<MetricOfKind<'corpus'>, number>> {
  sets: Map<string, { scores: PromptSetScores; labels: (string | null)[] }>;
}

// ---------------------------------------------------------------------------------------
// Formats: one table file's rows, in as many formats as asked

/** The listed files by path without extension, with the formats found on disk and those listed but gone. */
function filesByStem(out: string, files: readonly string[]): Map<string, { present: OutputFormat[]; missing: OutputFormat[] }> {
  const stems = new Map<string, { present: OutputFormat[]; missing: OutputFormat[] }>();
  for (const f of files) {
    const format = extname(f).slice(1) as OutputFormat;
    const stem = f.slice(0, -extname(f).length);
    const s = stems.get(stem) ?? { present: [], missing: [] };
    (existsSync(join(out, f)) ? s.present : s.missing).push(format);
    stems.set(stem, s);
  }
  return stems;
}

/** The formats of a list of table files, in OUTPUT_FORMATS order. */
export function formatsOf(files: readonly string[]): OutputFormat[] {
  return OUTPUT_FORMATS.filter((format) => files.some((f) => f.endsWith(`.${format}`)));
}

/**
 * Makes every table file of `files` exist in each of `formats`, writing a missing one
 * from the same stem's file in another format (the formats hold the same rows; no score
 * is computed). Returns the files that then exist, listed ones gone from disk left out,
 * and those written.
 */
export async function completeFormats(out: string, files: readonly string[], formats: readonly OutputFormat[]): Promise<{ files: string[]; written: string[] }> {
  const result: string[] = [];
  const written: string[] = [];
  for (const [stem, s] of filesByStem(out, files)) {
    if (s.present.length === 0) throw new Error(`${join(out, stem)}: no file of it is left to write its other formats from`);
    result.push(...s.present.map((f) => `${stem}.${f}`));
    const missing = formats.filter((f) => !s.present.includes(f));
    if (missing.length === 0) continue;
    const from = `${stem}.${s.present.includes('arrow') ? 'arrow' : s.present[0]}`;
    const table = await readStoredTable(join(out, from));
    for (const format of missing) {
      await writeFileAtomic(join(out, `${stem}.${format}`), await tableFileBytes(table, format));
      written.push(`${stem}.${format}`);
    }
  }
  return { files: [...result, ...written].sort(), written };
}

/**
 * A table file's rows exactly as stored (no schema change: the file written from it sits
 * beside it), laid out as the sweep's own tables are when read from Parquet (`asSweepWrites`).
 */
async function readStoredTable(file: string): Promise<Table> {
  const bytes = readFileSync(file);
  return file.endsWith('.parquet') ? asSweepWrites(await parquetTable(bytes)) : tableFromIPC(bytes);
}

/**
 * The same rows in the buffers tables.ts builds, so that an Arrow file written from a
 * Parquet file has the bytes of one a sweep writes: Parquet gives a missing float as a
 * null over 0 where tables.ts writes NaN and marks it null, and an empty string column
 * with no offsets where tables.ts writes the one offset 0.
 */
function asSweepWrites(table: Table): Table {
  const batches = table.batches.map((batch) => {
    const children = batch.data.children.map((column: Data) => {
      if (DataType.isUtf8(column.type) && column.valueOffsets.length === 0) {
        return makeData({ type: column.type, length: 0, nullCount: 0, valueOffsets: new Int32Array(1), data: new Uint8Array(0) });
      }
      if (!DataType.isFloat(column.type) || !(column.values instanceof Float64Array) || column.nullCount === 0) return column;
      const values = Float64Array.from((column as Data<Float64>).values.subarray(0, column.length));
      for (let i = 0; i < column.length; i++) if (!column.getValid(i)) values[i] = NaN;
      return makeData({ type: column.type as Float64, length: column.length, nullCount: column.nullCount, nullBitmap: column.nullBitmap, data: values });
    });
    return new RecordBatch(table.schema, makeData({ type: new Struct(table.schema.fields), length: batch.numRows, children }));
  });
  return new Table(table.schema, batches);
}

/**
 * The entry's file for `table`, Arrow preferred (the formats hold the same rows), as the
 * current schema: a file of an earlier tables version has its missing columns as nulls,
 * which read back as NaN (not computed). null when the entry has no such file.
 */
async function readTable(out: string, state: CheckpointState, table: TableName): Promise<Table | null> {
  const files = state.files.filter((f) => f.startsWith(`${table}/`));
  const file = files.find((f) => f.endsWith('.arrow')) ?? files.find((f) => f.endsWith('.parquet'));
  return file === undefined ? null : readTableFile(join(out, file), table);
}

/**
 * A Float64 column as one array, null rows as NaN (the tables write NaN for a missing
 * value and mark it null). Values are copied as stored, so rows written again from it
 * give the same bytes.
 */
function float64Values(table: Table, name: string): Float64Array {
  const out = new Float64Array(table.numRows);
  let at = 0;
  for (const data of table.getChild(name)!.data) {
    out.set((data.values as Float64Array).subarray(0, data.length), at);
    for (let i = 0; i < data.length; i++) if (!data.getValid(i) && !Number.isNaN(out[at + i])) out[at + i] = NaN;
    at += data.length;
  }
  return out;
}

/**
 * Reads the rows of the prompt sets `names` of a checkpoint with `perSet` = n_layers *
 * n_heads heads, and its stored per-checkpoint scores `perCheckpoint` (the same on every row).
 */
export async function readKept(
  out: string, state: CheckpointState, names: readonly string[], perSet: number, perCheckpoint: readonly MetricOfKind<'corpus'>[],
): Promise<KeptRows> {
  const kept: KeptRows = { sets: new Map() };
  if (names.length === 0 && perCheckpoint.length === 0) return kept;
  const heads = await readTable(out, state, 'heads');
  const scores = await readTable(out, state, 'checkpoint_scores');
  if (heads === null || scores === null) throw new Error(`${state.path}: the stored heads or checkpoint_scores file is missing`);
  for (const m of perCheckpoint) kept[m] = float64Values(scores, m)[0];
  const headSet = heads.getChild('prompt_set')!.toArray() as string[];
  const scoreSet = scores.getChild('prompt_set')!.toArray() as string[];
  const headColumns = new Map<string, Float64Array>(METRICS.filter((m) => m.per === 'head').map((m) => [m.name, float64Values(heads, m.name)]));
  const setColumns = new Map<string, Float64Array>(METRICS.filter((m) => m.per === 'prompt_set').map((m) => [m.name, float64Values(scores, m.name)]));
  const labels = heads.getChild('label')!;
  for (const name of names) {
    // A model without layers has no heads rows, only checkpoint_scores rows.
    const start = perSet === 0 ? 0 : headSet.indexOf(name);
    const row = scoreSet.indexOf(name);
    if (start < 0 || row < 0) throw new Error(`${state.path}: the stored files have no rows for prompt set '${name}'`);
    const block = (m: string) => headColumns.get(m)!.slice(start, start + perSet);
    const set: PromptSetScores = { promptSet: name };
    for (const spec of METRICS) {
      if (spec.kind === 'pattern') set[spec.name] = block(spec.name);
      else if (spec.kind === 'loss') set[spec.name] = setColumns.get(spec.name)![row];
      else if (spec.kind === 'weights' && spec.per === 'head') kept[spec.name] ??= block(spec.name);
    }
    kept.sets.set(name, { scores: set, labels: Array.from({ length: perSet }, (_, k) => labels.get(start + k) as string | null) });
  }
  return kept;
}

/**
 * The scores of every prompt set of `order`, fresh where scored now and kept otherwise,
 * as one CheckpointScores: the per-head weight scores among `metrics` (the config's)
 * fresh or kept, and the weights-keyed ones (composition, bigram_kl) fresh when
 * `weights` were computed now, else the kept per-checkpoint scores (composition's file is
 * then kept as it is).
 */
export function mergeScores(
  order: readonly string[], nLayers: number, nHeads: number,
  fresh: { scores: CheckpointScores; labels: (string | null)[][] } | null, kept: KeptRows,
  metrics: readonly MetricName[], weights: boolean,
): { scores: CheckpointScores; labels: (string | null)[][] } {
  const promptSets: PromptSetScores[] = [];
  const labels: (string | null)[][] = [];
  for (const name of order) {
    const i = fresh?.scores.promptSets.findIndex((s) => s.promptSet === name) ?? -1;
    if (i >= 0) {
      promptSets.push(fresh!.scores.promptSets[i]);
      labels.push(fresh!.labels[i]);
    } else {
      const k = kept.sets.get(name)!;
      promptSets.push(k.scores);
      labels.push(k.labels);
    }
  }
  const scores: CheckpointScores = { nLayers, nHeads, promptSets, seconds: fresh?.scores.seconds ?? { forward: 0, weights: 0 } };
  for (const name of new Set(metrics)) {
    const spec = metricSpec(name);
    if (spec.kind === 'weights' && spec.per === 'head') scores[spec.name] = fresh?.scores[spec.name] ?? kept[spec.name];
    else if (spec.per === 'head_pair') scores[spec.name] = weights ? fresh!.scores[spec.name] : undefined;
    else if (spec.kind === 'corpus') scores[spec.name] = weights ? fresh!.scores[spec.name] : kept[spec.name];
  }
  return { scores, labels };
}
