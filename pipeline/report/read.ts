/**
 * Loads a sweep's output folder (layout in TABLES.md) into plain row arrays for the
 * report: the Arrow files, or the Parquet ones where a checkpoint has no Arrow file (a
 * sweep with `formats: [parquet]`), read as the current schema whatever tables version
 * wrote them. Int64 columns become numbers (steps and token counts stay far below 2^53),
 * nulls stay null, and a table folder that is absent is reported as such rather than
 * failing, so a sweep run without composition still gets a page.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Table } from 'apache-arrow';
import { HeadsweepError } from '../../src/errors.ts';
import { CHECKPOINT_METRICS, HEAD_METRICS, type CheckpointMetric, type HeadMetric } from '../../src/metrics/registry.ts';
import { readTableFile } from '../sinks/index.ts';
import type { TableName } from '../tables.ts';

/** A heads row: where it belongs, its label, and every per-head score (null when not computed). */
export type HeadRow = {
  run: string;
  step: number | null;
  checkpoint: string;
  prompt_set: string;
  layer: number;
  head: number;
  label: string | null;
} & Record<HeadMetric, number | null>;

export interface CompositionRow {
  run: string;
  step: number | null;
  checkpoint: string;
  src_layer: number;
  src_head: number;
  dst_layer: number;
  dst_head: number;
  kind: string;
  score: number;
  baseline: number;
}

/** A checkpoint_scores row: every per-prompt-set and per-checkpoint score (null when not computed). */
export type CheckpointScoreRow = {
  run: string;
  step: number | null;
  checkpoint: string;
  prompt_set: string;
} & Record<CheckpointMetric, number | null>;

export interface ErrorRow {
  run: string;
  path: string;
  stage: string;
  message: string;
}

/** A table as found on disk: its rows, or the folder that was looked for and not found. */
export type Loaded<R> = { present: true; rows: R[]; files: number } | { present: false; folder: string };

export interface SweepOutput {
  root: string;
  /** `name` from manifest.json, when the manifest exists (it is written last). */
  name: string | null;
  heads: Loaded<HeadRow>;
  checkpointScores: Loaded<CheckpointScoreRow>;
  errors: Loaded<ErrorRow>;
}

/** The columns the report reads from each table; the readers check their types against the schema. */
const HEAD_COLUMNS = ['run', 'step', 'checkpoint', 'prompt_set', 'layer', 'head', ...HEAD_METRICS, 'label'] as const;
const COMPOSITION_COLUMNS = ['run', 'step', 'checkpoint', 'src_layer', 'src_head', 'dst_layer', 'dst_head', 'kind', 'score', 'baseline'] as const;
const CHECKPOINT_SCORE_COLUMNS = ['run', 'step', 'checkpoint', 'prompt_set', ...CHECKPOINT_METRICS] as const;
const ERROR_COLUMNS = ['run', 'path', 'stage', 'message'] as const;

/**
 * Reads heads, checkpoint_scores and errors in full. Composition is read per checkpoint
 * with `readComposition`: it grows with (layers × heads)² per checkpoint, and the report
 * only shows it at one step.
 */
export async function readSweepOutput(root: string): Promise<SweepOutput> {
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new HeadsweepError(`${root}: no such sweep output folder`, { stage: 'load', file: root });
  }
  const output: SweepOutput = {
    root,
    name: manifestName(root),
    heads: await readTable<HeadRow>(root, 'heads', HEAD_COLUMNS),
    checkpointScores: await readTable<CheckpointScoreRow>(root, 'checkpoint_scores', CHECKPOINT_SCORE_COLUMNS),
    errors: await readTable<ErrorRow>(root, 'errors', ERROR_COLUMNS),
  };
  // A page with nothing on it would read as a sweep that found nothing.
  if ([output.heads, output.checkpointScores, output.errors].every((t) => !t.present || t.files === 0)) {
    throw new HeadsweepError(
      `${root}: no heads, checkpoint_scores or errors files (.arrow or .parquet) in it: not a sweep output folder, or its sweep has written nothing yet`,
      { stage: 'load', file: root },
    );
  }
  return output;
}

