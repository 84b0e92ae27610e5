/**
 * Opening files that a user or a file names: only regular files are ever opened for
 * reading, read or hashed. A FIFO blocks the opening thread until something writes to
 * it, `/dev/zero` never ends, and opening some devices has side effects, so a path that
 * is not a regular file is refused from its `stat`, before any open. What is opened is
 * opened non-blocking (a FIFO swapped in after the stat cannot hang the open) and checked
 * again with `fstat`, so what is read is the regular file that was checked.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, statSync, type Stats } from 'node:fs';
import { shownPath } from './errors.ts';

/** What a path that is not a regular file is, as messages say it. */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

/**
 * A path that cannot be read as a regular file. `reason` reads after the path (`is a
 * FIFO (named pipe), not a regular file`, `no such file`), for callers that wrap it in
 * their own error (checkpointError, promptError, configError).
 */
export class FileProblem extends Error {
  constructor(readonly path: string, readonly reason: string, readonly code?: string) {
    super(`${shownPath(path)}: ${reason}`);
    this.name = 'FileProblem';
  }
}

function openProblem(path: string, err: unknown): FileProblem {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new FileProblem(path, 'no such file', code);
  if (code === 'ENOTDIR') return new FileProblem(path, 'no such file (a folder on its path is a file)', code);
  return new FileProblem(path, `cannot open (${code ?? (err as Error).message})`, code);
}

/** Refuses, from a stat that follows symlinks, anything but a regular file. */
export function checkRegularFile(path: string): Stats {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw openProblem(path, err);
  }
  if (!st.isFile()) throw new FileProblem(path, `is ${kindOf(st)}, not a regular file`);
  return st;
}

/** Opens a regular file for reading (see the file comment); the caller closes the descriptor. */
export function openRegularFile(path: string): number {
  checkRegularFile(path);
  let fd: number;
  try {
    // O_NOCTTY: a terminal swapped in after the stat must not become ours.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw openProblem(path, err);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new FileProblem(path, `is ${kindOf(st)}, not a regular file`);
  }
  return fd;
}

/**
 * A regular file's bytes. With `maxBytes`, a larger file is refused from its size before
 * anything is read (`what` names the kind of file in the message: "a sweep config").
 */
export function readRegularFile(path: string, maxBytes?: { bytes: number; what: string }): Buffer {
  const fd = openRegularFile(path);
  try {
    if (maxBytes !== undefined) {
      const size = fstatSync(fd).size;
      if (size > maxBytes.bytes) {
        throw new FileProblem(path, `is ${size} bytes, more than ${maxBytes.what} may be (${maxBytes.bytes} bytes)`);
      }
    }
    return readFileSync(fd);
  } catch (err) {
    throw err instanceof FileProblem ? err : new FileProblem(path, readProblem(err));
  } finally {
    closeSync(fd);
  }
}

/** The largest tokenizer file read (a tokenizer.json beside weights, or one a prompt set names): larger than any real one (Llama 3's is 9 MB), small enough to refuse a stray file fast. */
export const TOKENIZER_FILE_BYTES = 256 * 2 ** 20;

/** The reason of a FileProblem, or of anything else thrown while reading a file. */
export function readProblem(err: unknown): string {
  if (err instanceof FileProblem) return err.reason;
  return `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
}
