/**
 * `headsweep compact`: merges the per-checkpoint files of one or more sweep output roots
 * (TABLES.md layout; several shards may have written into the same root, or each into
 * its own) into
 *
 *     <out>/compacted/<table>.arrow                               one Arrow IPC file per table
 *     <out>/compacted/parquet/<table>/run=<run>/part-<k>.parquet  hive-partitioned Parquet
 *     <out>/compacted/manifest.json                               sources, shards, counts
 *
 * Rows are sorted by each table's natural key (`SORT_KEYS`: run, step, checkpoint, then
 * prompt set, layer, head and so on), so the result depends only on which rows exist:
 * compacting n shards' output gives the same bytes as compacting one machine's. Strings
 * sort in UTF-8 byte order (DuckDB's and pyarrow's order), unknown steps after known ones.
 * Partitions written by an earlier tables version are read with the columns they lack
 * as nulls (`asCurrentSchema` in tables.ts), so the compacted files always have the
 * current schema. Two rows with the same key (one checkpoint written twice, under two
 * file names or by two roots) are an error naming both files; the same file found in two
 * roots with the same bytes (each shard writes the run's `prompts`) counts once.
 *
 * Parquet parts hold at most `partRows` rows, so parquet-wasm (32-bit wasm memory)
 * never gets more than one part at once; part k of a run holds its rows k·partRows
 * onwards. A table no root has files for is left out, as a sweep leaves out its folder.
 *
 * The partitions are only read, never deleted. Each compaction is written into a folder
 * of its own, `<out>/.compactions/<id>`, and `<out>/compacted` is a symbolic link to the
 * current one, replaced in one rename: a reader opening `compacted/...` always finds one
 * whole compaction, the old or the new, whatever kills the process and when, and a rerun
 * drops files of runs that no longer exist. (Two folders cannot be swapped in one rename,
 * which is why `compacted` is a link.) The previous compaction's folder is removed once
 * the link points past it; what a killed compaction leaves (a version folder no link
 * points to, a temporary link) the next one removes. One compaction of a root runs at a
 * time (`.headsweep.compact.lock`, lock.ts).
 *
 * Earlier versions kept `compacted` as a folder swapped in by two renames; the first
 * compaction of such a root moves it into `.compactions` and links to it (a moment with
 * no `compacted`, once), and puts back a `compacted.<pid>.old` a compaction killed between
 * its renames left with no `compacted`.
 *
 * One table is held in memory at a time: its partitions, their sorted copy and the
 * encoded file.
 */
import { existsSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, rename, rm, symlink } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import {
  DataType, makeData, RecordBatch, Struct, Table, type Data, type Field, type Utf8,
} from 'apache-arrow';
import { z } from 'zod';
import { HeadsweepError, messageOf, parserMessage } from '../src/errors.ts';
import { FileProblem, readRegularFile } from '../src/files.ts';
import { COMPACT_LOCK, Lock } from './lock.ts';
import { packageVersions } from './manifest.ts';
import { shardLabel, shardOfManifestFile, type Shard } from './shard.ts';
import { arrowFileBytes } from './sinks/arrow.ts';
import { writeFileAtomic } from './sinks/atomic.ts';
import { readTableFile, writeTableFile } from './sinks/index.ts';
import { SCHEMAS, TABLE_NAMES, TABLES_VERSION, type TableName } from './tables.ts';

export const COMPACTED_DIR = 'compacted';

/** The folder of compaction versions; `compacted` links to one of them. */
export const VERSIONS_DIR = '.compactions';

/**
 * Whether an entry of an output root is compaction's: `compacted`, the versions folder,
 * the temporary link, or the `compacted.<pid>.tmp` / `.old` folder a killed compaction of
 * an earlier headsweep left behind. A sweep rerunning into the root must accept these as
 * its own.
 */
export function isCompactionEntry(name: string): boolean {
  return /^compacted(\.\d+\.(tmp|old|link))?$/.test(name) || name === VERSIONS_DIR;
}

