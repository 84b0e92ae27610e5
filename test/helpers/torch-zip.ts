/**
 * Builds torch.save archives byte by byte, independently of the project's reader: protocol-2
 * pickles opcode by opcode (byte values from CPython's pickle.py) and stored zip archives
 * (PKWARE APPNOTE §4.3), so tests can write state dicts, shards, hostile pickles and broken
 * archives without Python.
 */
import { crc32 } from 'node:zlib';

const enc = new TextEncoder();

/** A protocol-2 pickle, written one opcode at a time. */
export class Pickle {
  private readonly out: number[] = [0x80, 0x02];
  private memo = 0;

  private raw(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }
  private u32(n: number): number[] {
    return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
  }

  global(module: string, name: string): this {
    return this.raw(0x63, ...enc.encode(`${module}\n${name}\n`));
  }
  str(s: string): this {
    const b = enc.encode(s);
    return this.raw(0x58, ...this.u32(b.length), ...b);
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.raw(0x4b, n);
    if (n >= 0 && n < 65536) return this.raw(0x4d, n & 0xff, n >> 8);
    return this.raw(0x4a, ...this.u32(n));
  }
  float(x: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return this.raw(0x47, ...b);
  }
  bool(v: boolean): this {
    return this.raw(v ? 0x88 : 0x89);
  }
  none(): this {
    return this.raw(0x4e);
  }
  mark(): this {
    return this.raw(0x28);
  }
  tuple(): this {
    return this.raw(0x74);
  }
  emptyTuple(): this {
    return this.raw(0x29);
  }
  emptyDict(): this {
    return this.raw(0x7d);
  }
  emptyList(): this {
    return this.raw(0x5d);
  }
  setitems(): this {
    return this.raw(0x75);
  }
  appends(): this {
    return this.raw(0x65);
  }
  reduce(): this {
    return this.raw(0x52);
  }
  build(): this {
    return this.raw(0x62);
  }
  persid(): this {
    return this.raw(0x51);
  }
  /** BINPUT the top of the stack; returns its memo index. */
  put(): number {
    const i = this.memo++;
    this.raw(0x72, ...this.u32(i));
    return i;
  }
  get(i: number): this {
    return this.raw(0x6a, ...this.u32(i));
  }
  /** Any byte, for opcodes the reader must refuse. */
  op(...bytes: number[]): this {
    return this.raw(...bytes);
  }
  stop(): Uint8Array {
    return Uint8Array.from([...this.out, 0x2e]);
  }

  /** A tuple of small non-negative integers. */
  ints(values: readonly number[]): this {
    this.mark();
    for (const v of values) this.int(v);
    return this.tuple();
  }
}

export const STORAGE_CLASS = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage', F64: 'DoubleStorage', BOOL: 'BoolStorage' } as const;

/** A tensor as torch pickles it: a view (offset, shape, strides) of the storage record `data/<storage>`. */
export interface PickledTensor {
  storage: string;
  dtype: keyof typeof STORAGE_CLASS;
  /** Elements the storage holds. */
  numel: number;
  offset?: number;
  shape: number[];
  /** Default: row-major. */
  strides?: number[];
}

function rowMajor(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let n = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    s[k] = n;
    n *= shape[k];
  }
  return s;
}

/** `torch._utils._rebuild_tensor_v2(('storage', cls, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`, as torch writes it. */
export function pickleTensor(p: Pickle, t: PickledTensor): Pickle {
  p.global('torch._utils', '_rebuild_tensor_v2').mark();
  p.mark().str('storage').global('torch', STORAGE_CLASS[t.dtype]).str(t.storage).str('cpu').int(t.numel).tuple().persid();
  p.int(t.offset ?? 0).ints(t.shape).ints(t.strides ?? rowMajor(t.shape)).bool(false);
  p.global('collections', 'OrderedDict').emptyTuple().reduce();
  return p.tuple().reduce();
}

/** A pickled value written by a callback, or one of the simple kinds. */
export type PickleItem = PickledTensor | number | string | boolean | null | ((p: Pickle) => void) | { [key: string]: PickleItem };

function isTensor(v: PickleItem): v is PickledTensor {
  return typeof v === 'object' && v !== null && 'storage' in v && 'shape' in v;
}

export function pickleValue(p: Pickle, v: PickleItem): Pickle {
  if (typeof v === 'function') v(p);
  else if (v === null) p.none();
  else if (typeof v === 'number') (Number.isInteger(v) ? p.int(v) : p.float(v));
  else if (typeof v === 'string') p.str(v);
  else if (typeof v === 'boolean') p.bool(v);
  else if (isTensor(v)) pickleTensor(p, v);
  else {
    p.emptyDict().mark();
    for (const [k, x] of Object.entries(v)) pickleValue(p.str(k), x);
    p.setitems();
  }
  return p;
}

/** The pickle of a dict (a state dict, or nanoGPT's checkpoint dict). */
export function pickleDict(entries: { [key: string]: PickleItem }): Uint8Array {
  return pickleValue(new Pickle(), entries).stop();
}

