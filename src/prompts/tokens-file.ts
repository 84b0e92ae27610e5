/**
 * `tokens` prompt sets: explicit ids from a `.jsonl` file, one JSON array of integers per
 * line, blank lines skipped. Range and n_ctx checks happen in `validatePromptSet`, which
 * names the file and line through the set's `origin`.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promptError } from '../errors.ts';
import type { PromptSet, TokensFileSpec } from './types.ts';

/** Reads `spec.path` (relative paths resolve against `baseDir`, default the working directory). */
export function readTokensFile(spec: TokensFileSpec, baseDir = process.cwd()): PromptSet {
  const where = `prompt set '${spec.name}'`;
  const file = resolve(baseDir, spec.path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw promptError(where, `cannot read tokens file ${file} (${(err as Error).message})`, file);
  }
  const sequences: Int32Array[] = [];
  const lines: number[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    const at = `${file} line ${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw promptError(where, `${at}: not valid JSON (${(err as Error).message})`, file);
    }
    if (!Array.isArray(value) || !value.every((v) => Number.isSafeInteger(v))) {
      throw promptError(where, `${at}: expected a JSON array of integer token ids`, file);
    }
    // Int32Array.from wraps out-of-range ids (2^32 + 5 becomes 5), which would then pass
    // validatePromptSet's vocabulary check, so they are rejected while the value is still whole.
    const wide = (value as number[]).findIndex((v) => v < -(2 ** 31) || v >= 2 ** 31);
    if (wide >= 0) throw promptError(where, `${at}: token id ${value[wide]} at position ${wide} does not fit in 32 bits`, file);
    sequences.push(Int32Array.from(value as number[]));
    lines.push(i + 1);
  });
  if (sequences.length === 0) throw promptError(where, `tokens file ${file} holds no sequences`, file);
  return { name: spec.name, sequences, origin: { file, lines } };
}
