/**
 * The zip archive under a torch.save file: the central directory and where each record's
 * bytes start. Spec: PKWARE APPNOTE.TXT §4.3 (end records, central directory, local
 * headers, ZIP64); torch's writer: caffe2/serialize/inline_container.cc.
 *
 * Why not a zip library: headsweep reads records in place, synchronously, at offsets into
 * an open file (the scorer reads slices of W_U from it while scoring), and only the records
 * it needs. fflate unzips from a buffer holding the whole archive; yauzl and unzipit read
 * through asynchronous streams. torch writes every record uncompressed, so what is needed
 * is only the directory: about a hundred lines, below.
 *
 * The data offset of a record comes from its local header (30 + name + extra bytes), not
 * the central directory: torch pads local headers with an extra field to align data to
 * 64 bytes, and the two extra fields differ.
 */
import { fstatSync } from 'node:fs';
import { checkpointError, quote } from '../../errors.ts';
import { readExactly } from '../read.ts';

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const ENTRY_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
/** The end record is 22 bytes plus a comment of at most 65535. */
const MAX_EOCD_SEARCH = 22 + 0xffff;

export interface ZipEntry {
  name: string;
  /** 0 = stored; torch writes nothing else. */
  method: number;
  flags: number;
  compressedSize: number;
  size: number;
  localHeader: number;
}

export interface ZipDirectory {
  file: string;
  fileSize: number;
  entries: Map<string, ZipEntry>;
  /** Entries in directory order. */
  order: ZipEntry[];
  /** Where the central directory starts: from here to the end of the file are the directory and end records. */
  directoryStart: number;
}

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(v);
}