/** Each table's natural key, in sort order. `run` comes first, so a run's rows are one slice. */
export const SORT_KEYS: Record<TableName, readonly string[]> = {
  heads: ['run', 'step', 'checkpoint', 'prompt_set', 'layer', 'head'],
  composition: ['run', 'step', 'checkpoint', 'src_layer', 'src_head', 'dst_layer', 'dst_head', 'kind'],
  checkpoint_scores: ['run', 'step', 'checkpoint', 'prompt_set'],
  checkpoints: ['run', 'step', 'path'],
  prompts: ['run', 'prompt_set', 'seq'],
  errors: ['run', 'path', 'stage', 'message'],
};

/** Rows per Parquet part: about 100 MB of heads or composition rows in wasm memory. */
export const PARQUET_PART_ROWS = 1_000_000;

export interface CompactOptions {
  /** Output roots to read (default: `out` alone). */
  inputs?: string[];
  partRows?: number;
}

/** What one source manifest says, as listed in the compacted manifest. */
export interface SourceManifest {
  file: string;
  /** `i/n` for a shard's manifest (`manifest.shard-<i>-of-<n>.json`), null for `manifest.json`. */
  shard: string | null;
  name: string;
  status: string;
  started_at: string;
  finished_at: string;
  backend: string;
  exit_code: number;
  /** The tables version its sweep wrote; 1 for a manifest written before the field existed. */
  tables_version: number;
  counts: { checkpoints_planned: number; scored: number; failed: number };
}

export interface CompactedManifest {
  compacted_at: string;
  /** The tables version of the compacted files (TABLES_VERSION): partitions of earlier versions are read with their missing columns as nulls. */
  tables_version: number;
  /** Absolute output roots read. */
  inputs: string[];
  /** Every source finished, every shard of n has its manifest, and there is at least one. */
  complete: boolean;
  /** Why the compaction may be missing rows; empty when complete. */
  warnings: string[];
  sources: SourceManifest[];
  /** Shards seen through their manifests; null when no manifest names a shard. */
  shards: { count: number; present: number[]; missing: number[] } | null;
  counts: {
    /** Summed over the source manifests. */
    checkpoints_planned: number;
    scored: number;
    failed: number;
    /** Partition files read per table (a file found with the same bytes in two roots counts once). */
    files: Record<TableName, number>;
    /** Rows per table after compaction. */
    rows: Record<TableName, number>;
  };
  /** Files written, relative to the compacted folder; a table without partitions has none. */
  outputs: {
    arrow: Partial<Record<TableName, string>>;
    parquet: Partial<Record<TableName, string[]>>;
  };
  versions: Record<string, string>;
}

export interface CompactResult {
  dir: string;
  manifest: CompactedManifest;
}

export async function compactOutput(out: string, opts: CompactOptions = {}): Promise<CompactResult> {
  const root = resolve(out);
  const inputs = [...new Set((opts.inputs ?? [out]).map((p) => resolve(p)))];
  const partRows = opts.partRows ?? PARQUET_PART_ROWS;
  if (!Number.isSafeInteger(partRows) || partRows < 1) {
    throw new HeadsweepError(`compact: rows per Parquet part must be a whole number >= 1, got ${partRows}`, { stage: 'config', key: 'part-rows' });
  }
  for (const input of inputs) {
    if (!existsSync(input) || !statSync(input).isDirectory()) {
      throw new HeadsweepError(`${input}: no such sweep output folder`, { stage: 'load', file: input });
    }
  }
  const manifests = readSourceManifests(inputs);
  const lock = Lock.acquire(root, COMPACT_LOCK, `the compaction of ${root}`);
  try {
    await removeLeftovers(root);
    const staging = join(root, VERSIONS_DIR, versionId());
    return await compactInto(root, staging, inputs, partRows, manifests);
  } finally {
    lock.release();
  }
}

