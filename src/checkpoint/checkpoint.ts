/**
 * Loads a checkpoint of any source (source.ts: a file or a model folder, any container and
 * family) as TransformerLens-named float32 weights (METRICS.md §1), and gives it its
 * identity: a sha256 over every file it was read from.
 *
 * Each weight is read once, straight into the one float32 copy that is kept: F32 bytes
 * land in it as read, F16/BF16/F64 are decoded into it through a bounded window, and
 * conversions (GPT-2's packed c_attn, transposed Linear weights) are strided reads of the
 * stored bytes (read.ts, convert.ts). The hash is taken in the same pass, in file order.
 *
 * Identity (`Checkpoint.sha256`):
 * - a checkpoint read from one file, whole (a safetensors file that carries its config):
 *   the sha256 of that file, as `sha256sum` prints it;
 * - anything else: the sha256 of the text `headsweep-checkpoint-v1\n` followed by one line
 *   `<sha256>  <name>\n` per file, sorted by name, where name is the file's path relative
 *   to the checkpoint's folder and sha256 is that of the file's bytes, except for torch
 *   archives, where it is the sha256 of the byte ranges read, concatenated in file order:
 *   the records of data.pkl, byteorder and the weights' storages, and everything from the
 *   central directory to the end (whose CRC-32s cover the records not read).
 */
