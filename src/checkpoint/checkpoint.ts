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
import { expectedTensors, isIgnoredBuffer, parseModelConfig, type ModelConfig, type TensorSpec } from '../model/config.ts';
import { createHash } from 'node:crypto';
import {
  alignedSize,
  checkBlock,
  decodeFloats,
  FLOAT_DTYPES,
  readHeaderBytes,
  readExactly,
  readTensorBytes,
  TensorFile,
  withSafetensors,
  type HostTensor,
  type ReadBuffer,
  type SafetensorsHeader,
} from './safetensors.ts';

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
  /** Every required weight, except those loaded with `leaveInFile`. */
  weights: Weights;
  /** The open file, for the weights left in it; present only when some were (see LoadOptions). */
  file?: TensorFile;
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

/**
 * Checks every key, shape and dtype; returns the tensors the config implies in TL order
 * (optional ones included, present in the file or not).
 */
function checkKeys(file: string, header: SafetensorsHeader, config: ModelConfig): Map<string, TensorSpec> {
  const expected = expectedTensors(config);
  for (const [key, { shape, optional }] of expected) {
    const info = header.tensors.get(key);
    if (!info && optional) continue;
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
    const present = [...expected.keys()].filter((name) => header.tensors.has(name));
    const tensors = [...present, ...ignored].map((name) => {
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

export interface LoadOptions {
  /**
   * Read the tensors into this reused buffer instead of fresh memory. The F32 weights
   * returned are then views of it and stay valid only until the next load into the same
   * buffer; a pool thread that scores one checkpoint at a time passes its own.
   */
  readBuffer?: ReadBuffer;
  /**
   * Weights to leave in the file: hashed like the rest, not kept in `weights`, and read
   * in blocks through `Checkpoint.file` instead, which keeps the file open until
   * `closeCheckpoint`. For the vocabulary-sized matrices, which scoring reads only a
   * slice at a time: not holding them saves their memory and its first touch, which
   * costs about as much as reading them (see ReadBuffer).
   */
  leaveInFile?: readonly string[];
}

/** Closes the file of a checkpoint loaded with `leaveInFile`; a no-op otherwise, and when called again. */
export function closeCheckpoint(ck: Checkpoint): void {
  const file = ck.file;
  ck.file = undefined;
  file?.close();
}

/** A required weight, whole: from memory, or read from the file it was left in. */
export function weightOf(ck: Checkpoint, key: string): HostTensor {
  const t = ck.weights.get(key);
  if (t !== undefined) return t;
  if (ck.file === undefined) throw checkpointError(ck.path, `weight '${key}' is neither loaded nor left in an open file`, key);
  return ck.file.readAll(key);
}

/**
 * rows [row, row + rows) × columns [col, col + cols) of a 2-D weight, float32 row-major,
 * into `into` when given, from memory or from the file it was left in. -> [rows · cols]
 */
export function weightBlock(ck: Checkpoint, key: string, row: number, rows: number, col: number, cols: number, into?: Float32Array): Float32Array {
  const t = ck.weights.get(key);
  if (t === undefined) {
    if (ck.file === undefined) throw checkpointError(ck.path, `weight '${key}' is neither loaded nor left in an open file`, key);
    return ck.file.readBlock(key, row, rows, col, cols, into);
  }
  checkBlock(key, t.shape, row, rows, col, cols);
  const width = t.shape[1];
  const out = into ?? new Float32Array(rows * cols);
  if (cols === width) out.set(t.data.subarray(row * width, (row + rows) * width));
  else for (let r = 0; r < rows; r++) out.set(t.data.subarray((row + r) * width + col, (row + r) * width + col + cols), r * cols);
  return out;
}

/** Bytes hashed per read for the weights left in the file. */
const HASH_CHUNK = 8 << 20;

/**
 * Loads every weight the config requires; each tensor kept in memory is read from disk
 * exactly once (the hash is taken in the same pass), those left in the file once for the
 * hash and then as blocks when asked for.
 */
export function loadCheckpoint(file: string, opts: LoadOptions = {}): Checkpoint {
  return withSafetensors(file, (fd, header, keepOpen) => {
    const { config } = resolveConfig(file, header.metadata);
    const expected = checkKeys(file, header, config);
    const leave = new Set((opts.leaveInFile ?? []).filter((key) => expected.has(key)));
    const step = parseCount(file, header.metadata, 'step');
    const tokensSeen = parseCount(file, header.metadata, 'tokens_seen');
    // One pass over the file: tensors are read in storage order (the reader has checked
    // that they tile the data section), so hashing each one as it arrives yields the
    // file's sha256 without reading anything twice. Ignored buffers are read for the hash only.
    const hash = createHash('sha256').update(readHeaderBytes(fd, file, header));
    const weights: Weights = new Map();
    const inFileOrder = [...header.tensors.entries()].sort((a, b) => a[1].begin - b[1].begin);
    const kept = inFileOrder.filter(([key]) => !leave.has(key));
    const into = opts.readBuffer;
    into?.reset(kept.reduce((n, [, info]) => n + alignedSize(info.end - info.begin), leave.size > 0 ? HASH_CHUNK : 0));
    const chunk = leave.size > 0 ? (into?.take(HASH_CHUNK) ?? new Uint8Array(HASH_CHUNK)) : undefined;
    for (const [key, info] of inFileOrder) {
      if (leave.has(key)) {
        // Hashed through a small buffer; nothing of it is kept.
        for (let at = info.begin; at < info.end; at += HASH_CHUNK) {
          const part = chunk!.subarray(0, Math.min(HASH_CHUNK, info.end - at));
          readExactly(fd, file, part, header.dataStart + at, `tensor '${key}'`);
          hash.update(part);
        }
        continue;
      }
      const bytes = readTensorBytes(fd, file, header, key, into);
      hash.update(bytes);
      if (expected.has(key)) weights.set(key, decodeFloats(file, key, info, bytes));
    }
    // The config's key order (TL order) is what callers iterate in. An optional tensor the
    // file lacks (a bias) reads as zeros, as TransformerLens fills it.
    const zeros = (key: string) => {
      const shape = expected.get(key)!.shape;
      return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
    };
    const ordered: Weights = new Map([...expected.keys()].filter((key) => !leave.has(key)).map((key) => [key, weights.get(key) ?? zeros(key)]));
    const ck: Checkpoint = { path: file, sha256: hash.digest('hex'), config, step, tokensSeen, metadata: header.metadata, weights: ordered };
    if (leave.size > 0) {
      ck.file = new TensorFile(fd, file, header);
      keepOpen();
    }
    return ck;
  });
}
