/** The JSON files beside weights (config.json, shard indexes, trainer_state.json), read whole and hashed. */
import { createHash } from 'node:crypto';
import { checkpointError, HeadsweepError, parserMessage } from '../errors.ts';
import { readProblem, readRegularFile } from '../files.ts';

/** config.json, shard indexes and trainer_state.json are kilobytes; far past that is not one of them. */
const MAX_JSON_BYTES = 64 * 2 ** 20;

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
    bytes = readRegularFile(file, { bytes: MAX_JSON_BYTES, what: 'a JSON file beside weights' });
  } catch (err) {
    throw checkpointError(file, readProblem(err), undefined, err);
  }
  let value: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    const shape = jsonShapeProblem(text, MODEL_JSON_LIMITS);
    if (shape !== null) throw checkpointError(file, `is not a JSON file headsweep reads: it ${shape}`);
    value = JSON.parse(text);
  } catch (err) {
    if (err instanceof HeadsweepError) throw err;
    throw checkpointError(file, `is not valid JSON (${parserMessage(err)})`, undefined, err);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw checkpointError(file, 'is not a JSON object');
  return { value: value as Record<string, unknown>, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.byteLength };
}

/**
 * What is wrong with the shape of a JSON text, found in one pass over it before it is
 * parsed, or null: nesting deeper than `depth` (JSON.parse recursion, and every message
 * that prints the value) or more than `containers` objects and arrays (each costs
 * JSON.parse tens of bytes: a 100 MB header of `{}` would take gigabytes).
 */
export function jsonShapeProblem(text: string, limits: { depth: number; containers: number }): string | null {
  let depth = 0;
  let containers = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > limits.depth) return `nests deeper than ${limits.depth} levels (at character ${i})`;
      if (++containers > limits.containers) return `holds more than ${limits.containers} objects and arrays`;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return null;
}

/** Limits for JSON that describes a model (config.json, an index, `__metadata__.config`): far past any real one. */
const MODEL_JSON_LIMITS = { depth: 32, containers: 1 << 20 };