/** Reads and checks the central directory of a zip file open as `fd`. */
export function readZipDirectory(fd: number, file: string): ZipDirectory {
  const fileSize = fstatSync(fd).size;
  const broken = (reason: string) => checkpointError(file, `broken central directory: ${reason}`);
  if (fileSize < 22) throw checkpointError(file, `truncated zip: ${fileSize} bytes, too short for an end-of-central-directory record`);
  const tailSize = Math.min(fileSize, MAX_EOCD_SEARCH);
  const tail = new Uint8Array(tailSize);
  readExactly(fd, file, tail, fileSize - tailSize, 'the end of the zip archive');
  const tv = new DataView(tail.buffer);
  // The last end record whose comment runs exactly to the end of the file.
  let eocd = -1;
  for (let at = tailSize - 22; at >= 0; at--) {
    if (tv.getUint32(at, true) === EOCD_SIGNATURE && at + 22 + tv.getUint16(at + 20, true) === tailSize) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) {
    throw checkpointError(file, 'truncated zip: no end-of-central-directory record at the end of the file (cut short, or still being written)');
  }
  const eocdAt = fileSize - tailSize + eocd;
  let count = tv.getUint16(eocd + 10, true);
  let directorySize = tv.getUint32(eocd + 12, true);
  let directoryStart = tv.getUint32(eocd + 16, true);
  let directoryEnd = eocdAt;
  const locator = eocd - 20;
  if (locator >= 0 && tv.getUint32(locator, true) === ZIP64_LOCATOR_SIGNATURE) {
    const recordAt = u64(tv, locator + 8);
    if (!(recordAt + 56 <= eocdAt - 20)) throw broken(`the ZIP64 end record offset ${recordAt} is outside the file`);
    const record = new Uint8Array(56);
    readExactly(fd, file, record, recordAt, 'the ZIP64 end record');
    const rv = new DataView(record.buffer);
    if (rv.getUint32(0, true) !== ZIP64_EOCD_SIGNATURE) throw broken(`no ZIP64 end record at byte ${recordAt}, where the locator points`);
    count = u64(rv, 32);
    directorySize = u64(rv, 40);
    directoryStart = u64(rv, 48);
    directoryEnd = recordAt;
  } else if (count === 0xffff || directorySize === 0xffffffff || directoryStart === 0xffffffff) {
    throw broken('the end record defers to a ZIP64 end record that is missing');
  }
  if (!(directoryStart + directorySize <= directoryEnd)) {
    throw broken(`it claims bytes [${directoryStart}, ${directoryStart + directorySize}) but the end records start at byte ${directoryEnd}`);
  }
  if (count > directorySize / 46) throw broken(`${count} entries cannot fit in ${directorySize} bytes`);

  const dir = new Uint8Array(directorySize);
  readExactly(fd, file, dir, directoryStart, 'the central directory');
  const dv = new DataView(dir.buffer);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const entries = new Map<string, ZipEntry>();
  const order: ZipEntry[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > directorySize) throw broken(`entry ${i} of ${count} runs past its end`);
    if (dv.getUint32(at, true) !== ENTRY_SIGNATURE) throw broken(`entry ${i} at byte ${directoryStart + at} has no entry signature`);
    const nameLength = dv.getUint16(at + 28, true);
    const extraLength = dv.getUint16(at + 30, true);
    const commentLength = dv.getUint16(at + 32, true);
    const next = at + 46 + nameLength + extraLength + commentLength;
    if (next > directorySize) throw broken(`entry ${i} of ${count} runs past its end`);
    let name: string;
    try {
      name = decoder.decode(dir.subarray(at + 46, at + 46 + nameLength));
    } catch {
      throw broken(`entry ${i} has a name that is not UTF-8`);
    }
    let size = dv.getUint32(at + 24, true);
    let compressedSize = dv.getUint32(at + 20, true);
    let localHeader = dv.getUint32(at + 42, true);
    // ZIP64: the 32-bit fields that overflowed are in the 0x0001 extra field, in this order.
    for (let e = at + 46 + nameLength; e + 4 <= at + 46 + nameLength + extraLength;) {
      const id = dv.getUint16(e, true);
      const length = dv.getUint16(e + 2, true);
      if (id === 0x0001) {
        let f = e + 4;
        const take = () => {
          if (f + 8 > e + 4 + length) throw broken(`entry ${quote(name)} has a short ZIP64 field`);
          const v = u64(dv, f);
          f += 8;
          return v;
        };
        if (size === 0xffffffff) size = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (localHeader === 0xffffffff) localHeader = take();
      }
      e += 4 + length;
    }
    if (entries.has(name)) throw broken(`record ${quote(name)} is listed twice`);
    const entry = { name, method: dv.getUint16(at + 10, true), flags: dv.getUint16(at + 8, true), compressedSize, size, localHeader };
    entries.set(name, entry);
    order.push(entry);
    at = next;
  }
  return { file, fileSize, entries, order, directoryStart };
}

/**
 * Where a record's bytes start, from its local header, checked to lie before the central
 * directory. Only stored (uncompressed, unencrypted) records can be read in place.
 */
export function recordStart(fd: number, dir: ZipDirectory, entry: ZipEntry): number {
  const { file } = dir;
  if (entry.method !== 0) {
    throw checkpointError(file, `record ${quote(entry.name)} is compressed (method ${entry.method}); torch.save writes records uncompressed`);
  }
  if ((entry.flags & 1) !== 0) throw checkpointError(file, `record ${quote(entry.name)} is encrypted`);
  if (!(entry.localHeader + 30 <= dir.directoryStart)) {
    throw checkpointError(file, `broken central directory: record ${quote(entry.name)} has its header at byte ${entry.localHeader}, past the records`);
  }
  const local = new Uint8Array(30);
  readExactly(fd, file, local, entry.localHeader, `the header of record ${quote(entry.name)}`);
  const lv = new DataView(local.buffer);
  if (lv.getUint32(0, true) !== LOCAL_SIGNATURE) {
    throw checkpointError(file, `missing data record: no record header for ${quote(entry.name)} at byte ${entry.localHeader}`);
  }
  const start = entry.localHeader + 30 + lv.getUint16(26, true) + lv.getUint16(28, true);
  if (!(start + entry.size <= dir.directoryStart)) {
    throw checkpointError(file, `broken zip: record ${quote(entry.name)} ([${start}, ${start + entry.size})) runs into the central directory at byte ${dir.directoryStart}`);
  }
  return start;
}
