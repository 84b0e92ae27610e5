/**
 * `tokens` prompt sets: explicit ids from a `.jsonl` file, one JSON array of integers per
 * line, blank lines skipped. Range and n_ctx checks happen in `validatePromptSet`, which
 * names the file and line through the set's `origin`.
 *
 * The file is read a block at a time and split into lines as it goes, so its size is
 * bounded by what its sequences take, not by the file: a line longer than any sequence a
 * model can hold (`MAX_LINE_BYTES`) is refused without being read whole, and reading
 * stops once the sequences pass `maxTokens`.
 */
import { closeSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { parserMessage, promptError, shownPath } from '../errors.ts';
import { openRegularFile, readProblem } from '../files.ts';
import type { PromptSet, TokensFileSpec } from './types.ts';

/** The longest line read: 2^20 ids (the largest n_ctx) of up to 8 digits, with separators, fit in it. */
export const MAX_LINE_BYTES = 16 * 2 ** 20;

const BLOCK_BYTES = 1 << 20;

export interface TokensFileLimits {
  /** Stop with an error once the file holds more token ids than this (the sweep's memory budget for prompts). */
  maxTokens?: number;
  /** What `maxTokens` comes from, for the message. */
  maxTokensReason?: string;
}

/** Calls `onLine(text, lineNumber)` for each line of `file`, read in blocks; a line over `MAX_LINE_BYTES` is an error. */
function forEachLine(file: string, where: string, onLine: (line: string, n: number) => void): void {
  let fd: number;
  try {
    fd = openRegularFile(file);
  } catch (err) {
    throw promptError(where, `cannot read tokens file ${shownPath(file)}: ${readProblem(err)}`, file);
  }
  try {
    const block = Buffer.alloc(BLOCK_BYTES);
    const decoder = new TextDecoder('utf-8');
    let pending = '';
    let n = 0;
    for (;;) {
      let got: number;
      try {
        got = readSync(fd, block, 0, BLOCK_BYTES, null);
      } catch (err) {
        throw promptError(where, `cannot read tokens file ${shownPath(file)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
      }
      const text = pending + decoder.decode(block.subarray(0, got), { stream: got > 0 });
      const lines = text.split('\n');
      pending = got > 0 ? lines.pop()! : '';
      for (const line of lines) onLine(line.endsWith('\r') ? line.slice(0, -1) : line, ++n);
      if (pending.length > MAX_LINE_BYTES) {
        throw promptError(where, `${shownPath(file)} line ${n + 1}: longer than ${MAX_LINE_BYTES} characters, more than any sequence a model holds`, file);
      }
      if (got === 0) return;
    }
  } finally {
    closeSync(fd);
  }
}

/** Reads `spec.path` (relative paths resolve against `baseDir`, default the working directory). */
export function readTokensFile(spec: TokensFileSpec, baseDir = process.cwd(), limits: TokensFileLimits = {}): PromptSet {
  const where = `prompt set '${spec.name}'`;
  const file = resolve(baseDir, spec.path);
  const sequences: Int32Array[] = [];
  const lines: number[] = [];
  let tokens = 0;
  const shown = shownPath(file); // once, not per line: a tokens file may have millions
  forEachLine(file, where, (line, n) => {
    if (line.trim() === '') return;
    const at = `${shown} line ${n}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw promptError(where, `${at}: not valid JSON (${parserMessage(err)})`, file);
    }
    if (!Array.isArray(value) || !value.every((v) => Number.isSafeInteger(v))) {
      throw promptError(where, `${at}: expected a JSON array of integer token ids`, file);
    }
    // Int32Array.from wraps out-of-range ids (2^32 + 5 becomes 5), which would then pass
    // validatePromptSet's vocabulary check, so they are rejected while the value is still whole.
    const wide = (value as number[]).findIndex((v) => v < -(2 ** 31) || v >= 2 ** 31);
    if (wide >= 0) throw promptError(where, `${at}: token id ${value[wide]} at position ${wide} does not fit in 32 bits`, file);
    tokens += value.length;
    if (limits.maxTokens !== undefined && tokens > limits.maxTokens) {
      throw promptError(where, `${shownPath(file)} holds more than ${limits.maxTokens} token ids by line ${n}${limits.maxTokensReason ? ` (${limits.maxTokensReason})` : ''}`, file);
    }
    sequences.push(Int32Array.from(value as number[]));
    lines.push(n);
  });
  if (sequences.length === 0) throw promptError(where, `tokens file ${shownPath(file)} holds no sequences`, file);
  return { name: spec.name, sequences, origin: { file, lines } };
}