export interface ZipRecord {
  name: string;
  data: Uint8Array;
}

export interface ZipOptions {
  /** Write ZIP64 end records (torch always does). 'forced': also put 0xFFFF… in the classic end record, so only ZIP64 tells the truth. */
  zip64?: boolean | 'forced';
  /** Align record data to this many bytes with a padding extra field, as torch ≥ 2 does (64). */
  align?: number;
}

/** A zip archive of stored records. */
export function storedZip(records: readonly ZipRecord[], opts: ZipOptions = {}): Uint8Array {
  const zip64 = opts.zip64 ?? true;
  const parts: Uint8Array[] = [];
  let at = 0;
  const push = (b: Uint8Array) => {
    parts.push(b);
    at += b.byteLength;
  };
  const central: Uint8Array[] = [];
  for (const r of records) {
    const name = enc.encode(r.name);
    const crc = crc32(r.data);
    let extra = 0;
    if (opts.align !== undefined) {
      const start = at + 30 + name.length;
      extra = (opts.align - ((start + 4) % opts.align)) % opts.align + 4;
    }
    const local = new Uint8Array(30 + name.length + extra);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, r.data.byteLength, true);
    lv.setUint32(22, r.data.byteLength, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, extra, true);
    local.set(name, 30);
    if (extra > 0) {
      // torch's padding field: id "FB", then zeros.
      lv.setUint16(30 + name.length, 0x4246, true);
      lv.setUint16(32 + name.length, extra - 4, true);
    }
    const offset = at;
    push(local);
    push(r.data);
    const entry = new Uint8Array(46 + name.length);
    const ev = new DataView(entry.buffer);
    ev.setUint32(0, 0x02014b50, true);
    ev.setUint16(4, 45, true);
    ev.setUint16(6, 20, true);
    ev.setUint32(16, crc, true);
    ev.setUint32(20, r.data.byteLength, true);
    ev.setUint32(24, r.data.byteLength, true);
    ev.setUint16(28, name.length, true);
    ev.setUint32(42, offset, true);
    entry.set(name, 46);
    central.push(entry);
  }
  const cdStart = at;
  for (const e of central) push(e);
  const cdSize = at - cdStart;
  if (zip64) {
    const recordAt = at;
    const record = new Uint8Array(56);
    const rv = new DataView(record.buffer);
    rv.setUint32(0, 0x06064b50, true);
    rv.setBigUint64(4, 44n, true);
    rv.setUint16(12, 45, true);
    rv.setUint16(14, 45, true);
    rv.setBigUint64(24, BigInt(records.length), true);
    rv.setBigUint64(32, BigInt(records.length), true);
    rv.setBigUint64(40, BigInt(cdSize), true);
    rv.setBigUint64(48, BigInt(cdStart), true);
    push(record);
    const locator = new Uint8Array(20);
    const xv = new DataView(locator.buffer);
    xv.setUint32(0, 0x07064b50, true);
    xv.setBigUint64(8, BigInt(recordAt), true);
    xv.setUint32(16, 1, true);
    push(locator);
  }
  const forced = zip64 === 'forced';
  const end = new Uint8Array(22);
  const dv = new DataView(end.buffer);
  dv.setUint32(0, 0x06054b50, true);
  dv.setUint16(8, forced ? 0xffff : records.length, true);
  dv.setUint16(10, forced ? 0xffff : records.length, true);
  dv.setUint32(12, forced ? 0xffffffff : cdSize, true);
  dv.setUint32(16, forced ? 0xffffffff : cdStart, true);
  push(end);
  const out = new Uint8Array(at);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

/** A torch archive: `<prefix>/data.pkl`, `<prefix>/byteorder`, and one record per storage. */
export function torchArchive(prefix: string, pickle: Uint8Array, storages: Record<string, Uint8Array>, opts: ZipOptions = { align: 64 }): Uint8Array {
  return storedZip([
    { name: `${prefix}/data.pkl`, data: pickle },
    { name: `${prefix}/byteorder`, data: enc.encode('little') },
    ...Object.entries(storages).map(([key, data]) => ({ name: `${prefix}/data/${key}`, data })),
    { name: `${prefix}/version`, data: enc.encode('3\n') },
  ], opts);
}

/** The records of a stored zip, found through its central directory (classic end record). */
export function zipRecords(bytes: Uint8Array): ZipRecord[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = bytes.byteLength - 22;
  while (v.getUint32(eocd, true) !== 0x06054b50) eocd--;
  const count = v.getUint16(eocd + 10, true);
  let at = v.getUint32(eocd + 16, true);
  const out: ZipRecord[] = [];
  for (let i = 0; i < count; i++) {
    const nameLength = v.getUint16(at + 28, true);
    const size = v.getUint32(at + 24, true);
    const local = v.getUint32(at + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    out.push({ name, data: bytes.slice(start, start + size) });
    at += 46 + nameLength + v.getUint16(at + 30, true) + v.getUint16(at + 32, true);
  }
  return out;
}

/** Float32 values as the bytes of a storage record. */
export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  const f = Float32Array.from(values);
  return new Uint8Array(f.buffer);
}
