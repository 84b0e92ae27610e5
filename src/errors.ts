/**
 * Errors are values with a stage and a cause. Every message names the file, key or
 * config path at fault, so a line in the `errors` table is enough to act on.
 */
export type Stage = 'config' | 'load' | 'forward' | 'score' | 'write' | 'train' | 'worker';

export interface ErrorDetails {
  stage: Stage;
  /** File the error is about (checkpoint, prompt file, config), when there is one. */
  file?: string;
  /** Tensor key, metadata key or config path (`prompt_sets[1].seed`), when there is one. */
  key?: string;
  cause?: unknown;
}

export class HeadsweepError extends Error {
  readonly stage: Stage;
  readonly file?: string;
  readonly key?: string;

  constructor(message: string, details: ErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'HeadsweepError';
    this.stage = details.stage;
    this.file = details.file;
    this.key = details.key;
  }
}

/** A checkpoint file that cannot be read: `<file>: <reason>`. */
export function checkpointError(file: string, reason: string, key?: string, cause?: unknown): HeadsweepError {
  return new HeadsweepError(`${file}: ${reason}`, { stage: 'load', file, key, cause });
}

/** A tensor whose shape disagrees with the model config; names the key and both shapes. */
export function shapeMismatch(file: string, key: string, expected: readonly number[], actual: readonly number[]): HeadsweepError {
  return checkpointError(
    file,
    `tensor '${key}' has shape [${actual.join(', ')}] but the config expects [${expected.join(', ')}]`,
    key,
  );
}

/** Bad prompt-set input (length, ids, n_ctx); `where` names the prompt set or file. */
export function promptError(where: string, reason: string, file?: string): HeadsweepError {
  return new HeadsweepError(`${where}: ${reason}`, { stage: 'config', file, key: where });
}

/** A config value at a YAML path that is wrong: `<file> → at <path>: <reason>`. */
export function configError(file: string, path: string, reason: string): HeadsweepError {
  const at = path === '' ? '' : ` → at ${path}`;
  return new HeadsweepError(`${file}${at}: ${reason}`, { stage: 'config', file, key: path });
}

/** zod issues as `key.path: message` lines (`(root)` for the value itself), for messages that list every problem. */
export function issueLines(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string[] {
  return issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}

/** Turns anything thrown into a one-line message for logs and the errors table. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
