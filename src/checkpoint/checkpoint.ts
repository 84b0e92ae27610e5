/**
 * Loads a TransformerLens-named attention-only checkpoint (METRICS.md §1): config from the
 * header's `__metadata__.config` or a `config.json` beside the file, every required
 * tensor checked against the shape the config implies.
 *
 * When both config sources exist the header wins: it travels with the weights, while a
 * `config.json` describes whatever folder the file was copied into.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { checkpointError, shapeMismatch } from '../errors.ts';
import { expectedShapes, isIgnoredBuffer, parseModelConfig, type ModelConfig } from './config.ts';
import { createHash } from 'node:crypto';
import { decodeFloats, FLOAT_DTYPES, readHeaderBytes, readTensorBytes, withSafetensors, type HostTensor, type SafetensorsHeader } from './safetensors.ts';

/** TL state-dict name → float32 host tensor. */
export type Weights = Map<string, HostTensor>;

export interface Checkpoint {
  path: string;
  /** sha256 of the file's bytes, hex: the checkpoint's identity in output tables. */
  sha256: string;
  config: ModelConfig;
  /** Training step from metadata `step`, else null (the pipeline may fill it from the file name). */
  step: number | null;
  tokensSeen: number | null;
  metadata: Record<string, string>;
  weights: Weights;
}

export interface CheckpointInfo {
  path: string;
  config: ModelConfig;
  /** Where the config came from: `__metadata__.config` or the path of the config.json. */
  configSource: string;
  step: number | null;
  tokensSeen: number | null;
  metadata: Record<string, string>;
  /** The config's tensors in TL order (embed → blocks → unembed), then the ignored TL buffers. */
  tensors: { name: string; dtype: string; shape: number[]; ignored: boolean }[];
}

function parseCount(file: string, metadata: Record<string, string>, key: string): number | null {
  const raw = metadata[key];
  if (raw === undefined) return null;
  const value = Number(raw.trim());
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value)) {
    throw checkpointError(file, `metadata '${key}' is ${JSON.stringify(raw)}, not a decimal integer below 2^53`, `__metadata__.${key}`);
  }
  return value;
}

function resolveConfig(file: string, metadata: Record<string, string>): { config: ModelConfig; source: string } {
  let raw: unknown;
  let source: string;
  if (metadata.config !== undefined) {
    source = '__metadata__.config';
    try {
      raw = JSON.parse(metadata.config);
    } catch (err) {
      throw checkpointError(file, `${source} is not valid JSON (${(err as Error).message})`, source, err);
    }
  } else {
    source = join(dirname(file), 'config.json');
    let text: string;
    try {
      text = readFileSync(source, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        throw checkpointError(file, 'missing config: no __metadata__.config in the header and no config.json beside the file', 'config', err);
      }
      throw checkpointError(file, `cannot read ${source} (${code ?? (err as Error).message})`, 'config', err);
    }
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw checkpointError(file, `${source} is not valid JSON (${(err as Error).message})`, 'config', err);
    }
  }
  const parsed = parseModelConfig(raw);
  if (!parsed.ok) throw checkpointError(file, `invalid config in ${source}: ${parsed.problems.join('; ')}`, 'config');
  return { config: parsed.config, source };
}

/** Checks every required key, shape and dtype; returns the required shapes in TL order. */
function checkKeys(file: string, header: SafetensorsHeader, config: ModelConfig): Map<string, number[]> {
  const expected = expectedShapes(config);
  for (const [key, shape] of expected) {
    const info = header.tensors.get(key);
    if (!info) throw checkpointError(file, `missing tensor '${key}' (shape [${shape.join(', ')}] expected by the config)`, key);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw shapeMismatch(file, key, shape, info.shape);
    }
    if (!FLOAT_DTYPES.includes(info.dtype)) {
      throw checkpointError(file, `tensor '${key}' has dtype ${info.dtype}; weights must be ${FLOAT_DTYPES.join(', ')}`, key);
    }
  }
  for (const key of header.tensors.keys()) {
    if (!expected.has(key) && !isIgnoredBuffer(key)) {
      throw checkpointError(file, `unexpected tensor '${key}' for a config with ${config.n_layers} layers and normalization ${config.normalization_type}`, key);
    }
  }
  return expected;
}

/** Reads only the header: config, metadata and the tensor table (for `inspect` and planning). */
export function inspectCheckpoint(file: string): CheckpointInfo {
  return withSafetensors(file, (_fd, header) => {
    const { config, source } = resolveConfig(file, header.metadata);
    const expected = checkKeys(file, header, config);
    const ignored = [...header.tensors.keys()].filter((name) => !expected.has(name));
    const tensors = [...expected.keys(), ...ignored].map((name) => {
      const t = header.tensors.get(name)!;
      return { name, dtype: t.dtype, shape: t.shape, ignored: !expected.has(name) };
    });
    return {
      path: file,
      config,
      configSource: source,
      step: parseCount(file, header.metadata, 'step'),
      tokensSeen: parseCount(file, header.metadata, 'tokens_seen'),
      metadata: header.metadata,
      tensors,
    };
  });
}

/** Loads every weight the config requires; each tensor is read from disk exactly once. */
export function loadCheckpoint(file: string): Checkpoint {
  return withSafetensors(file, (fd, header) => {
    const { config } = resolveConfig(file, header.metadata);
    const expected = checkKeys(file, header, config);
    const step = parseCount(file, header.metadata, 'step');
    const tokensSeen = parseCount(file, header.metadata, 'tokens_seen');
    // One pass over the file: tensors are read in storage order (the reader has checked
    // that they tile the data section), so hashing each one as it arrives yields the
    // file's sha256 without reading anything twice. Ignored buffers are read for the hash only.
    const hash = createHash('sha256').update(readHeaderBytes(fd, file, header));
    const weights: Weights = new Map();
    const inFileOrder = [...header.tensors.entries()].sort((a, b) => a[1].begin - b[1].begin);
    for (const [key, info] of inFileOrder) {
      const bytes = readTensorBytes(fd, file, header, key);
      hash.update(bytes);
      if (expected.has(key)) weights.set(key, decodeFloats(file, key, info, bytes));
    }
    // The config's key order (TL order) is what callers iterate in.
    const ordered: Weights = new Map([...expected.keys()].map((key) => [key, weights.get(key)!]));
    return { path: file, sha256: hash.digest('hex'), config, step, tokensSeen, metadata: header.metadata, weights: ordered };
  });
}
