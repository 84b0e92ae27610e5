/**
 * safetensors container: 8-byte little-endian header length N, N bytes of JSON header,
 * then raw little-endian tensor data addressed by `data_offsets` relative to the data
 * start. Spec: https://github.com/huggingface/safetensors#format
 *
 * The reader validates the whole header before allocating anything; the tensors are then
 * read in place from the open file (read.ts), so a file of any size costs only the
 * tensors it yields.
 *
 * Validation follows the reference implementation (Rust `safetensors`, which Python
 * `safe_open` uses), so headsweep accepts exactly the files other readers accept:
 * the tensors must tile the data section from byte 0 to the end of the file with no
 * gap, no overlap and no trailing bytes. Bytes no tensor claims mean the header does
 * not describe the data (a header rewritten or a file appended to), so they are an
 * error, not something to skip.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { checkpointError, formatShape, parserMessage, quote } from '../../errors.ts';
import { jsonShapeProblem } from '../json.ts';
import { openRegularFile, readProblem } from '../../files.ts';
import { DTYPE_BYTES, f32ToBF16, f32ToF16, isFloatDType, FLOAT_DTYPES, type DType } from '../dtypes.ts';
import { elementCount, readExactly, rowMajorStrides, ViewReader, type HostTensor, type StoredTensor } from '../read.ts';

/** The safetensors reference implementation caps the header at 100 MB. */
const MAX_HEADER_BYTES = 100_000_000;

/**
 * Tensors a header may list: twice the largest TL model's (4096 layers of 16 tensors), far
 * past any real checkpoint file. It bounds what parsing a header costs:
 * a 100 MB header of empty entries would otherwise take gigabytes.
 */
const MAX_TENSORS = 1 << 17;

/** Dimensions a tensor may have: real ones have at most 5. */
const MAX_RANK = 16;

export interface TensorInfo {
  dtype: DType;
  shape: number[];
  /** Byte range within the data section, [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Tensor name → entry, in the order the header lists them. */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Absolute file offset of the data section. */
  dataStart: number;
  fileSize: number;
}

/** Reads and validates the header of an open file. Throws a HeadsweepError naming `file`. */
export function readSafetensorsHeader(fd: number, file: string): SafetensorsHeader {
  const stat = fstatSync(fd);
  if (!stat.isFile()) {
    throw checkpointError(file, stat.isDirectory() ? 'is a directory, not a safetensors file' : 'is not a regular file');
  }
  const fileSize = stat.size;
  if (fileSize < 8) {
    throw checkpointError(file, `truncated file: ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const lenBuf = new Uint8Array(8);
  readExactly(fd, file, lenBuf, 0, 'header length');
  // Compared as a bigint so a corrupt length such as 2^63 is rejected before any allocation.
  const headerLen = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(fileSize - 8)) {
    throw checkpointError(file, `header length ${headerLen} runs beyond the end of the file (${fileSize} bytes)`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw checkpointError(file, `header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(headerLen);
  const headerBuf = new Uint8Array(n);
  readExactly(fd, file, headerBuf, 8, 'header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf);
  } catch (err) {
    throw checkpointError(file, `header is not valid JSON (${parserMessage(err)})`, undefined, err);
  }
  // An object of entries whose shape and data_offsets are flat lists: 3 levels, 3 containers a tensor.
  const shape = jsonShapeProblem(text, { depth: 3, containers: 3 * MAX_TENSORS + 2 });
  if (shape !== null) {
    throw checkpointError(file, `header is not a safetensors header: it ${shape}, where a header is an object of tensor entries (at most ${MAX_TENSORS}) with flat shape and data_offsets lists`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw checkpointError(file, `header is not valid JSON (${parserMessage(err)})`, undefined, err);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw checkpointError(file, 'header is not a JSON object');
  }

  const dataStart = 8 + n;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    if (key === '__metadata__') {
      metadata = parseMetadata(file, value);
      continue;
    }
    tensors.set(key, parseTensorInfo(file, key, value));
  }
  checkLayout(file, tensors, fileSize - dataStart);
  return { tensors, metadata, dataStart, fileSize };
}

function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw checkpointError(file, '__metadata__ is not an object of strings', '__metadata__');
  }
  const entries = Object.entries(value);
  for (const [k, v] of entries) {
    if (typeof v !== 'string') throw checkpointError(file, `__metadata__ entry ${quote(k)} is ${quote(v, 60)}, not a string`, `__metadata__.${k}`);
  }
  // fromEntries defines own properties, so a key such as "__proto__" stays plain data.
  return Object.fromEntries(entries) as Record<string, string>;
}

