/**
 * Reading tensors out of checkpoint files, whatever the container: every tensor headsweep
 * reads is a strided view on bytes of one file (`StridedView`), and one routine turns a
 * view into float32 values (`ViewReader.read`).
 *
 * Why one routine: a TL weight is rarely a stored tensor as is. GPT-2's W_Q is every third
 * block of columns of `c_attn.weight`, NeoX's W_Q is every third row-block of
 * `query_key_value.weight` transposed, W_U is often `wte.weight` transposed, and a torch
 * tensor may itself be a non-contiguous view of a shared storage. All of these are
 * strides and an offset on the stored bytes (see convert.ts), so reading needs no
 * intermediate tensor: values are decoded from the file's bytes straight into the one
 * float32 copy the caller keeps, through a bounded window when they are not contiguous.
 */
import { closeSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { checkpointError, formatShape, quote } from '../errors.ts';
import { openRegularFile, readProblem } from '../files.ts';
import { DTYPE_BYTES, f16Values, type DType } from './dtypes.ts';

/** A host tensor as headsweep passes it around: float32, row-major. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Bytes of one file that hold a tensor's elements: a safetensors entry, or a torch storage record. */
export interface Storage {
  /** The file, as opened. */
  file: string;
  /** Absolute offset of the first byte in `file`, and the byte length. */
  begin: number;
  bytes: number;
  /** What the container calls it, for messages: a tensor name or a zip record. */
  label: string;
}

/** A tensor as a container stores it: where its elements are, not their values. */
export interface StoredTensor {
  /** The name the source gives it (`h.0.attn.c_attn.weight`). */
  name: string;
  dtype: DType;
  shape: number[];
  /** In elements: row-major for safetensors, as pickled for torch. */
  strides: number[];
  /** Elements from the start of the storage to element [0, …, 0]. */
  offset: number;
  storage: Storage;
}

/** Element [i₀, …] of the view is at byte `base + (Σ iₖ·strides[k])·itemsize` of `storage.file`. */
export interface StridedView {
  dtype: DType;
  shape: number[];
  /** In elements, all ≥ 0. */
  strides: number[];
  /** Absolute byte offset of element [0, …, 0]. */
  base: number;
  storage: Storage;
}

/** Element count of a shape, or null when it exceeds 2^53. */
export function elementCount(shape: readonly number[]): number | null {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return null;
  }
  return n;
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

/**
 * Where tensor values are read to: fresh memory per tensor by default, or slices of one
 * buffer that a long-lived reader keeps for every checkpoint it loads.
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
   * Starts a new checkpoint needing up to `total` bytes (slices included): everything
   * taken from this buffer before is overwritten from here on.
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

/** Refuses a block [row, row + rows) × [col, col + cols) that is not inside a 2-D tensor of `shape`. */
export function checkBlock(key: string, shape: readonly number[], row: number, rows: number, col: number, cols: number): void {
  const [height, width] = shape;
  if (shape.length !== 2 || row < 0 || col < 0 || rows < 0 || cols < 0 || row + rows > height || col + cols > width) {
    throw new Error(`block [${row}+${rows}, ${col}+${cols}] is outside ${quote(key)} ${formatShape(shape)}`);
  }
}

/** The sub-view starting at `start` with extent `shape`. */
export function subView(v: StridedView, start: readonly number[], shape: number[]): StridedView {
  const item = DTYPE_BYTES[v.dtype];
  const base = v.base + start.reduce((at, s, k) => at + s * v.strides[k] * item, 0);
  return { ...v, shape, base };
}

/** Bytes from the first to one past the last element of a view (strides are ≥ 0). */
export function spanBytes(v: StridedView): number {
  if (v.shape.includes(0)) return 0;
  const last = v.shape.reduce((at, d, k) => at + (d - 1) * v.strides[k], 0);
  return (last + 1) * DTYPE_BYTES[v.dtype];
}

/** In elements: the strides of a packed row-major tensor (a safetensors entry). */
export function rowMajorStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    strides[k] = s;
    s *= shape[k];
  }
  return strides;
}

