/**
 * safetensors container: 8-byte little-endian header length N, N bytes of JSON header,
 * then raw little-endian tensor data addressed by `data_offsets` relative to the data
 * start. Spec: https://github.com/huggingface/safetensors#format
 *
 * The reader validates the whole header before allocating anything, then reads each
 * tensor that is asked for straight into its own typed array (one read per tensor, no
 * whole-file buffer), so a file of any size costs only the tensors it yields.
 *
 * Validation follows the reference implementation (Rust `safetensors`, which Python
 * `safe_open` uses), so headsweep accepts exactly the files other readers accept:
 * the tensors must tile the data section from byte 0 to the end of the file with no
 * gap, no overlap and no trailing bytes. Bytes no tensor claims mean the header does
 * not describe the data (a header rewritten or a file appended to), so they are an
 * error, not something to skip.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { checkpointError } from '../errors.ts';

export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** The dtypes `readTensor` widens to float32; weights in any other dtype are an error. */
export const FLOAT_DTYPES: readonly DType[] = ['F32', 'F16', 'BF16', 'F64'];

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
  /** Tensor name → entry, in the order the header lists them. */
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

/** Element count of a shape, or null when it exceeds 2^53 (the reference calls this overflow). */
function elementCount(shape: readonly number[]): number | null {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return null;
  }
  return n;
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function readExactly(fd: number, file: string, buf: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < buf.byteLength) {
    let n: number;
    try {
      n = readSync(fd, buf, done, buf.byteLength - done, position + done);
    } catch (err) {
      throw checkpointError(file, `cannot read ${what} (${(err as Error).message})`, undefined, err);
    }
    if (n === 0) throw checkpointError(file, `truncated file: ${what} ends past the end of the file`);
    done += n;
  }
}

/** Reads and validates the header of an open file. Throws a HeadsweepError naming `file`. */
function readHeader(fd: number, file: string): SafetensorsHeader {
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
    if (typeof v !== 'string') throw checkpointError(file, `__metadata__.${k} is not a string`, `__metadata__.${k}`);
  }
  // fromEntries defines own properties, so a key such as "__proto__" stays plain data.
  return Object.fromEntries(entries) as Record<string, string>;
}

/** Checks one header entry on its own; where it sits among the others is `checkLayout`'s job. */
function parseTensorInfo(file: string, key: string, value: unknown): TensorInfo {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw checkpointError(file, `tensor '${key}' has no dtype/shape/data_offsets entry`, key);
  }
  const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof v.dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, v.dtype)) {
    throw checkpointError(
      file,
      `tensor '${key}' has unknown dtype ${JSON.stringify(v.dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`,
      key,
    );
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
  if (begin > end) {
    throw checkpointError(file, `tensor '${key}' data_offsets [${begin}, ${end}] are out of range: end before begin`, key);
  }
  const count = elementCount(shape);
  if (count === null) {
    throw checkpointError(file, `tensor '${key}' shape ${formatShape(shape)} overflows: more than 2^53 elements`, key);
  }
  const expected = count * DTYPE_BYTES[dtype];
  if (end - begin !== expected) {
    throw checkpointError(
      file,
      `tensor '${key}' holds ${end - begin} bytes but shape ${formatShape(shape)} × ${dtype} needs ${expected}`,
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
        `tensors '${prevKey}' and '${key}' overlap in the data section (byte ${t.begin} is before ${cursor})`,
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
        `truncated file: the header places tensor data up to byte ${cursor} of the data section but only ${dataSize} bytes follow the header (tensor '${key}' is cut)`,
        key,
      );
    }
    throw checkpointError(
      file,
      `tensor '${key}' data_offsets [${t.begin}, ${t.end}] are out of range of the ${dataSize}-byte data section`,
      key,
    );
  }
  if (gap !== undefined) {
    throw checkpointError(
      file,
      `data section bytes [${gap.from}, ${gap.to}) belong to no tensor (gap before tensor '${gap.key}')`,
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

/** All 65536 F16 values as float32, built on first use: decoding is then one lookup. */
let f16Table: Float32Array | undefined;

/** Decodes IEEE 754 half bits (1 sign, 5 exponent, 10 mantissa bits) to float32. */
export function f16ToF32(bits: Uint16Array): Float32Array {
  if (f16Table === undefined) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >> 10) & 0x1f;
      const frac = h & 0x3ff;
      if (exp === 0) f16Table[h] = sign * frac * 2 ** -24;
      else if (exp === 31) f16Table[h] = frac ? NaN : sign * Infinity;
      else f16Table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
    }
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16Table[bits[i]];
  return out;
}