/** Checks one header entry on its own; where it sits among the others is `checkLayout`'s job. */
function parseTensorInfo(file: string, key: string, value: unknown): TensorInfo {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw checkpointError(file, `tensor ${quote(key)} has no dtype/shape/data_offsets entry`, key);
  }
  const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof v.dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, v.dtype)) {
    throw checkpointError(
      file,
      `tensor ${quote(key)} has unknown dtype ${quote(v.dtype, 40)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`,
      key,
    );
  }
  const dtype = v.dtype as DType;
  if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw checkpointError(file, `tensor ${quote(key)} has an invalid shape ${quote(v.shape, 80)}`, key);
  }
  if (v.shape.length > MAX_RANK) {
    throw checkpointError(file, `tensor ${quote(key)} has ${v.shape.length} dimensions; a tensor has at most ${MAX_RANK}`, key);
  }
  const shape = v.shape as number[];
  const offs = v.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw checkpointError(file, `tensor ${quote(key)} has invalid data_offsets ${quote(offs, 80)}`, key);
  }
  const [begin, end] = offs as [number, number];
  if (begin > end) {
    throw checkpointError(file, `tensor ${quote(key)} data_offsets [${begin}, ${end}] are out of range: end before begin`, key);
  }
  const count = elementCount(shape);
  if (count === null) {
    throw checkpointError(file, `tensor ${quote(key)} shape ${formatShape(shape)} overflows: more than 2^53 elements`, key);
  }
  const expected = count * DTYPE_BYTES[dtype];
  if (end - begin !== expected) {
    throw checkpointError(
      file,
      `tensor ${quote(key)} holds ${end - begin} bytes but shape ${formatShape(shape)} × ${dtype} needs ${expected}`,
      key,
    );
  }
  return { dtype, shape, begin, end };
}

/**
 * The tensors, sorted by offset, must tile [0, dataSize) exactly (see the file comment).
 * Reported in the order that names the likeliest cause: overlaps first, then data the
 * file lacks (truncated when the tensors are packed, else offsets out of range), then
 * bytes no tensor claims.
 */
function checkLayout(file: string, tensors: Map<string, TensorInfo>, dataSize: number): void {
  const spans = [...tensors.entries()].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let cursor = 0;
  let prevKey = '';
  let gap: { key: string; from: number; to: number } | undefined;
  for (const [key, t] of spans) {
    if (t.begin < cursor) {
      throw checkpointError(
        file,
        `tensors ${quote(prevKey)} and ${quote(key)} overlap in the data section (byte ${t.begin} is before ${cursor})`,
        key,
      );
    }
    if (t.begin > cursor) gap ??= { key, from: cursor, to: t.begin };
    cursor = t.end;
    prevKey = key;
  }
  const outside = spans.find(([, t]) => t.end > dataSize);
  if (outside !== undefined) {
    const [key, t] = outside;
    if (gap === undefined) {
      throw checkpointError(
        file,
        `truncated file: the header places tensor data up to byte ${cursor} of the data section but only ${dataSize} bytes follow the header (tensor ${quote(key)} is cut)`,
        key,
      );
    }
    throw checkpointError(
      file,
      `tensor ${quote(key)} data_offsets [${t.begin}, ${t.end}] are out of range of the ${dataSize}-byte data section`,
      key,
    );
  }
  if (gap !== undefined) {
    throw checkpointError(
      file,
      `data section bytes [${gap.from}, ${gap.to}) belong to no tensor (gap before tensor ${quote(gap.key)})`,
      gap.key,
    );
  }
  if (cursor < dataSize) {
    throw checkpointError(
      file,
      `data section has ${dataSize - cursor} trailing bytes after the last tensor (tensors cover ${cursor} of ${dataSize} bytes)`,
    );
  }
}

/**
 * The header's tensors as stored tensors (container-neutral, see read.ts): each its own
 * storage, row-major, in header order.
 */