/** Whether the view's elements are its bytes in row-major order, with nothing between them. */
export function isContiguous(v: StridedView): boolean {
  const want = rowMajorStrides(v.shape);
  return v.shape.every((d, k) => d === 1 || v.strides[k] === want[k]);
}

/**
 * Copies a rows × cols block: out[oi + r·osr + c·osc] = value of src element si + r·sr + c·sc.
 * One per dtype, so the inner loop is a typed-array access and nothing else.
 */
type Kernel = (si: number, oi: number, rows: number, cols: number, sr: number, sc: number, osr: number, osc: number) => void;

function kernel(src: Uint8Array, dtype: DType, out: Float32Array): Kernel {
  const count = Math.floor(src.byteLength / DTYPE_BYTES[dtype]);
  switch (dtype) {
    case 'F32':
    case 'F64': {
      const f = dtype === 'F32' ? new Float32Array(src.buffer, src.byteOffset, count) : new Float64Array(src.buffer, src.byteOffset, count);
      return (si, oi, rows, cols, sr, sc, osr, osc) => {
        for (let r = 0; r < rows; r++) for (let c = 0, s = si + r * sr, o = oi + r * osr; c < cols; c++, s += sc, o += osc) out[o] = f[s];
      };
    }
    case 'F16': {
      const h = new Uint16Array(src.buffer, src.byteOffset, count);
      const table = f16Values();
      return (si, oi, rows, cols, sr, sc, osr, osc) => {
        for (let r = 0; r < rows; r++) for (let c = 0, s = si + r * sr, o = oi + r * osr; c < cols; c++, s += sc, o += osc) out[o] = table[h[s]];
      };
    }
    case 'BF16': {
      // BF16 is the top half of a float32: shift the bits into place in the output's own memory.
      const h = new Uint16Array(src.buffer, src.byteOffset, count);
      const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
      return (si, oi, rows, cols, sr, sc, osr, osc) => {
        for (let r = 0; r < rows; r++) for (let c = 0, s = si + r * sr, o = oi + r * osr; c < cols; c++, s += sc, o += osc) bits[o] = h[s] << 16;
      };
    }
    default:
      throw new Error(`scatter: ${dtype} is not a float dtype`);
  }
}

/** Tile edge for the last two dimensions: a transposed read then touches 64 cache lines per tile, not one per element. */
const TILE = 64;

/**
 * Decodes the elements of a strided region of `src` into `out`. `strides` index `src` in
 * elements from its first byte; `outStrides` index `out` from `outBase`.
 */