/** BF16 is the top half of a float32. */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/** Shifts `m` right by `s` bits, rounding to nearest, ties to even. */
function roundShift(m: number, s: number): number {
  const q = m >>> s;
  const rem = m & ((1 << s) - 1);
  const half = 1 << (s - 1);
  return rem > half || (rem === half && (q & 1) === 1) ? q + 1 : q;
}

/** Encodes float32 values as F16 bits, rounding to nearest even as numpy and torch do. */
export function f32ToF16(values: Float32Array): Uint16Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const b = u32[i];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    const mant = b & 0x7fffff;
    const e = exp - 127 + 15;
    if (exp === 0xff) out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
    else if (e >= 0x1f) out[i] = sign | 0x7c00;
    // Half subnormals count units of 2^-24; below 2^-25 everything rounds to zero.
    else if (e < -10) out[i] = sign;
    else if (e <= 0) out[i] = sign | roundShift(mant | 0x800000, 14 - e);
    // A mantissa that rounds up to 0x400 carries into the exponent (and to inf at the top).
    else out[i] = sign | ((e << 10) + roundShift(mant, 13));
  }
  return out;
}

/** Encodes float32 values as BF16 bits (the top half, rounded to nearest even). */
export function f32ToBF16(values: Float32Array): Uint16Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const b = u32[i];
    const isNaN = (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0;
    out[i] = isNaN ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/**
 * Where tensor bytes are read to: a fresh buffer per tensor by default, or slices of one
 * buffer that a long-lived reader keeps for every file it loads.
 *
 * Why reuse: on the machines headsweep runs on, the first touch of freshly allocated
 * memory costs about as much as reading the file (a 200 MB checkpoint read into new
 * buffers took ~0.7 s, into a buffer already touched ~0.03 s). A pool thread that loads
 * one checkpoint after another therefore reads each into the same memory.
 */
export class ReadBuffer {
  private bytes = new Uint8Array(0);
  private used = 0;

  /**
   * Starts a new file needing up to `total` bytes (slices included): everything taken
   * from this buffer before is overwritten from here on.
   */
  reset(total: number): void {
    if (this.bytes.byteLength < total) this.bytes = new Uint8Array(total);
    this.used = 0;
  }

  /** The next `n` bytes, starting on an 8-byte boundary so every dtype can be viewed in place. */
  take(n: number): Uint8Array {
    const start = alignedSize(this.used);
    if (start + n > this.bytes.byteLength) throw new Error(`ReadBuffer: ${n} bytes asked past the ${this.bytes.byteLength} reserved`);
    this.used = start + n;
    return this.bytes.subarray(start, start + n);
  }
}

/** `n` rounded up to a multiple of 8: the room one slice of a ReadBuffer takes. */
export function alignedSize(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/**
 * Reads a tensor's bytes exactly as stored (little-endian), into a buffer of its own or,
 * when `into` is given, into the next slice of that reused buffer.
 */
export function readTensorBytes(fd: number, file: string, header: SafetensorsHeader, key: string, into?: ReadBuffer): Uint8Array {
  const info = header.tensors.get(key);
  if (!info) throw checkpointError(file, `missing tensor '${key}'`, key);
  // Either way the bytes start aligned for every dtype, so decoding can view them in place.
  const bytes = into ? into.take(info.end - info.begin) : new Uint8Array(info.end - info.begin);
  readExactly(fd, file, bytes, header.dataStart + info.begin, `tensor '${key}'`);
  return bytes;
}

/** Widens stored floating-point bytes to float32; F32 is viewed in place, not copied. */
export function decodeFloats(file: string, key: string, info: TensorInfo, bytes: Uint8Array): HostTensor {
  // The typed arrays below view file bytes in host order; safetensors is little-endian.
  if (endianness() !== 'LE') throw checkpointError(file, 'headsweep reads safetensors only on little-endian hosts', key);
  const count = bytes.byteLength / DTYPE_BYTES[info.dtype];
  switch (info.dtype) {
    case 'F32':
      return { shape: info.shape, data: new Float32Array(bytes.buffer, bytes.byteOffset, count) };
    case 'F16':
      return { shape: info.shape, data: f16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, count)) };
    case 'BF16':
      return { shape: info.shape, data: bf16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, count)) };
    case 'F64':
      return { shape: info.shape, data: Float32Array.from(new Float64Array(bytes.buffer, bytes.byteOffset, count)) };
    default:
      throw checkpointError(file, `tensor '${key}' has dtype ${info.dtype}; weights must be ${FLOAT_DTYPES.join(', ')}`, key);
  }
}

