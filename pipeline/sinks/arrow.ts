/** Arrow IPC file format (Feather v2): random access, readable by pyarrow, pandas, DuckDB. */
import { tableToIPC, type Table } from 'apache-arrow';

export function arrowFileBytes(table: Table): Uint8Array {
  return tableToIPC(table, 'file');
}
