/**
 * Parquet through parquet-wasm (arrow-rs compiled to WebAssembly). Its Node entry is a
 * CommonJS module that compiles and instantiates the wasm synchronously when first
 * required, so there is no init call; it is imported lazily so sweeps that write only
 * Arrow never pay for that compile (a few MB) in each worker.
 */
import { tableFromIPC, tableToIPC, type Table } from 'apache-arrow';

export async function parquetFileBytes(table: Table): Promise<Uint8Array> {
  const { Table: WasmTable, WriterPropertiesBuilder, Compression, writeParquet } = await import('parquet-wasm');
  // parquet-wasm takes Arrow IPC *stream* bytes; it stores the Arrow schema in the file
  // metadata, so pyarrow reads strings back as Utf8 and Int64 stays Int64.
  const wasmTable = WasmTable.fromIPCStream(tableToIPC(table, 'stream'));
  const properties = new WriterPropertiesBuilder().setCompression(Compression.ZSTD).build();
  // Both arguments are moved into wasm and freed there.
  return writeParquet(wasmTable, properties);
}

/** The table in a Parquet file's bytes, with the Arrow schema the writer above stored in it. */
export async function parquetTable(bytes: Uint8Array): Promise<Table> {
  const { readParquet } = await import('parquet-wasm');
  // parquet-wasm hands back Arrow IPC stream bytes.
  return tableFromIPC(readParquet(bytes).intoIPCStream());
}
