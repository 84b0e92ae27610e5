/**
 * The assertions failure tests make: every malformed-checkpoint test, that both the
 * header-only inspector and the full loader throw a HeadsweepError at stage 'load' whose
 * message starts with the file at fault and gives the reason; and the HeadsweepError any
 * call throws.
 */
import { expect } from 'vitest';
import { inspectCheckpoint, loadCheckpoint } from '../../src/checkpoint/checkpoint.ts';
import { HeadsweepError } from '../../src/errors.ts';

/** `checkpoint` fails to open, naming `at` (default: the checkpoint itself) and matching `reason`. */
export function expectLoadError(checkpoint: string, reason: RegExp, at = checkpoint): void {
  for (const read of [inspectCheckpoint, loadCheckpoint]) {
    let caught: unknown;
    try {
      read(checkpoint);
    } catch (err) {
      caught = err;
    }
    expect(caught, `${read.name} should throw`).toBeInstanceOf(HeadsweepError);
    const err = caught as HeadsweepError;
    expect(err.stage).toBe('load');
    expect(err.file).toBe(at);
    expect(err.message.startsWith(`${at}: `), err.message).toBe(true);
    expect(err.message).toMatch(reason);
  }
}

/** The error `fn` throws, checked to be a HeadsweepError. */
export function errorOf(fn: () => unknown): HeadsweepError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HeadsweepError);
    return err as HeadsweepError;
  }
  throw new Error('expected an error, none was thrown');
}
