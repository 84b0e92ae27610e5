/**
 * Where table files go and in which formats: `<out>/<table>/run=<run>/<stem>.<ext>`
 * (TABLES.md). The hive-style `run=` folder lets DuckDB and pyarrow read `run` from paths.
 * Files are read back the same way by everything that reads them (reruns, compaction,
 * the report), as the current schema whatever tables version wrote them.
 */
import { tableFromIPC, util, type Table } from 'apache-arrow';
import { join } from 'node:path';
import { HeadsweepError, messageOf, shownPath } from '../../src/errors.ts';
import { readProblem, readRegularFile } from '../../src/files.ts';
import { asCurrentSchema, SCHEMAS, type TableName } from '../tables.ts';
import { arrowFileBytes } from './arrow.ts';
import { writeFileAtomic } from './atomic.ts';
import { parquetFileBytes, parquetTable } from './parquet.ts';

export const OUTPUT_FORMATS = ['arrow', 'parquet'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

const ENCODERS: Record<OutputFormat, (table: Table) => Uint8Array | Promise<Uint8Array>> = {
  arrow: arrowFileBytes,
  parquet: parquetFileBytes,
};

/** The bytes of `table` as a file in `format`. */
export async function tableFileBytes(table: Table, format: OutputFormat): Promise<Uint8Array> {
  return ENCODERS[format](table);
}

/** `<out>/<table>/run=<run>/<fileStem>.<format>`: the final path of one table file. */
export function tableFilePath(out: string, table: TableName, run: string, fileStem: string, format: OutputFormat): string {
  for (const [what, part] of [['run', run], ['file stem', fileStem]]) {
    if (part === '' || part === '.' || part === '..' || /[/\\]/.test(part)) {
      throw new HeadsweepError(`${what} '${part}' cannot be used in a file name under ${out}`, { stage: 'write', key: what });
    }
  }
  return join(out, table, `run=${run}`, `${fileStem}.${format}`);
}

/** Writes one table file per format, each atomically; returns the paths written. */
export async function writeTableFile(
  out: string, table: TableName, run: string, fileStem: string, data: Table, formats: readonly OutputFormat[],
): Promise<string[]> {
  if (!util.compareSchemas(SCHEMAS[table], data.schema)) {
    throw new HeadsweepError(`table ${table}: schema differs from TABLES.md, not writing it for run ${run}`, { stage: 'write', key: table });
  }
  const paths: string[] = [];
  for (const format of formats) {
    const path = tableFilePath(out, table, run, fileStem, format);
    await writeFileAtomic(path, await tableFileBytes(data, format));
    paths.push(path);
  }
  return paths;
}

/**
 * The rows of one `table` file, Arrow IPC or Parquet by its extension, as the current
 * schema (`asCurrentSchema`: a column an older file lacks is null). A file that cannot be
 * read is an error naming it.
 */
export async function readTableFile(file: string, table: TableName): Promise<Table> {
  const parquet = file.endsWith('.parquet');
  let bytes: Buffer;
  try {
    bytes = readRegularFile(file);
  } catch (cause) {
    throw new HeadsweepError(`${shownPath(file)}: ${readProblem(cause)}`, { stage: 'load', file, cause });
  }
  let data: Table;
  try {
    data = parquet ? await parquetTable(bytes) : tableFromIPC(bytes);
  } catch (cause) {
    throw new HeadsweepError(`${file}: not a readable ${parquet ? 'Parquet' : 'Arrow IPC'} file: ${messageOf(cause)}`, { stage: 'load', file, cause });
  }
  return asCurrentSchema(data, table, file);
}
