/**
 * The element types checkpoints store, and the float codecs: F16 and BF16 are widened to
 * float32 on reading (headsweep computes in float32) and narrowed on writing.
 */

export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** The dtypes weights may be stored in; each is read as float32. */
export const FLOAT_DTYPES: readonly DType[] = ['F32', 'F16', 'BF16', 'F64'];

export function isFloatDType(dtype: DType): boolean {
  return FLOAT_DTYPES.includes(dtype);
}

/** All 65536 F16 values as float32, built on first use: decoding is then one lookup. */
let f16Table: Float32Array | undefined;

/** The float32 value of every F16 bit pattern: `f16Values()[bits]`. */
export function f16Values(): Float32Array {
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
  return f16Table;
}

/** Decodes IEEE 754 half bits (1 sign, 5 exponent, 10 mantissa bits) to float32. */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const table = f16Values();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
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

/** Non-finite values among stored floats, by kind. */
export interface NonFiniteCount {
  nan: number;
  posInf: number;
  negInf: number;
}

/**
 * Adds the NaNs and infinities among the elements stored in `bytes` (little-endian
 * `dtype`, starting on an element) to `into`, read from the bits, so that the check costs
 * one pass over memory already in cache. F64 values too large for float32 count as the
 * infinities they become when read.
 */
export function countNonFinite(bytes: Uint8Array, dtype: DType, into: NonFiniteCount): void {
  const item = DTYPE_BYTES[dtype];
  const n = Math.floor(bytes.byteLength / item);
  if (n === 0) return;
  // Typed views need aligned offsets; a misaligned run (never in practice) is copied once.
  const src = bytes.byteOffset % item === 0 ? bytes : bytes.slice(0, n * item);
  if (dtype === 'F32' || dtype === 'F16' || dtype === 'BF16') {
    const [bits, exponent, mantissa, sign] = dtype === 'F32'
      ? [new Uint32Array(src.buffer, src.byteOffset, n), 0x7f800000, 0x007fffff, 0x80000000]
      : dtype === 'F16' ? [new Uint16Array(src.buffer, src.byteOffset, n), 0x7c00, 0x03ff, 0x8000] : [new Uint16Array(src.buffer, src.byteOffset, n), 0x7f80, 0x007f, 0x8000];
    for (let i = 0; i < n; i++) {
      const b = bits[i];
      if ((b & exponent) !== exponent) continue;
      if ((b & mantissa) !== 0) into.nan++;
      else if ((b & sign) !== 0) into.negInf++;
      else into.posInf++;
    }
    return;
  }
  if (dtype === 'F64') {
    const values = new Float64Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const f = Math.fround(values[i]);
      if (f - f === 0) continue;
      if (Number.isNaN(f)) into.nan++;
      else if (f < 0) into.negInf++;
      else into.posInf++;
    }
  }
}
