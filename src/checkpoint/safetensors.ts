/**
 * safetensors container: 8-byte little-endian header length N, N bytes of JSON header,
 * then raw little-endian tensor data addressed by `data_offsets` relative to the data
 * start. Spec: https://github.com/huggingface/safetensors#format
 *
 * The reader validates the whole header before allocating anything, then reads each
 * tensor that is asked for straight into its own typed array (one read per tensor, no
 * whole-file buffer), so a file of any size costs only the tensors it yields.
 */
import { closeSync, fstatSync, openSync, readSync, renameSync, writeSync, unlinkSync } from 'node:fs';
import { checkpointError } from '../errors.ts';

export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** The safetensors reference implementation caps the header at 100 MB. */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: DType;
  shape: number[];
  /** Byte range within the data section, [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Absolute file offset of the data section. */
  dataStart: number;
  fileSize: number;
}

/** A host tensor as headsweep passes it around: float32, row-major. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function readExactly(fd: number, file: string, buf: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = readSync(fd, buf, done, buf.byteLength - done, position + done);
    if (n === 0) throw checkpointError(file, `truncated file: ${what} ends past the end of the file`);
    done += n;
  }
}

/** Reads and validates the header of an open file. Throws a HeadsweepError naming `file`. */
export function readHeader(fd: number, file: string): SafetensorsHeader {
  const fileSize = fstatSync(fd).size;
  if (fileSize < 8) {
    throw checkpointError(file, `truncated file: ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const lenBuf = new Uint8Array(8);
  readExactly(fd, file, lenBuf, 0, 'header length');
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
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
  } catch (err) {
    throw checkpointError(file, `header is not valid JSON (${(err as Error).message})`, undefined, err);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw checkpointError(file, 'header is not a JSON object');
  }

  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    if (key === '__metadata__') {
      metadata = parseMetadata(file, value);
      continue;
    }
    tensors.set(key, parseTensorInfo(file, key, value, dataSize));
  }
  checkOverlaps(file, tensors);
  return { tensors, metadata, dataStart, fileSize };
}

function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw checkpointError(file, '__metadata__ is not an object of strings', '__metadata__');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw checkpointError(file, `__metadata__.${k} is not a string`, `__metadata__.${k}`);
    out[k] = v;
  }
  return out;
}

function parseTensorInfo(file: string, key: string, value: unknown, dataSize: number): TensorInfo {
  const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (value === null || typeof value !== 'object') {
    throw checkpointError(file, `tensor '${key}' has no dtype/shape/data_offsets entry`, key);
  }
  if (typeof v.dtype !== 'string' || !(v.dtype in DTYPE_BYTES)) {
    throw checkpointError(file, `tensor '${key}' has unknown dtype ${JSON.stringify(v.dtype)}`, key);
  }
  const dtype = v.dtype as DType;
  if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw checkpointError(file, `tensor '${key}' has an invalid shape ${JSON.stringify(v.shape)}`, key);
  }
  const shape = v.shape as number[];
  const offs = v.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw checkpointError(file, `tensor '${key}' has invalid data_offsets ${JSON.stringify(offs)}`, key);
  }
  const [begin, end] = offs as [number, number];
  if (begin > end || end > dataSize) {
    throw checkpointError(
      file,
      `tensor '${key}' data_offsets [${begin}, ${end}] are out of range of the ${dataSize}-byte data section`,
      key,
    );
  }
  const expected = product(shape) * DTYPE_BYTES[dtype];
  if (end - begin !== expected) {
    throw checkpointError(
      file,
      `tensor '${key}' holds ${end - begin} bytes but shape [${shape.join(', ')}] × ${dtype} needs ${expected}`,
      key,
    );
  }
  return { dtype, shape, begin, end };
}

function checkOverlaps(file: string, tensors: Map<string, TensorInfo>): void {
  const spans = [...tensors.entries()].filter(([, t]) => t.end > t.begin).sort((a, b) => a[1].begin - b[1].begin);
  for (let i = 1; i < spans.length; i++) {
    const [prevKey, prev] = spans[i - 1];
    const [key, cur] = spans[i];
    if (cur.begin < prev.end) {
      throw checkpointError(file, `tensors '${prevKey}' and '${key}' overlap in the data section`, key);
    }
  }
}

/** Widens F16 bits to float32 (IEEE 754 half: 1 sign, 5 exponent, 10 mantissa bits). */
function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) out[i] = sign * frac * 2 ** -24;
    else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}

/** BF16 is the top half of a float32. */
function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/** Reads one floating-point tensor as float32. The host must be little-endian (x86, Arm). */
export function readTensor(fd: number, file: string, header: SafetensorsHeader, key: string): HostTensor {
  const info = header.tensors.get(key);
  if (!info) throw checkpointError(file, `missing tensor '${key}'`, key);
  const count = product(info.shape);
  const position = header.dataStart + info.begin;
  switch (info.dtype) {
    case 'F32': {
      const data = new Float32Array(count);
      readExactly(fd, file, new Uint8Array(data.buffer), position, `tensor '${key}'`);
      return { shape: info.shape, data };
    }
    case 'F16':
    case 'BF16': {
      const bits = new Uint16Array(count);
      readExactly(fd, file, new Uint8Array(bits.buffer), position, `tensor '${key}'`);
      return { shape: info.shape, data: info.dtype === 'F16' ? f16ToF32(bits) : bf16ToF32(bits) };
    }
    case 'F64': {
      const wide = new Float64Array(count);
      readExactly(fd, file, new Uint8Array(wide.buffer), position, `tensor '${key}'`);
      return { shape: info.shape, data: Float32Array.from(wide) };
    }
    default:
      throw checkpointError(file, `tensor '${key}' has dtype ${info.dtype}; weights must be F32, F16, BF16 or F64`, key);
  }
}

/** Opens a file, reads its header and the requested tensors, and always closes it. */
export function withSafetensors<T>(file: string, fn: (fd: number, header: SafetensorsHeader) => T): T {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : `cannot open (${code ?? (err as Error).message})`;
    throw checkpointError(file, reason, undefined, err);
  }
  try {
    return fn(fd, readHeader(fd, file));
  } finally {
    closeSync(fd);
  }
}

export interface TensorToWrite {
  shape: number[];
  data: Float32Array;
}

/**
 * Writes F32 tensors and string metadata as safetensors. Keys are written sorted and
 * the header is padded with spaces to a multiple of 8 bytes, as the reference writer
 * does, so other readers (Python `safetensors`, TransformerLens) accept the file. The
 * file appears under its name only when complete (temp file + rename).
 */
export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): void {
  const keys = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const key of keys) {
    const t = tensors[key];
    if (t.data.length !== product(t.shape)) {
      throw checkpointError(file, `tensor '${key}' has ${t.data.length} values but shape [${t.shape.join(', ')}]`, key);
    }
    header[key] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  const raw = new TextEncoder().encode(json);
  json += ' '.repeat((8 - (raw.byteLength % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const lenBytes = new Uint8Array(8);
  new DataView(lenBytes.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);

  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, lenBytes);
    writeSync(fd, headerBytes);
    for (const key of keys) {
      const d = tensors[key].data;
      writeSync(fd, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
    closeSync(fd);
    renameSync(tmp, file);
  } catch (err) {
    try { closeSync(fd); } catch { /* already closed */ }
    try { unlinkSync(tmp); } catch { /* never created */ }
    throw checkpointError(file, `cannot write (${(err as Error).message})`, undefined, err);
  }
}
