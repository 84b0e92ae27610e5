/**
 * Loads a sweep's output folder (layout in TABLES.md) into plain row arrays for the
 * report. Int64 columns become numbers (steps and token counts stay far below 2^53),
 * nulls stay null, and a table folder that is absent is reported as such rather than
 * failing, so a sweep run without composition still gets a page.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DataType, tableFromIPC, type Table } from 'apache-arrow';
import { HeadsweepError } from '../../src/errors.ts';

export interface HeadRow {
  run: string;
  step: number | null;
  checkpoint: string;
  prompt_set: string;
  layer: number;
  head: number;
  prefix_matching: number | null;
  duplicate_token: number | null;
  previous_token: number | null;
  copying: number | null;
  label: string | null;
}

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

export interface CheckpointScoreRow {
  run: string;
  step: number | null;
  checkpoint: string;
  prompt_set: string;
  mean_loss: number | null;
  icl_score: number | null;
}

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

type ColumnKind = 'utf8' | 'int' | 'float';
/** The columns the report reads from a table, with the Arrow type family each must have. */
type Columns<R> = { [K in keyof R]: ColumnKind };

const HEAD_COLUMNS: Columns<HeadRow> = {
  run: 'utf8', step: 'int', checkpoint: 'utf8', prompt_set: 'utf8', layer: 'int', head: 'int',
  prefix_matching: 'float', duplicate_token: 'float', previous_token: 'float', copying: 'float',
  label: 'utf8',
};
const COMPOSITION_COLUMNS: Columns<CompositionRow> = {
  run: 'utf8', step: 'int', checkpoint: 'utf8', src_layer: 'int', src_head: 'int',
  dst_layer: 'int', dst_head: 'int', kind: 'utf8', score: 'float', baseline: 'float',
};
const CHECKPOINT_SCORE_COLUMNS: Columns<CheckpointScoreRow> = {
  run: 'utf8', step: 'int', checkpoint: 'utf8', prompt_set: 'utf8', mean_loss: 'float', icl_score: 'float',
};
const ERROR_COLUMNS: Columns<ErrorRow> = { run: 'utf8', path: 'utf8', stage: 'utf8', message: 'utf8' };

/**
 * Reads heads, checkpoint_scores and errors in full. Composition is read per checkpoint
 * with `readComposition`: it grows with (layers × heads)² per checkpoint, and the report
 * only shows it at one step.
 */
export function readSweepOutput(root: string): SweepOutput {
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new HeadsweepError(`${root}: no such sweep output folder`, { stage: 'load', file: root });
  }
  return {
    root,
    name: manifestName(root),
    heads: readTable(root, 'heads', HEAD_COLUMNS),
    checkpointScores: readTable(root, 'checkpoint_scores', CHECKPOINT_SCORE_COLUMNS),
    errors: readTable(root, 'errors', ERROR_COLUMNS),
  };
}

/**
 * The composition rows of one checkpoint. Only files whose name carries its step
 * (`step-<9 digits>-…` or `step-unknown-…`, TABLES.md) are opened; rows are then
 * matched on the checkpoint path, since two files can share a step.
 */
export function readComposition(root: string, run: string, step: number | null, checkpoint: string): Loaded<CompositionRow> {
  const prefix = step === null ? 'step-unknown-' : `step-${String(step).padStart(9, '0')}-`;
  const loaded = readTable(root, 'composition', COMPOSITION_COLUMNS, run, (file) => file.startsWith(prefix));
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

/** All `<root>/<table>/run=*\/*.arrow` files (or one run's), in a stable order. */
function readTable<R>(
  root: string,
  table: string,
  columns: Columns<R>,
  onlyRun?: string,
  keepFile: (name: string) => boolean = () => true,
): Loaded<R> {
  const folder = join(root, table);
  if (!existsSync(folder)) return { present: false, folder };
  const runDirs = readdirSync(folder, { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name.startsWith('run=') && (onlyRun === undefined || d.name === `run=${onlyRun}`))
    .map((d) => d.name)
    .sort();
  const rows: R[] = [];
  let files = 0;
  for (const runDir of runDirs) {
    const names = readdirSync(join(folder, runDir)).filter((n) => n.endsWith('.arrow') && keepFile(n)).sort();
    for (const name of names) {
      const file = join(folder, runDir, name);
      // A loop, not push(...rows): a real heads file can exceed the argument-count limit.
      for (const row of rowsOf(file, openArrow(file), columns)) rows.push(row);
      files++;
    }
  }
  return { present: true, rows, files };
}

function openArrow(file: string): Table {
  try {
    return tableFromIPC(readFileSync(file));
  } catch (cause) {
    throw new HeadsweepError(`${file}: not a readable Arrow IPC file`, { stage: 'load', file, cause });
  }
}

function rowsOf<R>(file: string, table: Table, columns: Columns<R>): R[] {
  const readers = (Object.keys(columns) as (keyof R & string)[]).map((name) => {
    const field = table.schema.fields.find((f) => f.name === name);
    const vector = table.getChild(name);
    if (field === undefined || vector === null) {
      throw new HeadsweepError(`${file}: column '${name}' is missing`, { stage: 'load', file, key: name });
    }
    const kind = columns[name];
    if (!hasKind(field.type, kind)) {
      throw new HeadsweepError(`${file}: column '${name}' is ${field.type}, expected ${kind}`, { stage: 'load', file, key: name });
    }
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

function hasKind(type: DataType, kind: ColumnKind): boolean {
  switch (kind) {
    case 'utf8': return DataType.isUtf8(type) || DataType.isLargeUtf8(type);
    case 'int': return DataType.isInt(type);
    case 'float': return DataType.isFloat(type);
  }
}