async function compactInto(
  root: string, staging: string, inputs: string[], partRows: number, manifests: ReturnType<typeof readSourceManifests>,
): Promise<CompactResult> {
  const final = join(root, COMPACTED_DIR);
  const counts = { files: zeroes(), rows: zeroes() };
  const outputs: CompactedManifest['outputs'] = { arrow: {}, parquet: {} };
  try {
    await mkdir(staging, { recursive: true });
    for (const table of TABLE_NAMES) {
      const files = partitionFiles(inputs, table);
      if (files.length === 0) continue;
      const parts = [];
      // A partition of an earlier tables version is read with its missing columns as nulls.
      for (const file of files) parts.push({ file, table: await readTableFile(file, table) });
      const sorted = sortedRows(table, parts);
      counts.files[table] = files.length;
      counts.rows[table] = sorted.numRows;
      await writeFileAtomic(join(staging, `${table}.arrow`), arrowFileBytes(sorted));
      outputs.arrow[table] = `${table}.arrow`;
      const written = await writeParquetParts(join(staging, 'parquet'), table, sorted, partRows);
      outputs.parquet[table] = written.map((p) => relative(staging, p));
    }
    const manifest: CompactedManifest = {
      compacted_at: new Date().toISOString(),
      tables_version: TABLES_VERSION,
      inputs,
      complete: manifests.warnings.length === 0,
      warnings: manifests.warnings,
      sources: manifests.sources,
      shards: manifests.shards,
      counts: { ...sumCounts(manifests.sources), ...counts },
      outputs,
      versions: packageVersions(),
    };
    await writeFileAtomic(join(staging, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    await swapIn(staging, final);
    return { dir: final, manifest };
  } catch (err) {
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
}

/** A version folder's name: when it was made (sortable), and by whom. */
function versionId(): string {
  return `${new Date().toISOString().replace(/[-:.]/g, '')}-${process.pid}`;
}

/** The version folder `compacted` links to, or null (no link: none yet, or an earlier headsweep's folder). */
function linkedVersion(final: string): string | null {
  try {
    return resolve(dirname(final), readlinkSync(final));
  } catch {
    return null;
  }
}

/**
 * Points `final` at `staging` with one rename of a new link over it, then removes the
 * version it pointed to before. A `final` that is a folder (an earlier headsweep's) is
 * moved into the versions folder first.
 */
async function swapIn(staging: string, final: string): Promise<void> {
  const link = `${final}.${process.pid}.link`;
  let previous = linkedVersion(final);
  let movedFolder = false;
  try {
    await rm(link, { force: true });
    await symlink(relative(dirname(final), staging), link);
    if (previous === null && existsSync(final)) {
      previous = join(dirname(staging), `${versionId()}-before`);
      await rename(final, previous);
      movedFolder = true;
    }
    await rename(link, final);
  } catch (cause) {
    await rm(link, { force: true }).catch(() => undefined);
    // The earlier headsweep's folder goes back where readers look for it.
    if (movedFolder) await rename(previous!, final).catch(() => undefined);
    throw new HeadsweepError(`cannot link the new compaction ${staging} as ${final}: ${messageOf(cause)}`, { stage: 'write', file: final, cause });
  }
  // `final` now links to `staging`: from here nothing may fail the compaction, or its
  // caller would remove the version just linked. What is not removed now, the next
  // compaction removes (removeLeftovers). Only a version of this root: a root copied with
  // its link made absolute (Node's cpSync does) links to another root's.
  if (previous !== null && previous !== staging && dirname(previous) === dirname(staging)) {
    await rm(previous, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * What killed compactions left, removed (the lock is held, so no other compaction is
 * under way): version folders `compacted` does not link to, temporary links, and the
 * folders of earlier headsweeps' compactions. A `compacted.<pid>.old` left with no
 * `compacted` (killed between that version's two renames) was the whole previous
 * compaction: it is put back first, so readers find it while this one runs.
 */
async function removeLeftovers(root: string): Promise<void> {
  const final = join(root, COMPACTED_DIR);
  const names = readdirSync(root);
  const old = names.filter((n) => /^compacted\.\d+\.old$/.test(n));
  if (!existsSync(final) && old.length > 0) await rename(join(root, old[0]), final);
  for (const name of names) {
    if (/^compacted\.\d+\.(tmp|old|link)$/.test(name)) await rm(join(root, name), { recursive: true, force: true });
  }
  const current = linkedVersion(final);
  const versions = join(root, VERSIONS_DIR);
  for (const name of existsSync(versions) ? readdirSync(versions) : []) {
    if (join(versions, name) !== current) await rm(join(versions, name), { recursive: true, force: true });
  }
}

function zeroes(): Record<TableName, number> {
  return Object.fromEntries(TABLE_NAMES.map((t) => [t, 0])) as Record<TableName, number>;
}

// ---------------------------------------------------------------------------------------
// Finding and reading partitions

/**
 * Every partition file of `table` across the roots, by path below the root. A sweep
 * writing only Parquet leaves `.parquet` files; where both formats exist the Arrow file
 * is read. The same relative path in two roots is read once when the bytes agree.
 */
function partitionFiles(inputs: readonly string[], table: TableName): string[] {
  const byRelative = new Map<string, string>();
  for (const input of inputs) {
    const folder = join(input, table);
    if (!existsSync(folder)) continue;
    const runDirs = readdirSync(folder, { withFileTypes: true }).filter((d) => d.isDirectory() && d.name.startsWith('run='));
    for (const runDir of runDirs) {
      const names = readdirSync(join(folder, runDir.name));
      for (const name of names) {
        const stem = name.replace(/\.(arrow|parquet)$/, '');
        if (stem === name || (name.endsWith('.parquet') && names.includes(`${stem}.arrow`))) continue;
        const rel = join(table, runDir.name, name);
        const file = join(input, rel);
        const seen = byRelative.get(rel);
        if (seen === undefined) byRelative.set(rel, file);
        else if (!readRegularFile(seen).equals(readRegularFile(file))) {
          throw new HeadsweepError(
            `${rel} differs between ${seen} and ${file}: the checkpoint was scored twice; keep one of the two files`,
            { stage: 'load', file },
          );
        }
      }
    }
  }
  return [...byRelative.keys()].sort().map((rel) => byRelative.get(rel)!);
}


// ---------------------------------------------------------------------------------------
// Sorting

/** One record batch of one partition file. */
interface Chunk {
  file: string;
  batch: RecordBatch;
}

/**
 * All rows of the partitions as one batch of `SCHEMAS[table]`, in `SORT_KEYS` order.
 * Rows are not materialised as objects: the sort runs over one numeric key array per
 * key column, and the columns are then gathered buffer by buffer.
 */
function sortedRows(table: TableName, parts: { file: string; table: Table }[]): Table {
  const schema = SCHEMAS[table];
  const chunks: Chunk[] = parts.flatMap((p) => p.table.batches.map((batch) => ({ file: p.file, batch })));
  const n = chunks.reduce((sum, c) => sum + c.batch.numRows, 0);
  // Row g of the concatenation is row rowIndex[g] of chunk rowChunk[g].
  const rowChunk = new Uint32Array(n);
  const rowIndex = new Uint32Array(n);
  let g = 0;
  chunks.forEach((c, k) => {
    for (let i = 0; i < c.batch.numRows; i++, g++) {
      rowChunk[g] = k;
      rowIndex[g] = i;
    }
  });
  const keyNames = SORT_KEYS[table];
  const keys = keyNames.map((name) => sortKey(schema.fields.findIndex((f) => f.name === name), chunks, n));
  const compare = (a: number, b: number): number => {
    for (const key of keys) {
      if (key[a] !== key[b]) return key[a] < key[b] ? -1 : 1;
    }
    return 0;
  };
  const order = new Uint32Array(n).map((_, i) => i).sort(compare);
  for (let r = 1; r < n; r++) {
    if (compare(order[r - 1], order[r]) === 0) {
      throw duplicateRow(table, keyNames, chunks, rowChunk, rowIndex, order[r - 1], order[r]);
    }
  }
  const fromChunk = order.map((row) => rowChunk[row]);
  const fromIndex = order.map((row) => rowIndex[row]);
  const columns = schema.fields.map((field, col) =>
    gather(field, chunks.map((c) => c.batch.data.children[col]), fromChunk, fromIndex, `${table}.${field.name}`));
  const rows = makeData({ type: new Struct(schema.fields), length: n, children: columns });
  return new Table(schema, [new RecordBatch(schema, rows)]);
}

/**
 * One number per row that orders like the column: Int32 and Int64 values as themselves
 * (steps and token counts stay far below 2^53), strings as their rank in UTF-8 byte
 * order, nulls as +Infinity (last).
 */
function sortKey(col: number, chunks: readonly Chunk[], n: number): Float64Array {
  const key = new Float64Array(n);
  const datas = chunks.map((c) => c.batch.data.children[col]);
  if (datas.length > 0 && DataType.isUtf8(datas[0].type)) return utf8Ranks(datas as Data<Utf8>[], key);
  let g = 0;
  for (const d of datas) {
    const values = d.values as ArrayLike<number | bigint>;
    for (let i = 0; i < d.length; i++, g++) key[g] = d.nullCount > 0 && !d.getValid(i) ? Infinity : Number(values[i]);
  }
  return key;
}

/**
 * Ranks of the strings of a Utf8 column. Each distinct string is decoded once: most rows
 * repeat the previous row's run or checkpoint, so the bytes are compared to the previous
 * row's before anything is decoded.
 */
function utf8Ranks(datas: Data<Utf8>[], key: Float64Array): Float64Array {
  const decoder = new TextDecoder();
  const ids = new Map<string, number>();
  const strings: string[] = [];
  const rowIds = new Int32Array(key.length);
  let g = 0;
  for (const d of datas) {
    const { valueOffsets: offsets, values: bytes } = d;
    let prev = -1;
    for (let i = 0; i < d.length; i++, g++) {
      if (d.nullCount > 0 && !d.getValid(i)) {
        rowIds[g] = prev = -1;
        continue;
      }
      if (prev >= 0 && sameBytes(bytes, offsets[i - 1], offsets[i], offsets[i + 1])) {
        rowIds[g] = prev;
        continue;
      }
      const text = decoder.decode(bytes.subarray(offsets[i], offsets[i + 1]));
      let id = ids.get(text);
      if (id === undefined) {
        id = strings.length;
        ids.set(text, id);
        strings.push(text);
      }
      rowIds[g] = prev = id;
    }
  }
  const encoded = strings.map((s) => Buffer.from(s, 'utf8'));
  const byBytes = strings.map((_, id) => id).sort((a, b) => Buffer.compare(encoded[a], encoded[b]));
  const rank = new Float64Array(strings.length);
  byBytes.forEach((id, r) => { rank[id] = r; });
  for (let row = 0; row < key.length; row++) key[row] = rowIds[row] < 0 ? Infinity : rank[rowIds[row]];
  return key;
}

/** Whether bytes [a, b) equal bytes [b, c): a row's string against the one before it. */
function sameBytes(bytes: Uint8Array, a: number, b: number, c: number): boolean {
  if (b - a !== c - b) return false;
  for (let k = 0; k < b - a; k++) if (bytes[a + k] !== bytes[b + k]) return false;
  return true;
}

function duplicateRow(
  table: TableName, keyNames: readonly string[], chunks: readonly Chunk[],
  rowChunk: Uint32Array, rowIndex: Uint32Array, a: number, b: number,
): HeadsweepError {
  const [first, second] = [a, b].map((row) => chunks[rowChunk[row]]);
  const row = first.batch.get(rowIndex[a])!.toJSON() as Record<string, unknown>;
  const key = keyNames.map((name) => `${name}=${String(row[name])}`).join(', ');
  const where = first.file === second.file ? `twice in ${first.file}` : `in ${first.file} and in ${second.file}`;
  return new HeadsweepError(
    `${table}: the row ${key} appears ${where}; a checkpoint was written twice (delete the stale file and compact again)`,
    { stage: 'load', file: second.file, key: table },
  );
}

// ---------------------------------------------------------------------------------------
// Gathering columns in sorted order

/**
 * Column `field` in sorted order: output row r is row fromIndex[r] of chunk fromChunk[r].
 * Null slots hold zeros, so equal rows always give equal bytes.
 */
function gather(field: Field, datas: Data[], fromChunk: Uint32Array, fromIndex: Uint32Array, where: string): Data {
  const n = fromChunk.length;
  const bitmap = new Uint8Array(Math.ceil(n / 8));
  let nullCount = 0;
  const valid = (r: number): boolean => {
    const d = datas[fromChunk[r]];
    if (d.nullCount > 0 && !d.getValid(fromIndex[r])) {
      nullCount++;
      return false;
    }
    bitmap[r >> 3] |= 1 << (r & 7);
    return true;
  };
  const nulls = () => (nullCount > 0 ? { nullBitmap: bitmap, nullCount } : { nullCount: 0 });
  const { type } = field;

  // Int32, Int64 (BigInt64Array) and Float64: one value per row.
  const fixed = (values: { [i: number]: number | bigint }) => {
    for (let r = 0; r < n; r++) {
      if (valid(r)) values[r] = (datas[fromChunk[r]].values as ArrayLike<number | bigint>)[fromIndex[r]];
    }
    return values as never;
  };
  // The validity bitmap is complete only once the values are gathered, hence `data` first.
  if (DataType.isInt(type)) {
    const data = fixed(new type.ArrayType(n));
    return makeData({ type, length: n, data, ...nulls() });
  }
  if (DataType.isFloat(type)) {
    const data = fixed(new type.ArrayType(n));
    return makeData({ type, length: n, data, ...nulls() });
  }
  // Bool: bit-packed values, bit (offset + i) of the chunk's bytes for its row i.
  if (DataType.isBool(type)) {
    const data = new Uint8Array(Math.ceil(n / 8));
    for (let r = 0; r < n; r++) {
      const d = datas[fromChunk[r]];
      const bit = d.offset + fromIndex[r];
      if (valid(r) && ((d.values as Uint8Array)[bit >> 3] >> (bit & 7)) & 1) data[r >> 3] |= 1 << (r & 7);
    }
    return makeData({ type, length: n, data, ...nulls() });
  }
  if (DataType.isUtf8(type)) {
    const { valueOffsets, values } = gatherRanges(datas, fromChunk, fromIndex, valid, (d) => d.values as Uint8Array, Uint8Array);
    return makeData({ type, length: n, valueOffsets, data: values, ...nulls() });
  }
  if (DataType.isList(type) && DataType.isInt(type.children[0].type) && type.children[0].type.bitWidth === 32) {
    const { valueOffsets, values } = gatherRanges(datas, fromChunk, fromIndex, valid, (d) => d.children[0].values as Int32Array, Int32Array);
    const child = makeData({ type: type.children[0].type, length: values.length, data: values });
    return makeData({ type, length: n, valueOffsets, child, ...nulls() });
  }
  throw new HeadsweepError(`compact: column ${where} has type ${type}, which compaction does not handle`, { stage: 'write', key: where });
}

/**
 * Variable-width values (Utf8 bytes, List<Int32> items) in sorted order: row r's items
 * are items [offsets[j], offsets[j + 1]) of its chunk's flat item array.
 */
function gatherRanges<A extends Uint8Array | Int32Array>(
  datas: Data[], fromChunk: Uint32Array, fromIndex: Uint32Array, valid: (r: number) => boolean,
  itemsOf: (d: Data) => A, Items: new (n: number) => A,
): { valueOffsets: Int32Array; values: A } {
  const n = fromChunk.length;
  const valueOffsets = new Int32Array(n + 1);
  const present = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const offsets = datas[fromChunk[r]].valueOffsets as Int32Array;
    const j = fromIndex[r];
    present[r] = valid(r) ? 1 : 0;
    valueOffsets[r + 1] = valueOffsets[r] + (present[r] === 1 ? offsets[j + 1] - offsets[j] : 0);
  }
  const values = new Items(valueOffsets[n]);
  for (let r = 0; r < n; r++) {
    if (present[r] === 0) continue;
    const d = datas[fromChunk[r]];
    const offsets = d.valueOffsets as Int32Array;
    const j = fromIndex[r];
    values.set(itemsOf(d).subarray(offsets[j], offsets[j + 1]), valueOffsets[r]);
  }
  return { valueOffsets, values };
}

// ---------------------------------------------------------------------------------------
// Parquet parts

/** `<dir>/<table>/run=<run>/part-<k>.parquet` for each run's slice of the sorted rows. */
async function writeParquetParts(dir: string, table: TableName, sorted: Table, partRows: number): Promise<string[]> {
  const runs = sorted.getChild('run')!;
  const written: string[] = [];
  let start = 0;
  while (start < sorted.numRows) {
    const run = runs.get(start) as string;
    let end = start + 1;
    while (end < sorted.numRows && runs.get(end) === run) end++;
    for (let k = 0, from = start; from < end; k++, from += partRows) {
      const part = sorted.slice(from, Math.min(end, from + partRows));
      written.push(...await writeTableFile(dir, table, run, `part-${k}`, part, ['parquet']));
    }
    start = end;
  }
  return written;
}

// ---------------------------------------------------------------------------------------
// Source manifests

/** The fields of a sweep's manifest that compaction reports; others are allowed and ignored. */
const SourceManifestSchema = z.looseObject({
  name: z.string(),
  status: z.string(),
  started_at: z.string(),
  finished_at: z.string(),
  backend: z.string(),
  exit_code: z.number().int(),
  tables_version: z.number().int().min(1).default(1),
  counts: z.looseObject({
    checkpoints_planned: z.number().int(),
    scored: z.number().int(),
    failed: z.number().int(),
  }),
});

function readSourceManifests(inputs: readonly string[]): Pick<CompactedManifest, 'sources' | 'shards' | 'warnings'> {
  const sources: SourceManifest[] = [];
  const shards: Shard[] = [];
  const warnings: string[] = [];
  for (const input of inputs) {
    const found = readdirSync(input)
      .map((name) => ({ name, shard: shardOfManifestFile(name) }))
      .filter((m): m is { name: string; shard: Shard | null } => m.shard !== undefined)
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    if (found.length === 0) warnings.push(`${input}: no manifest.json or manifest.shard-<i>-of-<n>.json (a sweep writes it when it ends)`);
    for (const { name, shard } of found) {
      const file = join(input, name);
      const m = parseManifest(file);
      if (shard !== null) shards.push(shard);
      if (m.status !== 'finished') warnings.push(`${file}: status '${m.status}', so its sweep did not try every checkpoint`);
      sources.push({
        file,
        shard: shard === null ? null : shardLabel(shard),
        name: m.name,
        status: m.status,
        started_at: m.started_at,
        finished_at: m.finished_at,
        backend: m.backend,
        exit_code: m.exit_code,
        tables_version: m.tables_version,
        counts: { checkpoints_planned: m.counts.checkpoints_planned, scored: m.counts.scored, failed: m.counts.failed },
      });
    }
  }
  if (shards.length === 0) return { sources, shards: null, warnings };
  const counts = [...new Set(shards.map((s) => s.count))].sort((a, b) => a - b);
  if (counts.length > 1) warnings.push(`shard manifests disagree on the number of shards (${counts.join(', ')})`);
  const count = Math.max(...counts);
  const present = [...new Set(shards.filter((s) => s.count === count).map((s) => s.index))].sort((a, b) => a - b);
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !present.includes(i));
  if (missing.length > 0) warnings.push(`no manifest from shard(s) ${missing.map((i) => `${i}/${count}`).join(', ')}: not finished, or not written into these roots`);
  return { sources, shards: { count, present, missing }, warnings };
}

function parseManifest(file: string): z.infer<typeof SourceManifestSchema> {
  let json: unknown;
  try {
    json = JSON.parse(readRegularFile(file).toString('utf8'));
  } catch (cause) {
    throw new HeadsweepError(`${file}: not a readable JSON manifest: ${cause instanceof FileProblem ? cause.reason : parserMessage(cause)}`, { stage: 'load', file, cause });
  }
  const parsed = SourceManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new HeadsweepError(`${file} → at ${issue.path.join('.')}: ${issue.message}`, { stage: 'load', file, key: issue.path.join('.') });
  }
  return parsed.data;
}

function sumCounts(sources: readonly SourceManifest[]): { checkpoints_planned: number; scored: number; failed: number } {
  const total = { checkpoints_planned: 0, scored: 0, failed: 0 };
  for (const s of sources) {
    total.checkpoints_planned += s.counts.checkpoints_planned;
    total.scored += s.counts.scored;
    total.failed += s.counts.failed;
  }
  return total;
}