/**
 * The composition rows of one checkpoint. Only files whose name carries its step
 * (`step-<9 digits>-…` or `step-unknown-…`, TABLES.md) are opened; rows are then
 * matched on the checkpoint path, since two files can share a step.
 */
export async function readComposition(root: string, run: string, step: number | null, checkpoint: string): Promise<Loaded<CompositionRow>> {
  const prefix = step === null ? 'step-unknown-' : `step-${String(step).padStart(9, '0')}-`;
  const loaded = await readTable<CompositionRow>(root, 'composition', COMPOSITION_COLUMNS, run, (file) => file.startsWith(prefix));
  if (!loaded.present) return loaded;
  return { ...loaded, rows: loaded.rows.filter((row) => row.checkpoint === checkpoint) };
}

/**
 * The checkpoint a run is shown at: the one at `step` when given, else the run's last
 * (greatest known step; a run whose steps are all unknown falls back to its last path).
 * Returns null when the run has no checkpoint at `step`.
 */
export function checkpointAt(
  rows: readonly { step: number | null; checkpoint: string }[],
  step: number | undefined,
): { step: number | null; checkpoint: string } | null {
  let best: { step: number | null; checkpoint: string } | null = null;
  for (const row of rows) {
    if (step !== undefined && row.step !== step) continue;
    if (best === null || later(row, best)) best = { step: row.step, checkpoint: row.checkpoint };
  }
  return best;
}

function later(a: { step: number | null; checkpoint: string }, b: { step: number | null; checkpoint: string }): boolean {
  const sa = a.step ?? -Infinity;
  const sb = b.step ?? -Infinity;
  return sa !== sb ? sa > sb : a.checkpoint > b.checkpoint;
}

function manifestName(root: string): string | null {
  const file = join(root, 'manifest.json');
  if (!existsSync(file)) return null;
  let manifest: unknown;
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new HeadsweepError(`${file}: not valid JSON`, { stage: 'load', file, cause });
  }
  const name = (manifest as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : null;
}

/**
 * All `<root>/<table>/run=*\/<stem>.arrow` files (or one run's), in a stable order, and
 * `<stem>.parquet` where a stem has no Arrow file (both hold the same rows).
 */
async function readTable<R>(
  root: string,
  table: TableName,
  columns: readonly string[],
  onlyRun?: string,
  keepFile: (name: string) => boolean = () => true,
): Promise<Loaded<R>> {
  const folder = join(root, table);
  if (!existsSync(folder)) return { present: false, folder };
  const runDirs = readdirSync(folder, { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name.startsWith('run=') && (onlyRun === undefined || d.name === `run=${onlyRun}`))
    .map((d) => d.name)
    .sort();
  const rows: R[] = [];
  let files = 0;
  for (const runDir of runDirs) {
    const names = readdirSync(join(folder, runDir));
    const tableFiles = names.filter((n) => keepFile(n) && (n.endsWith('.arrow')
      || (n.endsWith('.parquet') && !names.includes(n.replace(/\.parquet$/, '.arrow'))))).sort();
    for (const name of tableFiles) {
      const file = join(folder, runDir, name);
      // A loop, not push(...rows): a real heads file can exceed the argument-count limit.
      for (const row of rowsOf<R>(await readTableFile(file, table), columns)) rows.push(row);
      files++;
    }
  }
  return { present: true, rows, files };
}

/** The rows of a table in the current schema, as objects of `columns`. */
function rowsOf<R>(table: Table, columns: readonly string[]): R[] {
  const readers = columns.map((name) => {
    const vector = table.getChild(name)!;
    return { name, get: (i: number): unknown => {
      const value = vector.get(i);
      return typeof value === 'bigint' ? Number(value) : value;
    } };
  });
  const rows: R[] = new Array(table.numRows);
  for (let i = 0; i < table.numRows; i++) {
    const row: Record<string, unknown> = {};
    for (const { name, get } of readers) row[name] = get(i);
    rows[i] = row as R;
  }
  return rows;
}
