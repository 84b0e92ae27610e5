/**
 * Following a training run (`headsweep sweep --watch`): which of the checkpoints the globs
 * match are whole, and which are still being written.
 *
 * A checkpoint is taken once
 *   1. it is whole: the plan could open it, which means every file is all there (a
 *      safetensors file holds every byte its header claims, a torch zip has its central
 *      directory and end records, a sharded checkpoint has every shard its index names,
 *      a model folder has its config.json and weights, src/checkpoint/source.ts), and
 *   2. it is seen for the first time already whole (a trainer that writes to a temporary
 *      name and renames it, or a file present when the watch starts), or it had the same
 *      files, sizes and mtimes, and was whole, at the previous poll.
 * So a file written in place is read at the earliest one poll after its last byte, and a
 * renamed one at once. A model folder is watched as every file in it: a trainer writes
 * its weights, then its optimizer state and trainer_state.json, so a folder seen whole
 * for the first time is taken at once only when nothing in it was written for
 * `STALLED_AFTER_MS`, else one unchanged poll later. A writer that sets a file's full size
 * before filling it in (preallocation, mmap) defeats the first rule: such trainers must
 * write to a temporary name and rename.
 *
 * A lone file the plan cannot open but that is all there (a safetensors file whose header
 * does not parse, a torch zip with a whole directory and a broken pickle) is whole, and
 * broken: it is taken like a whole one, and the sweep records why it cannot be read. A
 * checkpoint that is not whole, had the same files, sizes and mtimes at the previous poll
 * and was last written `STALLED_AFTER_MS` ago or more has stopped growing: it is no
 * checkpoint being written but a broken one (a shard that never came, a config.json that
 * is not JSON), and is taken too, so that the sweep records why it cannot be read (an
 * `errors` row), as a sweep without --watch does.
 */
import { closeSync, readSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { readZipDirectory } from '../src/checkpoint/containers/zip.ts';
import { FileProblem, openRegularFile } from '../src/files.ts';
import type { PlannedCheckpoint } from './plan.ts';
import { fileStamp, filesIn, sameStamps, stampFiles, type FileStamp, type NamedFile } from './state.ts';

/** How long a checkpoint that is not whole must have gone unwritten before it counts as broken, not as being written. */
export const STALLED_AFTER_MS = 60_000;

/** Longest header read when checking for a whole file; larger headers are left to the loader to judge. */
const MAX_HEADER_BYTES = 100 * 2 ** 20;

/** Runs `read` on the open file; false when it cannot be opened. */
function withFile(file: string, read: (fd: number) => boolean): boolean {
  let fd: number;
  try {
    fd = openRegularFile(file);
  } catch (err) {
    // Not a regular file (a FIFO, a device) is not one being written: the loader refuses it.
    return err instanceof FileProblem && err.code === undefined;
  }
  try {
    return read(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether a safetensors file holds every byte its header promises: an 8-byte header
 * length, the header, and a data section reaching the largest `data_offsets` end. A
 * header that is all there but does not parse counts as whole: the file is finished, and
 * broken, and the loader names what is wrong with it.
 */
function isWhole(file: string): boolean {
  return withFile(file, (fd) => {
    const size = fileStamp(file)?.size ?? 0;
    if (size < 8) return false;
    const lenBytes = new Uint8Array(8);
    if (readSync(fd, lenBytes, 0, 8, 0) < 8) return false;
    const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (headerLen > BigInt(MAX_HEADER_BYTES)) return true;
    const n = Number(headerLen);
    if (8 + n > size) return false;
    const header = new Uint8Array(n);
    if (readSync(fd, header, 0, n, 8) < n) return false;
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(header));
    } catch {
      return true;
    }
    let end = 0;
    for (const [key, value] of Object.entries((json ?? {}) as Record<string, unknown>)) {
      if (key === '__metadata__') continue;
      const offsets = (value as { data_offsets?: unknown } | null)?.data_offsets;
      if (Array.isArray(offsets) && typeof offsets[1] === 'number') end = Math.max(end, offsets[1]);
    }
    return 8 + n + end <= size;
  });
}

/** Whether a file starts like a zip archive (a torch.save file, whatever its name). */
function isZip(file: string): boolean {
  return withFile(file, (fd) => {
    const head = new Uint8Array(4);
    return readSync(fd, head, 0, 4, 0) === 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
  });
}

/** Whether a zip's central directory and end records are all there: torch writes them last. */
function hasWholeDirectory(file: string): boolean {
  return withFile(file, (fd) => {
    try {
      readZipDirectory(fd, file);
      return true;
    } catch {
      return false;
    }
  });
}

/** Whether the checkpoint is all there (see the top of this file), readable or not. */
function isComplete(ck: PlannedCheckpoint): boolean {
  if (ck.config !== null) return true;
  if (ck.kind === 'folder' || ck.file.endsWith('.index.json')) return false;
  return isZip(ck.file) ? hasWholeDirectory(ck.file) : isWhole(ck.file);
}

/**
 * The files whose sizes and mtimes tell whether a checkpoint is still being written: for
 * a model folder or a shard index, everything in its folder and the folder itself
 * (entries added or renamed), so files still to come are seen; else the files it is read
 * from, or the file alone when it cannot be read.
 */
export function watchedFiles(ck: PlannedCheckpoint): NamedFile[] {
  if (ck.kind === 'folder') return [{ path: ck.file, name: '.' }, ...filesIn(ck.file)];
  if (ck.file.endsWith('.index.json')) return [{ path: dirname(ck.file), name: '.' }, ...filesIn(dirname(ck.file))];
  return ck.files.length > 0 ? ck.files : [{ path: ck.file, name: basename(ck.file) }];
}

export type Readiness = 'ready' | 'incomplete' | 'changing';

/** Remembers what each checkpoint looked like at the previous poll. */
export class ReadinessTracker {
  private readonly seen = new Map<string, { stamps: FileStamp[]; whole: boolean }>();

  /** Looks at `ck` now; call once per poll for every checkpoint the globs match. */
  observe(ck: PlannedCheckpoint): Readiness {
    const stamp = stampFiles(watchedFiles(ck));
    if (stamp === null) {
      this.seen.delete(ck.file);
      return 'incomplete';
    }
    const whole = isComplete(ck);
    const prev = this.seen.get(ck.file);
    this.seen.set(ck.file, { stamps: stamp.file_stamps, whole });
    const unchanged = prev !== undefined && sameStamps(prev.stamps, stamp.file_stamps);
    const lastWritten = Math.max(...stamp.file_stamps.map((s) => Number(BigInt(s.mtime_ns) / 1_000_000n)));
    const idle = Date.now() - lastWritten >= STALLED_AFTER_MS;
    if (!whole) return unchanged && idle ? 'ready' : 'incomplete';
    if (prev === undefined) return ck.kind === 'file' || idle ? 'ready' : 'changing';
    return prev.whole && unchanged ? 'ready' : 'changing';
  }

  /** Forgets checkpoints the globs no longer match. */
  keepOnly(files: ReadonlySet<string>): void {
    for (const file of this.seen.keys()) if (!files.has(file)) this.seen.delete(file);
  }
}
