/**
 * Following a training run (`headsweep sweep --watch`): which of the files the globs
 * match are whole checkpoints, and which are still being written.
 *
 * A file is taken once
 *   1. its safetensors header is all there and the data section holds every byte the
 *      header's tensors claim (`isWhole`), and
 *   2. it is seen for the first time already whole (a trainer that writes to a temporary
 *      name and renames it, or a file present when the watch starts), or it had the same
 *      size and mtime, and was whole, at the previous poll.
 * So a file written in place is read at the earliest one poll after its last byte, and a
 * renamed one at once. A writer that sets the file's full size before filling it in
 * (preallocation, mmap) defeats the first rule: such trainers must write to a temporary
 * name and rename.
 *
 * A file that is not whole, had the same size and mtime at the previous poll, and was
 * last written `STALLED_AFTER_MS` ago or more has stopped growing: it is no checkpoint
 * being written but a broken one, and is taken too, so that the sweep records why it
 * cannot be read (an `errors` row), as a sweep without --watch does.
 */
import { closeSync, readSync } from 'node:fs';
import { FileProblem, openRegularFile } from '../src/files.ts';
import { fileStamp } from './state.ts';

/** How long a file that is not whole must have gone unwritten before it counts as broken, not as being written. */
export const STALLED_AFTER_MS = 60_000;

/** Longest header read when checking for a whole file; larger headers are left to the loader to judge. */
const MAX_HEADER_BYTES = 100 * 2 ** 20;

/**
 * Whether the file holds every byte its header promises: an 8-byte header length, the
 * header, and a data section reaching the largest `data_offsets` end. A header that is
 * all there but does not parse counts as whole: the file is finished, and broken, and
 * the loader names what is wrong with it.
 */
export function isWhole(file: string): boolean {
  let fd: number;
  try {
    fd = openRegularFile(file);
  } catch (err) {
    // Not a regular file (a FIFO, a device) is not one being written: the loader refuses it.
    return err instanceof FileProblem && err.code === undefined;
  }
  try {
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
  } finally {
    closeSync(fd);
  }
}

export type Readiness = 'ready' | 'incomplete' | 'changing';

/** Remembers what each file looked like at the previous poll. */
export class ReadinessTracker {
  private readonly seen = new Map<string, { size: number; mtime_ns: string; whole: boolean }>();

  /** Looks at `file` now; call once per poll for every file the globs match. */
  observe(file: string): Readiness {
    const stamp = fileStamp(file);
    if (stamp === null) {
      this.seen.delete(file);
      return 'incomplete';
    }
    const whole = isWhole(file);
    const prev = this.seen.get(file);
    this.seen.set(file, { ...stamp, whole });
    const unchanged = prev !== undefined && prev.size === stamp.size && prev.mtime_ns === stamp.mtime_ns;
    if (!whole) {
      const idleMs = Date.now() - Number(BigInt(stamp.mtime_ns) / 1_000_000n);
      return unchanged && idleMs >= STALLED_AFTER_MS ? 'ready' : 'incomplete';
    }
    if (prev === undefined) return 'ready';
    return prev.whole && unchanged ? 'ready' : 'changing';
  }

  /** Forgets files the globs no longer match. */
  keepOnly(files: ReadonlySet<string>): void {
    for (const file of this.seen.keys()) if (!files.has(file)) this.seen.delete(file);
  }
}