/** Refuses a block [row, row + rows) × [col, col + cols) that is not inside a 2-D tensor of `shape`. */
export function checkBlock(key: string, shape: readonly number[], row: number, rows: number, col: number, cols: number): void {
  const [height, width] = shape;
  if (shape.length !== 2 || row < 0 || col < 0 || rows < 0 || cols < 0 || row + rows > height || col + cols > width) {
    throw new Error(`block [${row}+${rows}, ${col}+${cols}] is outside '${key}' ${formatShape(shape)}`);
  }
}

/**
 * Blocks of 2-D float tensors read from an open safetensors file on demand, for matrices
 * not worth holding in memory whole: a model's W_E and W_U are most of its bytes, and
 * scoring reads only some rows of W_E (the prompt tokens) and one vocabulary slice of
 * each at a time (copying). The file stays open, so what is read is the file that was
 * hashed even if a new checkpoint is renamed over its path meanwhile.
 */
export class TensorFile {
  constructor(
    private readonly fd: number,
    readonly file: string,
    private readonly header: SafetensorsHeader,
  ) {}

  /**
   * rows [row, row + rows) × columns [col, col + cols) of a 2-D tensor, as float32,
   * row-major, into `into` when given. -> [rows · cols]
   */
  readBlock(key: string, row: number, rows: number, col: number, cols: number, into?: Float32Array): Float32Array {
    const info = this.header.tensors.get(key);
    if (!info) throw checkpointError(this.file, `missing tensor '${key}'`, key);
    checkBlock(key, info.shape, row, rows, col, cols);
    const width = info.shape[1];
    const size = DTYPE_BYTES[info.dtype];
    const out = into ?? new Float32Array(rows * cols);
    // Whole rows are one read; a column range is one read per row.
    const [runs, runLength] = cols === width ? [1, rows * cols] : [rows, cols];
    for (let r = 0; r < runs; r++) {
      const at = this.header.dataStart + info.begin + ((row + r) * width + col) * size;
      const what = `tensor '${key}'`;
      if (info.dtype === 'F32') {
        // Straight into the output: no buffer in between to allocate and touch.
        readExactly(this.fd, this.file, new Uint8Array(out.buffer, out.byteOffset + r * runLength * 4, runLength * 4), at, what);
      } else {
        const bytes = this.scratch(runLength * size);
        readExactly(this.fd, this.file, bytes, at, what);
        out.set(decodeFloats(this.file, key, { ...info, shape: [runLength] }, bytes).data, r * runLength);
      }
    }
    return out;
  }

  private scratchBytes = new Uint8Array(0);

  /** A reused byte buffer of `n` bytes for reads that need decoding. */
  private scratch(n: number): Uint8Array {
    if (this.scratchBytes.byteLength < n) this.scratchBytes = new Uint8Array(n);
    return this.scratchBytes.subarray(0, n);
  }

  /** The whole tensor, as `readTensor` would have read it. */
  readAll(key: string): HostTensor {
    return readTensor(this.fd, this.file, this.header, key);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Reads one floating-point tensor as float32. */
export function readTensor(fd: number, file: string, header: SafetensorsHeader, key: string): HostTensor {
  const info = header.tensors.get(key);
  if (!info) throw checkpointError(file, `missing tensor '${key}'`, key);
  return decodeFloats(file, key, info, readTensorBytes(fd, file, header, key));
}

/**
 * Reads the raw header bytes (length prefix + JSON) again; they are small, and hashing them
 * with the tensor bytes gives the sha256 of the whole file without a second pass over it.
 */
export function readHeaderBytes(fd: number, file: string, header: SafetensorsHeader): Uint8Array {
  const bytes = new Uint8Array(header.dataStart);
  readExactly(fd, file, bytes, 0, 'header');
  return bytes;
}

/**
 * Opens a file, reads and validates its header, runs `fn`, and closes the file, unless
 * `fn` called `keepOpen` (it then owns the descriptor: a TensorFile it returns).
 */
export function withSafetensors<T>(file: string, fn: (fd: number, header: SafetensorsHeader, keepOpen: () => void) => T): T {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : `cannot open (${code ?? (err as Error).message})`;
    throw checkpointError(file, reason, undefined, err);
  }
  let kept = false;
  try {
    return fn(fd, readHeader(fd, file), () => {
      kept = true;
    });
  } finally {
    if (!kept) closeSync(fd);
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
      throw checkpointError(file, `tensor '${key}' has ${t.data.length} values but shape ${formatShape(t.shape)}`, key);
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