function scatter(
  src: Uint8Array, dtype: DType, shape: readonly number[], strides: readonly number[],
  out: Float32Array, outBase: number, outStrides: readonly number[],
): void {
  if (shape.includes(0)) return;
  // At least two dimensions: the last two are copied in tiles, the others by an odometer.
  const pad = Math.max(0, 2 - shape.length);
  const sh = [...new Array<number>(pad).fill(1), ...shape];
  const st = [...new Array<number>(pad).fill(0), ...strides];
  const os = [...new Array<number>(pad).fill(0), ...outStrides];
  const n = sh.length;
  const copy = kernel(src, dtype, out);
  const [rows, cols, sr, sc, osr, osc] = [sh[n - 2], sh[n - 1], st[n - 2], st[n - 1], os[n - 2], os[n - 1]];
  const idx = new Array<number>(n - 2).fill(0);
  let si = 0;
  let oi = outBase;
  for (;;) {
    for (let r = 0; r < rows; r += TILE) {
      for (let c = 0; c < cols; c += TILE) {
        copy(si + r * sr + c * sc, oi + r * osr + c * osc, Math.min(TILE, rows - r), Math.min(TILE, cols - c), sr, sc, osr, osc);
      }
    }
    let d = n - 3;
    for (; d >= 0; d--) {
      idx[d]++;
      si += st[d];
      oi += os[d];
      if (idx[d] < sh[d]) break;
      si -= st[d] * sh[d];
      oi -= os[d] * sh[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

/** Decodes the contiguous elements in `src` into `out` from `outOffset`. */
export function decodeInto(src: Uint8Array, dtype: DType, out: Float32Array, outOffset: number): void {
  const n = src.byteLength / DTYPE_BYTES[dtype];
  scatter(src, dtype, [n], [1], out, outOffset, [1]);
}

/** Bytes of a file already in memory: reads inside them cost no I/O. */
export interface Staged {
  file: string;
  begin: number;
  bytes: Uint8Array;
}

/**
 * Reads strided views into float32 arrays. Non-contiguous views go through `window`: a
 * region is read whole when at least half of its bytes are wanted and it fits, else it is
 * split along its outermost dimension, so a column slice of a row-major matrix costs one
 * read per row and a transposed matrix one read per window of rows.
 */
export class ViewReader {
  constructor(
    /** The open descriptor of each file views name. */
    private readonly fdOf: (file: string) => number,
    private readonly window: Uint8Array,
  ) {
    if (endianness() !== 'LE') throw new Error('headsweep reads checkpoints only on little-endian hosts');
  }

  /** Reads `v` into `out` from `outOffset`, row-major. `staged` bytes are used instead of the file where they cover the view. */
  read(v: StridedView, out: Float32Array, outOffset = 0, staged?: Staged): void {
    this.gather(v, out, outOffset, rowMajorStrides(v.shape), staged);
  }

  private gather(v: StridedView, out: Float32Array, outBase: number, outStrides: number[], staged: Staged | undefined): void {
    const count = elementCount(v.shape)!;
    if (count === 0) return;
    const item = DTYPE_BYTES[v.dtype];
    const span = spanBytes(v);
    const file = v.storage.file;
    if (staged !== undefined && staged.file === file && v.base >= staged.begin && v.base + span <= staged.begin + staged.bytes.byteLength) {
      scatter(staged.bytes.subarray(v.base - staged.begin), v.dtype, v.shape, v.strides, out, outBase, outStrides);
      return;
    }
    const what = `${v.storage.label}`;
    if (v.dtype === 'F32' && isContiguous(v) && isContiguous({ ...v, strides: outStrides })) {
      // Straight into the output: no window in between to fill and copy out of.
      readExactly(this.fdOf(file), file, new Uint8Array(out.buffer, out.byteOffset + outBase * 4, count * 4), v.base, what);
      return;
    }
    const dense = 2 * count * item >= span;
    if (dense && span <= this.window.byteLength) {
      const bytes = this.window.subarray(0, span);
      readExactly(this.fdOf(file), file, bytes, v.base, what);
      scatter(bytes, v.dtype, v.shape, v.strides, out, outBase, outStrides);
      return;
    }
    let k = -1;
    for (let d = 0; d < v.shape.length; d++) if (v.shape[d] > 1 && (k < 0 || v.strides[d] > v.strides[k])) k = d;
    const n = v.shape[k];
    const fit = Math.floor(this.window.byteLength / Math.max(1, v.strides[k] * item));
    const block = dense ? Math.max(1, Math.min(fit, Math.ceil(n / 2))) : 1;
    for (let i = 0; i < n; i += block) {
      const shape = v.shape.slice();
      shape[k] = Math.min(block, n - i);
      const start = v.shape.map((_, d) => (d === k ? i : 0));
      this.gather(subView(v, start, shape), out, outBase + i * outStrides[k], outStrides, staged);
    }
  }
}

/**
 * The files a checkpoint is read from, each opened once and kept open until `close`, so
 * that what is read later (weights left in the file) comes from the file that was
 * planned and hashed even if another is renamed over its path meanwhile.
 */
export class OpenFiles {
  private readonly fds = new Map<string, number>();

  fd(file: string): number {
    let fd = this.fds.get(file);
    if (fd === undefined) {
      try {
        fd = openRegularFile(file);
      } catch (err) {
        throw checkpointError(file, readProblem(err), undefined, err);
      }
      this.fds.set(file, fd);
    }
    return fd;
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}
