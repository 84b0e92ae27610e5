/**
 * Loads a TransformerLens-named attention-only checkpoint (METRICS.md §1): config from the
 * header's `__metadata__.config` or a `config.json` beside the file, every required
 * tensor checked against the shape the config implies.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { checkpointError, shapeMismatch } from '../errors.ts';
import { expectedShapes, isIgnoredBuffer, parseModelConfig, type ModelConfig } from './config.ts';
import { readTensor, withSafetensors, type HostTensor, type SafetensorsHeader } from './safetensors.ts';

/** TL state-dict name → float32 host tensor. */
export type Weights = Map<string, HostTensor>;

export interface Checkpoint {
  path: string;
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
  step: number | null;
  tokensSeen: number | null;
  metadata: Record<string, string>;
  tensors: { name: string; dtype: string; shape: number[] }[];
}

function parseCount(file: string, metadata: Record<string, string>, key: string): number | null {
  const raw = metadata[key];
  if (raw === undefined) return null;
  if (!/^\d+$/.test(raw.trim())) {
    throw checkpointError(file, `metadata '${key}' is ${JSON.stringify(raw)}, not a decimal integer`, `__metadata__.${key}`);
  }
  return Number(raw.trim());
}

function resolveConfig(file: string, metadata: Record<string, string>): ModelConfig {
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
    const beside = join(dirname(file), 'config.json');
    source = beside;
    if (!existsSync(beside)) {
      throw checkpointError(file, 'missing config: no __metadata__.config in the header and no config.json beside the file', 'config');
    }
    try {
      raw = JSON.parse(readFileSync(beside, 'utf8'));
    } catch (err) {
      throw checkpointError(file, `${beside} is not valid JSON (${(err as Error).message})`, 'config', err);
    }
  }
  const parsed = parseModelConfig(raw);
  if (!parsed.ok) throw checkpointError(file, `invalid config in ${source}: ${parsed.problems.join('; ')}`, 'config');
  return parsed.config;
}

function checkKeys(file: string, header: SafetensorsHeader, config: ModelConfig): Map<string, number[]> {
  const expected = expectedShapes(config);
  for (const [key, shape] of expected) {
    const info = header.tensors.get(key);
    if (!info) throw checkpointError(file, `missing tensor '${key}' (shape [${shape.join(', ')}] expected by the config)`, key);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw shapeMismatch(file, key, shape, info.shape);
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
    const config = resolveConfig(file, header.metadata);
    checkKeys(file, header, config);
    return {
      path: file,
      config,
      step: parseCount(file, header.metadata, 'step'),
      tokensSeen: parseCount(file, header.metadata, 'tokens_seen'),
      metadata: header.metadata,
      tensors: [...header.tensors.entries()].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })),
    };
  });
}

/** Loads every weight the config requires; each tensor is read from disk exactly once. */
export function loadCheckpoint(file: string): Checkpoint {
  return withSafetensors(file, (fd, header) => {
    const config = resolveConfig(file, header.metadata);
    const expected = checkKeys(file, header, config);
    const weights: Weights = new Map();
    for (const key of expected.keys()) weights.set(key, readTensor(fd, file, header, key));
    return {
      path: file,
      config,
      step: parseCount(file, header.metadata, 'step'),
      tokensSeen: parseCount(file, header.metadata, 'tokens_seen'),
      metadata: header.metadata,
      weights,
    };
  });
}
