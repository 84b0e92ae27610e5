/**
 * All-or-nothing file placement: bytes go to `<name>.<pid>.tmp` beside the final file,
 * are flushed to disk, and only then renamed over the final name. A rename within one
 * folder is atomic, so a reader (or a resumed sweep) sees either the old file or the whole
 * new one, never half a file, whatever kills the process.
 */
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { HeadsweepError, messageOf } from '../../src/errors.ts';

/** Writes `bytes` to `path` atomically, creating its folder; a failure names `path`. */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const dir = dirname(path);
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw writeError(path, err, `cannot create the folder ${dir}`);
  }
  const tmp = join(dir, `${basename(path)}.${process.pid}.tmp`);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmp, 'w');
    await handle.writeFile(bytes);
    // Flush before the rename: otherwise a power cut can leave the new name on empty blocks.
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
  } catch (err) {
    // The write error is what the user needs; a failed close or cleanup adds nothing to it.
    await handle?.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw writeError(path, err);
  }
}

const REASONS: Record<string, string> = {
  ENOSPC: 'disk full',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
};

function writeError(path: string, err: unknown, context?: string): HeadsweepError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const reason = code === undefined ? undefined : REASONS[code];
  const message = reason !== undefined
    ? `${reason} while writing ${path}`
    : `cannot write ${path}: ${context === undefined ? '' : `${context}: `}${messageOf(err)}`;
  return new HeadsweepError(message, { stage: 'write', file: path, cause: err });
}
