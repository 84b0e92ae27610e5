/** The JSON files beside weights (config.json, shard indexes, trainer_state.json), read whole and hashed. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { checkpointError } from '../errors.ts';

export interface JsonFile {
  value: Record<string, unknown>;
  /** sha256 of the file's bytes, hex. */
  sha256: string;
  bytes: number;
}

/** Reads a JSON object; not readable, not UTF-8 JSON or not an object is an error naming the file. */
export function readJsonObject(file: string): JsonFile {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw checkpointError(file, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, undefined, err);
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw checkpointError(file, `is not valid JSON (${(err as Error).message})`, undefined, err);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw checkpointError(file, 'is not a JSON object');
  return { value: value as Record<string, unknown>, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.byteLength };
}