export function storedTensors(file: string, header: SafetensorsHeader): Map<string, StoredTensor> {
  const out = new Map<string, StoredTensor>();
  for (const [name, t] of header.tensors) {
    const storage = { file, begin: header.dataStart + t.begin, bytes: t.end - t.begin, label: `tensor ${quote(name)}` };
    out.set(name, { name, dtype: t.dtype, shape: t.shape, strides: rowMajorStrides(t.shape), offset: 0, storage });
  }
  return out;
}

/** Reads one floating-point tensor as float32. */
export function readTensor(fd: number, file: string, header: SafetensorsHeader, key: string): HostTensor {
  const t = storedTensors(file, header).get(key);
  if (!t) throw checkpointError(file, `missing tensor ${quote(key)}`, key);
  if (!isFloatDType(t.dtype)) throw checkpointError(file, `tensor ${quote(key)} has dtype ${t.dtype}; weights must be ${FLOAT_DTYPES.join(', ')}`, key);
  const data = new Float32Array(elementCount(t.shape)!);
  new ViewReader(() => fd, new Uint8Array(1 << 20)).read({ dtype: t.dtype, shape: t.shape, strides: t.strides, base: t.storage.begin, storage: t.storage }, data);
  return { shape: t.shape, data };
}

/** Opens a file, reads and validates its header, runs `fn`, and closes the file. */
export function withSafetensors<T>(file: string, fn: (fd: number, header: SafetensorsHeader) => T): T {
  let fd: number;
  try {
    fd = openRegularFile(file);
  } catch (err) {
    throw checkpointError(file, readProblem(err), undefined, err);
  }
  try {
    return fn(fd, readSafetensorsHeader(fd, file));
  } finally {
    closeSync(fd);
  }
}

/** The dtypes `writeSafetensors` can store float32 values as. */
export type WriteDType = 'F32' | 'F16' | 'BF16';

export interface TensorToWrite {
  shape: number[];
  data: Float32Array;
  /** Stored dtype; F16 and BF16 round to nearest even. Default F32. */
  dtype?: WriteDType;
}

function encode(t: TensorToWrite): Uint8Array {
  const stored = t.dtype === 'F16' ? f32ToF16(t.data) : t.dtype === 'BF16' ? f32ToBF16(t.data) : t.data;
  return new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}

/**
 * Writes float tensors and string metadata as safetensors. Keys are written sorted and
 * the header is padded with spaces to a multiple of 8 bytes, as the reference writer
 * does, so other readers (Python `safetensors`, TransformerLens) accept the file. The
 * file appears under its name only when complete (temp file + rename); on any failure
 * the temp file is removed and the target is left as it was.
 */
export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): void {
  const keys = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const key of keys) {
    if (key === '__metadata__') throw checkpointError(file, "'__metadata__' cannot name a tensor", key);
    const t = tensors[key];
    const count = elementCount(t.shape);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) || count !== t.data.length) {
      throw checkpointError(file, `tensor ${quote(key)} has ${t.data.length} values but shape ${formatShape(t.shape)}`, key);
    }
    const blob = encode(t);
    header[key] = { dtype: t.dtype ?? 'F32', shape: t.shape, data_offsets: [offset, offset + blob.byteLength] };
    blobs.push(blob);
    offset += blob.byteLength;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  const headerBytes = new Uint8Array(raw.byteLength + ((8 - (raw.byteLength % 8)) % 8)).fill(0x20);
  headerBytes.set(raw);
  const lenBytes = new Uint8Array(8);
  new DataView(lenBytes.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);

  // A unique temp name: worker threads of one process may write beside each other.
  const tmp = `${file}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx');
    writeAll(fd, lenBytes);
    writeAll(fd, headerBytes);
    for (const blob of blobs) writeAll(fd, blob);
    fsyncSync(fd);
    const open = fd;
    fd = undefined;
    closeSync(open);
    renameSync(tmp, file);
  } catch (err) {
    // Close only a descriptor still ours: a closed number may already belong to another thread.
    try {
      unlinkSync(tmp);
      if (fd !== undefined) closeSync(fd);
    } catch {
      // The temp file was never created, or is gone already; the write error is the one to report.
    }
    throw checkpointError(file, `cannot write (${(err as Error).message})`, undefined, err);
  }
}
