/**
 * sha256 of a file's bytes, streamed so a large checkpoint is never held whole in memory.
 * Only a regular file is hashed: a path to `/dev/zero` or a FIFO rejects at once, with
 * the reason, instead of streaming forever or waiting for a writer (src/files.ts).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { openRegularFile } from '../src/files.ts';

export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let fd: number;
    try {
      fd = openRegularFile(file);
    } catch (err) {
      reject(err);
      return;
    }
    const hash = createHash('sha256');
    createReadStream('', { fd })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