import { createHash, type Hash } from 'node:crypto';
import { checkpointError, quote, type HeadsweepError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import type { BackendName } from '../names.ts';
import { countNonFinite, DTYPE_BYTES, type DType, type NonFiniteCount } from './dtypes.ts';
import { assertFits, VOCABULARY_MATRICES } from './memory.ts';
import {
  alignedSize, checkBlock, decodeInto, elementCount, isContiguous, OpenFiles, readExactly, spanBytes, subView, ViewReader,
  type HostTensor, type ReadBuffer, type Storage, type StridedView,
} from './read.ts';
import { openSourceWith, type Source, type SourceFile, type SourceOptions } from './source.ts';
import type { TensorPlan } from './convert.ts';

/** TL state-dict name → float32 host tensor. */
export type Weights = Map<string, HostTensor>;

export interface Checkpoint {
  /** As given: a file or a model folder. */
  path: string;
  /** The checkpoint's identity in output tables (see the file comment). */
  sha256: string;
  config: ModelConfig;
  step: number | null;
  tokensSeen: number | null;
  metadata: Record<string, string>;
  /** Every TL weight the config implies, in TL order, except those left in the file (LoadOptions). */
  weights: Weights;
  /** The open files, for the weights left in them; present only when some were. */
  file?: OpenWeights;
  /** What was read and how: family, container, files (each with its sha256), tensors. */
  source: Source;
  /**
   * The stored tensors whose values hold NaN or ±Inf (what a diverged training run
   * writes), counted while loading; empty when every weight is finite. Scoring refuses
   * such a checkpoint (score.ts): no score of it would mean anything, and a
   * decomposition of a matrix holding a NaN may never return.
   */
  nonFinite: NonFiniteTensor[];
}

/** A stored tensor (or torch storage) with non-finite values, and the TL weights read from it. */
export interface NonFiniteTensor extends NonFiniteCount {
  /** As the container names it: `tensor 'blocks.0.attn.W_V'`, `record 'archive/data/3'`. */
  label: string;
  tl: string[];
  /** Elements stored. */
  values: number;
}

/** What `inspect` and planning know of a checkpoint without reading its weights (weights files have no sha256 yet). */
export type CheckpointInfo = Omit<Source, 'plan' | 'regions'>;

export interface LoadOptions extends SourceOptions {
  /**
   * Read the weights into this reused buffer instead of fresh memory. They are then views
   * of it and stay valid only until the next load into the same buffer; a pool thread that
   * scores one checkpoint at a time passes its own.
   */
  readBuffer?: ReadBuffer;
  /**
   * Weights to leave in the file: hashed like the rest, not kept in `weights`, read in
   * blocks through `Checkpoint.file` instead, which keeps the files open until
   * `closeCheckpoint`. For the vocabulary-sized matrices, which scoring reads only a slice
   * at a time: not holding them saves their memory and its first touch.
   */
  leaveInFile?: readonly string[];
  /** Refuse, before reading any weight, a model this backend cannot hold (memory.ts). */
  backend?: BackendName;
  /**
   * Whether scoring will upload W_E and W_U whole (bigram_kl does), for that check.
   * Default: unless both are left in the file.
   */
  vocabularyOnDevice?: boolean;
}

function infoOf(s: Source): CheckpointInfo {
  const { plan: _plan, regions: _regions, ...info } = s;
  return info;
}

/** Reads only the small parts (headers, directories, pickles, JSON): config, step, files and the tensor table. */
export function inspectCheckpoint(path: string, opts: SourceOptions = {}): CheckpointInfo {
  const files = new OpenFiles();
  try {
    return infoOf(openSourceWith(path, opts, files));
  } finally {
    files.close();
  }
}

/** Weights left in their files, read in blocks on demand (see LoadOptions.leaveInFile). */
export class OpenWeights {
  private readonly reader: ViewReader;

  constructor(
    readonly path: string,
    private readonly files: OpenFiles,
    private readonly views: ReadonlyMap<string, StridedView>,
  ) {
    this.reader = new ViewReader((file) => files.fd(file), new Uint8Array(BLOCK_WINDOW));
  }

  private view(key: string): StridedView {
    const v = this.views.get(key);
    if (v === undefined) throw checkpointError(this.path, `weight ${quote(key)} is neither loaded nor left in an open file`, key);
    return v;
  }

  /** rows [row, row + rows) × columns [col, col + cols) of a 2-D weight, float32 row-major, into `into` when given. -> [rows · cols] */
  readBlock(key: string, row: number, rows: number, col: number, cols: number, into?: Float32Array): Float32Array {
    const v = this.view(key);
    checkBlock(key, v.shape, row, rows, col, cols);
    const out = into ?? new Float32Array(rows * cols);
    this.reader.read(subView(v, [row, col], [rows, cols]), out);
    return out;
  }

  readAll(key: string): HostTensor {
    const v = this.view(key);
    const data = new Float32Array(elementCount(v.shape)!);
    this.reader.read(v, data);
    return { shape: v.shape, data };
  }

  close(): void {
    this.files.close();
  }
}

/** Stored tensors a non-finite-weights message names; the rest are counted. */
const NAMED_TENSORS = 4;

/**
 * The `load`-stage error for a checkpoint whose weights hold NaN or ±Inf, naming each
 * tensor (and the TL weights read from it) with its counts, or null when every weight is
 * finite: `<file>: non-finite weights: tensor 'blocks.0.attn.W_V' (blocks.0.attn.W_V)
 * holds 3 NaN of 512 values; ...`.
 */
export function nonFiniteError(ck: Pick<Checkpoint, 'path' | 'nonFinite'>): HeadsweepError | null {
  const bad = ck.nonFinite;
  if (bad.length === 0) return null;
  const described = bad.slice(0, NAMED_TENSORS).map((t) => {
    const kinds = [[t.nan, 'NaN'], [t.posInf, '+Inf'], [t.negInf, '-Inf']].filter(([n]) => (n as number) > 0).map(([n, kind]) => `${n} ${kind}`);
    const tl = t.tl.length === 1 && t.label === `tensor ${quote(t.tl[0])}` ? '' : ` (read as ${t.tl.join(', ')})`;
    return `${t.label}${tl} holds ${kinds.join(', ')} of ${t.values} values`;
  });
  const more = bad.length > NAMED_TENSORS ? `; and ${bad.length - NAMED_TENSORS} more tensors` : '';
  return checkpointError(
    ck.path,
    `non-finite weights (a diverged training run writes these): ${described.join('; ')}${more}; no score is computed from them`,
    bad[0].tl[0],
  );
}

/** Closes the files of a checkpoint loaded with `leaveInFile`; a no-op otherwise, and when called again. */
export function closeCheckpoint(ck: Checkpoint): void {
  const file = ck.file;
  ck.file = undefined;
  file?.close();
}

/** A required weight, whole: from memory, or read from the file it was left in. */
export function weightOf(ck: Checkpoint, key: string): HostTensor {
  const t = ck.weights.get(key);
  if (t !== undefined) return t;
  if (ck.file === undefined) throw checkpointError(ck.path, `weight ${quote(key)} is neither loaded nor left in an open file`, key);
  return ck.file.readAll(key);
}

/**
 * rows [row, row + rows) × columns [col, col + cols) of a 2-D weight, float32 row-major,
 * into `into` when given, from memory or from the file it was left in. -> [rows · cols]
 */
export function weightBlock(ck: Checkpoint, key: string, row: number, rows: number, col: number, cols: number, into?: Float32Array): Float32Array {
  const t = ck.weights.get(key);
  if (t === undefined) {
    if (ck.file === undefined) throw checkpointError(ck.path, `weight ${quote(key)} is neither loaded nor left in an open file`, key);
    return ck.file.readBlock(key, row, rows, col, cols, into);
  }
  checkBlock(key, t.shape, row, rows, col, cols);
  const width = t.shape[1];
  const out = into ?? new Float32Array(rows * cols);
  if (cols === width) out.set(t.data.subarray(row * width, (row + rows) * width));
  else for (let r = 0; r < rows; r++) out.set(t.data.subarray((row + r) * width + col, (row + r) * width + col + cols), r * cols);
  return out;
}

/** Bytes of the window non-contiguous weights are read through, at most: a stored tensor this size or smaller is read once. */
const LOAD_WINDOW = 64 << 20;
/** The window of the weights left in files (blocks of W_U and W_E rows are small). */
const BLOCK_WINDOW = 4 << 20;
/** Bytes hashed per read where nothing is kept. */
const HASH_CHUNK = 8 << 20;

/** A run of one file to hash: a storage (with the kept weights that read it) or bytes nothing reads. */
interface Region {
  begin: number;
  bytes: number;
  storage: Storage | null;
}

/** Whether a weight is its storage, byte for byte: then it is read straight into place. */
function isWholeStorage(v: StridedView): boolean {
  return isContiguous(v) && v.base === v.storage.begin && spanBytes(v) === v.storage.bytes;
}

/** The regions of a file in file order: every byte for whole files, else the listed ranges and the storages. */
function regionsOf(f: SourceFile, storages: readonly Storage[], extra: readonly { begin: number; bytes: number }[]): Region[] {
  const own = storages.filter((s) => s.file === f.path).sort((a, b) => a.begin - b.begin);
  const regions: Region[] = [];
  if (f.whole) {
    let at = 0;
    for (const s of own) {
      if (s.begin > at) regions.push({ begin: at, bytes: s.begin - at, storage: null });
      regions.push({ begin: s.begin, bytes: s.bytes, storage: s });
      at = Math.max(at, s.begin + s.bytes);
    }
    if (at < f.bytes) regions.push({ begin: at, bytes: f.bytes - at, storage: null });
    return regions;
  }
  return [...own.map((s) => ({ begin: s.begin, bytes: s.bytes, storage: s })), ...extra.map((r) => ({ ...r, storage: null }))]
    .sort((a, b) => a.begin - b.begin);
}

/** The digest of a checkpoint read from several files, or one file in part (see the file comment). */
function manifestDigest(files: readonly SourceFile[]): string {
  const lines = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((f) => `${f.sha256}  ${f.name}\n`);
  return createHash('sha256').update(`headsweep-checkpoint-v1\n${lines.join('')}`).digest('hex');
}

type Planned = TensorPlan & { view: StridedView };

/**
 * One pass over the weights files in file order: hashes what the identity covers and
 * fills `kept`. Sets each weights file's sha256; returns the checkpoint's and the values.
 */
function readWeights(
  source: Source, files: OpenFiles, kept: readonly Planned[], into: ReadBuffer | undefined,
): { sha256: string; values: Map<string, Float32Array>; nonFinite: NonFiniteTensor[] } {
  // Which kept weights read each storage; storages only weights left in the file read are hashed, not kept.
  const readers = new Map<Storage, Planned[]>();
  // Every storage a weight reads, kept or left in the file, is checked for non-finite values as it passes.
  const checks = new Map<Storage, NonFiniteTensor & { dtype: DType }>();
  for (const p of source.plan.values()) {
    if (p.view === null) continue;
    if (!readers.has(p.view.storage)) readers.set(p.view.storage, []);
    const check = checks.get(p.view.storage);
    if (check === undefined) {
      const s = p.view.storage;
      checks.set(s, { label: s.label, tl: [p.key], values: Math.floor(s.bytes / DTYPE_BYTES[p.view.dtype]), dtype: p.view.dtype, nan: 0, posInf: 0, negInf: 0 });
    } else check.tl.push(p.key);
  }
  for (const p of kept) readers.get(p.view.storage)!.push(p);
  const weightFiles = source.files.filter((f) => f.role === 'weights');
  const regions = new Map(weightFiles.map((f) => [f.path, regionsOf(f, [...readers.keys()], source.regions.get(f.path) ?? [])]));

  // The window is as large as the largest region that is not read straight into place.
  let windowBytes = 0;
  for (const list of regions.values()) {
    for (const r of list) {
      const users = r.storage === null ? [] : readers.get(r.storage)!;
      const direct = users.length === 1 && isWholeStorage(users[0].view);
      // F32 read straight into place needs no window; F16/BF16/F64 are decoded a chunk at a time.
      if (direct && users[0].view.dtype === 'F32') continue;
      windowBytes = Math.max(windowBytes, Math.min(users.length > 0 && !direct ? LOAD_WINDOW : HASH_CHUNK, r.bytes));
    }
  }
  windowBytes = alignedSize(Math.max(windowBytes, 8));
  into?.reset(kept.reduce((n, p) => n + alignedSize(elementCount(p.shape)! * 4), 0) + windowBytes);
  const window = into?.take(windowBytes) ?? new Uint8Array(windowBytes);
  const reader = new ViewReader((file) => files.fd(file), window);

  const values = new Map<string, Float32Array>();
  const destination = (p: TensorPlan) => {
    const n = elementCount(p.shape)!;
    const bytes = into?.take(n * 4);
    const data = bytes ? new Float32Array(bytes.buffer, bytes.byteOffset, n) : new Float32Array(n);
    values.set(p.key, data);
    return data;
  };
  for (const f of weightFiles) {
    const fd = files.fd(f.path);
    const hash = createHash('sha256');
    for (const r of regions.get(f.path)!) {
      const users = r.storage === null ? [] : readers.get(r.storage)!;
      const check = r.storage === null ? undefined : checks.get(r.storage);
      const seen = check === undefined ? undefined : (bytes: Uint8Array) => countNonFinite(bytes, check.dtype, check);
      readRegion(fd, f.path, r, users, hash, window, reader, destination, seen);
    }
    f.sha256 = hash.digest('hex');
  }
  const only = source.files.length === 1 && source.files[0].whole ? source.files[0] : null;
  const nonFinite = [...checks.values()].filter((c) => c.nan + c.posInf + c.negInf > 0).map(({ dtype: _, ...c }) => c);
  return { sha256: only !== null ? only.sha256! : manifestDigest(source.files), values, nonFinite };
}

/**
 * Loads every weight the config implies. Each stored byte a weight needs is read once
 * where it fits the window (`LOAD_WINDOW`); the hash is taken in the same pass.
 */
export function loadCheckpoint(path: string, opts: LoadOptions = {}): Checkpoint {
  const files = new OpenFiles();
  let keepOpen = false;
  try {
    const source = openSourceWith(path, opts, files);
    const plans = [...source.plan.values()];
    const leave = new Set((opts.leaveInFile ?? []).filter((key) => {
      const p = source.plan.get(key);
      return p !== undefined && p.view !== null;
    }));
    if (opts.backend !== undefined) {
      const vocabularyInFile = VOCABULARY_MATRICES.every((key) => leave.has(key));
      assertFits(path, source.config, opts.backend, opts.vocabularyOnDevice ?? !vocabularyInFile);
    }
    const kept = plans.filter((p): p is Planned => p.view !== null && !leave.has(p.key));
    const { sha256, values, nonFinite } = readWeights(source, files, kept, opts.readBuffer);

    // TL order; an optional tensor the source lacks (a bias) reads as zeros, as TransformerLens fills it.
    const weights: Weights = new Map();
    for (const p of plans) {
      if (leave.has(p.key)) continue;
      weights.set(p.key, { shape: p.shape, data: values.get(p.key) ?? new Float32Array(elementCount(p.shape)!) });
    }
    const ck: Checkpoint = {
      path, sha256, config: source.config, step: source.step, tokensSeen: source.tokensSeen, metadata: source.metadata, weights, source, nonFinite,
    };
    if (leave.size > 0) {
      ck.file = new OpenWeights(path, files, new Map([...leave].map((key) => [key, source.plan.get(key)!.view!])));
      keepOpen = true;
    }
    return ck;
  } finally {
    if (!keepOpen) files.close();
  }
}

/**
 * The identity `loadCheckpoint` would give, from the same bytes, without keeping any
 * weight: for deciding whether a checkpoint changed since it was scored. The source comes
 * with it, every file's sha256 set.
 */
export function checkpointDigest(path: string, opts: SourceOptions = {}): { sha256: string; source: Source } {
  const files = new OpenFiles();
  try {
    const source = openSourceWith(path, opts, files);
    return { sha256: readWeights(source, files, [], undefined).sha256, source };
  } finally {
    files.close();
  }
}

/**
 * Hashes one region and fills the weights that read it: straight into place when a weight
 * is its whole storage, from the window when the storage fits in it, else by strided
 * reads of the file after hashing.
 */
function readRegion(
  fd: number, file: string, r: Region, users: Planned[], hash: Hash,
  window: Uint8Array, reader: ViewReader, destination: (p: TensorPlan) => Float32Array,
  seen: ((bytes: Uint8Array) => void) | undefined,
): void {
  const what = r.storage?.label ?? 'bytes';
  if (users.length === 1 && isWholeStorage(users[0].view)) {
    const v = users[0].view;
    const out = destination(users[0]);
    if (v.dtype === 'F32') {
      const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      readExactly(fd, file, bytes, r.begin, what);
      hash.update(bytes);
      seen?.(bytes);
      return;
    }
    // Decoded chunk by chunk, so the stored bytes are never held beside the float32 copy.
    const item = DTYPE_BYTES[v.dtype];
    const step = Math.floor(Math.min(window.byteLength, HASH_CHUNK) / 8) * 8;
    for (let at = 0; at < r.bytes; at += step) {
      const part = window.subarray(0, Math.min(step, r.bytes - at));
      readExactly(fd, file, part, r.begin + at, what);
      hash.update(part);
      seen?.(part);
      decodeInto(part, v.dtype, out, at / item);
    }
    return;
  }
  if (users.length > 0 && r.bytes <= window.byteLength) {
    const bytes = window.subarray(0, r.bytes);
    readExactly(fd, file, bytes, r.begin, what);
    hash.update(bytes);
    seen?.(bytes);
    for (const p of users) reader.read(p.view, destination(p), 0, { file, begin: r.begin, bytes });
    return;
  }
  for (let at = 0; at < r.bytes; at += window.byteLength) {
    const part = window.subarray(0, Math.min(window.byteLength, r.bytes - at));
    readExactly(fd, file, part, r.begin + at, what);
    hash.update(part);
    seen?.(part);
  }
  for (const p of users) reader.read(p.view, destination(p));
}
