/**
 * What a checkpoint is, read from its small parts only (headers, zip directories, pickles,
 * JSON files): a file or a model folder, its container and family, the files it is read
 * from, its config as written and as TL config, its step, and how every TL tensor is read
 * from the stored ones. Loading (checkpoint.ts) then reads exactly the bytes planned here.
 *
 * A checkpoint is one of:
 * - a file: `*.safetensors` (headsweep's or any TL state dict, or HF weights with a
 *   config.json beside them), a torch archive (`.pt`, `.pth`, `.bin`: nanoGPT's ckpt.pt,
 *   TL's .pth, HF's pytorch_model.bin), or a sharded index (`*.index.json`);
 * - a model folder: a `config.json` with `model.safetensors`, `model.safetensors.index.json`,
 *   `pytorch_model.bin` or `pytorch_model.bin.index.json` beside it (HF save_pretrained,
 *   Trainer `checkpoint-N`, Pythia `stepN`).
 */
import { closeSync, existsSync, readdirSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { checkpointError, jsonQuote, quote, shownPath } from '../errors.ts';
import { openRegularFile, readRegularFile, TOKENIZER_FILE_BYTES } from '../files.ts';
import { parseModelConfig, type ModelConfig } from '../model/config.ts';
import { planTensors, type TensorPlan } from './convert.ts';
import type { DType } from './dtypes.ts';
import { FAMILIES, familyOfHfConfig, type Family, type FamilyName, type WrittenConfig } from './families/index.ts';
import { invalidConfig } from './families/family.ts';
import { readJsonObject } from './json.ts';
import { OpenFiles, type StoredTensor } from './read.ts';
import { readSafetensorsHeader, storedTensors, type SafetensorsHeader } from './containers/safetensors.ts';
import { mergeShards, readShardIndex, type ShardIndex } from './containers/sharded.ts';
import { openTorchArchive, plainValue, stateDictTensors, type TorchArchive } from './containers/torch.ts';
import type { PyValue } from './containers/pickle.ts';

export type ContainerName = 'safetensors' | 'sharded-safetensors' | 'torch' | 'sharded-torch';
export type FileRole = 'weights' | 'index' | 'config' | 'trainer_state';

/** One file a checkpoint is read from. */
export interface SourceFile {
  /** As opened. */
  path: string;
  /** Relative to the checkpoint's folder: what its identity digests, so a moved folder keeps it. */
  name: string;
  role: FileRole;
  /** Size when the source was opened. */
  bytes: number;
  /**
   * true: every byte is read and hashed. false (torch archives): only the pickle, the zip
   * directory and the storages of the weights, so an optimizer's state is never read.
   */
  whole: boolean;
  /** sha256 of the bytes read: known on opening for JSON files, after loading for weights (null until then). */
  sha256: string | null;
}

/** One stored tensor, as `inspect` shows it. */
export interface SourceTensor {
  /** The name the source gives it. */
  name: string;
  dtype: DType;
  shape: number[];
  file: string;
  /** The TL tensors read from it, in TL order; empty when ignored. */
  tl: string[];
  /** A known buffer (causal mask, rotary table), read past by rule. */
  ignored: boolean;
}

export interface SourceOptions {
  /** Read the checkpoint as this family instead of telling it from config.json or the file's contents. */
  family?: FamilyName;
}

export interface Source {
  /** As given. */
  path: string;
  kind: 'file' | 'folder';
  family: FamilyName;
  /** `family@version`: which conversion produced the TL tensors (part of what a score depends on). */
  converter: string;
  container: ContainerName;
  /** Every file the checkpoint is read from: weights (shards in index order), index, config.json, trainer_state.json. */
  files: SourceFile[];
  /** The config as the trainer wrote it, and where. */
  written: WrittenConfig;
  /** The config in TL spelling, before defaults are resolved. */
  tlConfig: Record<string, unknown>;
  config: ModelConfig;
  step: number | null;
  tokensSeen: number | null;
  /** Where step or tokensSeen came from (`__metadata__.step`, `iter_num`, `trainer_state.json global_step`, `folder name step1000`, …), or null. */
  stepSource: string | null;
  /** safetensors `__metadata__` (of the first shard); empty for torch archives. */
  metadata: Record<string, string>;
  /** A tokenizer.json beside the weights, and how many ids it has (Pythia: 50277, for 50304 embedding rows). */
  tokenizer: { file: string; vocabSize: number | null } | null;
  /** Stored tensors in the TL order of their first use, then the ignored ones. */
  tensors: SourceTensor[];
  /** TL tensors not stored, read as zeros (biases a model has none of). */
  zeros: string[];
  /** How each TL tensor is read, in TL order. */
  plan: Map<string, TensorPlan>;
  /** Per torch archive: the byte ranges besides storages that its identity covers (pickle, directory). */
  regions: Map<string, { begin: number; bytes: number }[]>;
}

const WEIGHTS_IN_FOLDER: [string, ContainerName][] = [
  ['model.safetensors.index.json', 'sharded-safetensors'],
  ['model.safetensors', 'safetensors'],
  ['pytorch_model.bin.index.json', 'sharded-torch'],
  ['pytorch_model.bin', 'torch'],
];

const TORCH_EXTENSIONS = /\.(pt|pth|bin|ckpt)$/;

/** HF Trainer `checkpoint-N` and Pythia `stepN` folders. */
const STEP_FOLDER = /^(checkpoint-|step)(\d+)$/;

/** TL's saved checkpoints: `*_N.pth`, N tokens seen when above 1e9, else steps (get_checkpoint_labels). */
const TL_CHECKPOINT_FILE = /_(\d+)\.pth$/;

function listing(folder: string): string {
  const names = readdirSync(folder).sort();
  if (names.length === 0) return 'it is empty';
  const shown = names.slice(0, 8).map((n) => shownPath(n)).join(', ');
  return `it holds ${shown}${names.length > 8 ? `, … (${names.length} entries)` : ''}`;
}

interface Layout {
  kind: 'file' | 'folder';
  /** The folder of the checkpoint: the model folder, or the one holding the file. */
  folder: string;
  container: ContainerName;
  /** The weights file, or the index of a sharded checkpoint. */
  weights: string;
}

function folderLayout(folder: string): Layout {
  const names = new Set(readdirSync(folder));
  if (!names.has('config.json')) {
    const weights = [...names].filter((n) => TORCH_EXTENSIONS.test(n) || n.endsWith('.safetensors')).sort();
    const hint = weights.length > 0 ? `; to read ${weights.length === 1 ? 'its weights file' : 'one of its weights files'}, give the file (${join(folder, weights[0])})` : '';
    throw checkpointError(folder, `is a folder without a config.json, so not a model folder (${listing(folder)})${hint}`);
  }
  for (const [name, container] of WEIGHTS_IN_FOLDER) {
    if (names.has(name)) return { kind: 'folder', folder, container, weights: join(folder, name) };
  }
  // A TL model folder (config.json and one .pth or .safetensors) names its weights as it likes.
  const weights = [...names].filter((n) => TORCH_EXTENSIONS.test(n) || n.endsWith('.safetensors'));
  if (weights.length === 1) return { ...fileLayout(join(folder, weights[0])), kind: 'folder' };
  throw checkpointError(
    folder,
    `has a config.json but ${weights.length > 1 ? 'several weights files beside it, so which one is meant is unclear' : 'no weights beside it'} (headsweep reads ${WEIGHTS_IN_FOLDER.map(([n]) => n).join(', ')}, or a single .safetensors or torch file); ${listing(folder)}`,
  );
}

function startsWithZip(file: string): boolean {
  try {
    const fd = openRegularFile(file);
    try {
      const head = new Uint8Array(4);
      return readSync(fd, head, 0, 4, 0) === 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
    } finally {
      closeSync(fd);
    }
  } catch {
    // Unreadable: the safetensors reader says why.
    return false;
  }
}

function fileLayout(file: string): Layout {
  const folder = dirname(file);
  const name = basename(file);
  let container: ContainerName;
  if (name.endsWith('.index.json')) container = name.includes('.safetensors') ? 'sharded-safetensors' : 'sharded-torch';
  else if (TORCH_EXTENSIONS.test(name)) container = 'torch';
  else if (name.endsWith('.safetensors')) container = 'safetensors';
  // Any other name: a zip is a torch archive (torch.save writes whatever name it is given).
  else container = startsWithZip(file) ? 'torch' : 'safetensors';
  return { kind: 'file', folder, container, weights: file };
}

/** A safetensors metadata count (`step`, `tokens_seen`): a decimal integer below 2^53. */
function metadataCount(file: string, metadata: Record<string, string>, key: string): number | null {
  const raw = metadata[key];
  if (raw === undefined) return null;
  const value = Number(raw.trim());
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value)) {
    throw checkpointError(file, `metadata ${quote(key)} is ${jsonQuote(raw)}, not a decimal integer below 2^53`, `__metadata__.${key}`);
  }
  return value;
}

/** The opened weights: safetensors headers or torch archives, with the index when sharded. */
type Opened =
  | { kind: 'safetensors'; shards: { file: string; header: SafetensorsHeader }[]; index: ShardIndex | null }
  | { kind: 'torch'; shards: TorchArchive[]; index: ShardIndex | null };

function openWeights(layout: Layout, files: OpenFiles): Opened {
  const sharded = layout.container === 'sharded-safetensors' || layout.container === 'sharded-torch';
  const index = sharded ? readShardIndex(layout.weights) : null;
  const paths = index?.shards ?? [layout.weights];
  for (const shard of paths) {
    if (index !== null && !existsSync(shard)) {
      const tensor = [...index.weightMap].find(([, s]) => s === shard)![0];
      throw checkpointError(index.file, `names shard ${quote(relative(dirname(index.file), shard))} (for tensor ${quote(tensor)} and others), which does not exist`, tensor);
    }
  }
  if (layout.container === 'safetensors' || layout.container === 'sharded-safetensors') {
    return {
      kind: 'safetensors',
      index,
      shards: paths.map((file) => ({ file, header: readSafetensorsHeader(files.fd(file), file) })),
    };
  }
  return { kind: 'torch', index, shards: paths.map((file) => openTorchArchive(files.fd(file), file, statSync(file).size)) };
}

function isNanogptRoot(root: PyValue): root is Map<string, PyValue> {
  return root instanceof Map && root.get('model') instanceof Map && root.get('model_args') instanceof Map;
}

function looksTl(names: Iterable<string>): boolean {
  for (const n of names) if (n === 'embed.W_E' || /^blocks\.\d+\.attn\.W_Q$/.test(n)) return true;
  return false;
}

/** The tensors of every shard, by name, checked against the index when there is one. */
function storedOf(opened: Opened, family: Family): Map<string, StoredTensor> {
  const perShard = new Map<string, Map<string, StoredTensor>>();
  if (opened.kind === 'safetensors') {
    for (const { file, header } of opened.shards) perShard.set(file, storedTensors(file, header));
  } else {
    for (const archive of opened.shards) {
      const root = archive.root;
      const pkl = `${archive.prefix}/data.pkl`;
      const value = family.name === 'nanogpt' && isNanogptRoot(root) ? root.get('model')! : root;
      perShard.set(archive.file, stateDictTensors(archive, value, family.name === 'nanogpt' ? `${pkl}['model']` : pkl));
    }
  }
  if (opened.index !== null) return mergeShards(opened.index, perShard);
  return [...perShard.values()][0];
}

/** Picks the family and the written config, reading config.json only when the weights do not say. */
function familyAndConfig(
  layout: Layout, opened: Opened, opts: SourceOptions, read: (role: FileRole, file: string) => Record<string, unknown>,
): { family: Family; written: WrittenConfig } {
  const weights = layout.weights;
  const configJson = join(layout.folder, 'config.json');
  const hasConfigJson = existsSync(configJson);
  const fromJson = (): WrittenConfig => ({ value: read('config', configJson), source: configJson, file: configJson });
  const header = opened.kind === 'safetensors' ? opened.shards[0] : null;
  const root = opened.kind === 'torch' ? opened.shards[0].root : null;
  const fromHeader = (): WrittenConfig | null => {
    const text = header?.header.metadata.config;
    if (header === null || text === undefined) return null;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw checkpointError(header.file, `__metadata__.config is not valid JSON (${(err as Error).message})`, '__metadata__.config', err);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw checkpointError(header.file, '__metadata__.config is not a JSON object', '__metadata__.config');
    return { value: value as Record<string, unknown>, source: '__metadata__.config', file: header.file };
  };
  const fromModelArgs = (): WrittenConfig => {
    if (root === null || !isNanogptRoot(root)) {
      throw checkpointError(weights, "is not a nanoGPT checkpoint: its pickle is not a dict with 'model' and 'model_args'");
    }
    return { value: plainValue(root.get('model_args')!) as Record<string, unknown>, source: `${weights} model_args`, file: weights };
  };
  const tlConfig = (): WrittenConfig => {
    const w = fromHeader() ?? (hasConfigJson ? fromJson() : null);
    if (w !== null) return w;
    const where = header !== null ? 'no __metadata__.config in the header and no config.json beside the file' : 'no config.json beside the file';
    throw checkpointError(weights, `missing config: ${where}`, 'config');
  };
  const hfConfig = (family: Family): WrittenConfig => {
    if (!hasConfigJson) throw checkpointError(weights, `missing config: the ${family.name} family reads config.json, and there is none in ${layout.folder}`, 'config');
    return fromJson();
  };

  if (opts.family !== undefined) {
    const family = FAMILIES[opts.family];
    const written = family.name === 'tl' ? tlConfig() : family.name === 'nanogpt' ? fromModelArgs() : hfConfig(family);
    return { family, written };
  }
  const inHeader = fromHeader();
  if (inHeader !== null) return { family: FAMILIES.tl, written: inHeader };
  if (root !== null && isNanogptRoot(root)) return { family: FAMILIES.nanogpt, written: fromModelArgs() };
  if (hasConfigJson) {
    const written = fromJson();
    return { family: familyOfHfConfig(configJson, written.value) ?? FAMILIES.tl, written };
  }
  const names = opened.kind === 'safetensors' ? [...opened.shards[0].header.tensors.keys()] : root instanceof Map ? [...root.keys()].map(String) : [];
  if (looksTl(names)) return { family: FAMILIES.tl, written: tlConfig() };
  throw checkpointError(
    weights,
    `cannot tell which family this checkpoint is: no config.json beside it${header !== null ? ', no __metadata__.config in its header' : ''}, ` +
      `and its tensors (${names.slice(0, 3).map((n) => quote(n)).join(', ')}${names.length > 3 ? ', …' : ''}) are not TransformerLens names; name the family (${Object.keys(FAMILIES).join(', ')})`,
  );
}

/** Step and tokens seen, from where each trainer records them (CHECKPOINT-FORMATS.md §8). */
function stepOf(
  layout: Layout, family: Family, opened: Opened, read: (role: FileRole, file: string) => Record<string, unknown>,
): { step: number | null; tokensSeen: number | null; stepSource: string | null } {
  if (opened.kind === 'safetensors') {
    const { file, header } = opened.shards[0];
    const step = metadataCount(file, header.metadata, 'step');
    const tokensSeen = metadataCount(file, header.metadata, 'tokens_seen');
    if (step !== null || tokensSeen !== null) return { step, tokensSeen, stepSource: step !== null ? '__metadata__.step' : '__metadata__.tokens_seen' };
  }
  const root = opened.kind === 'torch' ? opened.shards[0].root : null;
  if (family.name === 'nanogpt' && root !== null && isNanogptRoot(root)) {
    const iter = root.get('iter_num');
    if (iter !== undefined) {
      if (!Number.isSafeInteger(iter) || (iter as number) < 0) throw checkpointError(layout.weights, `iter_num is ${String(plainValue(iter))}, not a non-negative integer`, 'iter_num');
      return { step: iter as number, tokensSeen: null, stepSource: 'iter_num' };
    }
  }
  const hf = family.name === 'gpt2' || family.name === 'neox' || family.name === 'llama';
  const state = join(layout.folder, 'trainer_state.json');
  if (hf && existsSync(state)) {
    const step = read('trainer_state', state).global_step;
    if (!Number.isSafeInteger(step) || (step as number) < 0) throw checkpointError(state, `global_step is ${jsonQuote(step)}, not a non-negative integer`, 'global_step');
    return { step: step as number, tokensSeen: null, stepSource: 'trainer_state.json global_step' };
  }
  const folderName = basename(layout.folder);
  const m = hf ? STEP_FOLDER.exec(folderName) : null;
  if (m !== null) return { step: Number(m[2]), tokensSeen: null, stepSource: `folder name ${folderName}` };
  const t = family.name === 'tl' && opened.kind === 'torch' ? TL_CHECKPOINT_FILE.exec(basename(layout.weights)) : null;
  if (t !== null) {
    const n = Number(t[1]);
    const label = `file name ${basename(layout.weights)}`;
    return n > 1e9 ? { step: null, tokensSeen: n, stepSource: label } : { step: n, tokensSeen: null, stepSource: label };
  }
  return { step: null, tokensSeen: null, stepSource: null };
}

/** The ids a tokenizer.json defines: its vocabulary and added tokens (the largest id + 1). */
function tokenizerOf(folder: string): Source['tokenizer'] {
  const file = join(folder, 'tokenizer.json');
  if (!existsSync(file)) return null;
  try {
    const json = JSON.parse(readRegularFile(file, { bytes: TOKENIZER_FILE_BYTES, what: 'a tokenizer.json' }).toString('utf8')) as { model?: { vocab?: unknown }; added_tokens?: { id?: unknown }[] };
    let top = -1;
    const vocab = json.model?.vocab;
    // BPE and WordPiece map token → id; Unigram lists [token, score] pairs in id order.
    if (Array.isArray(vocab)) top = vocab.length - 1;
    else if (vocab !== null && typeof vocab === 'object') for (const id of Object.values(vocab)) if (typeof id === 'number' && id > top) top = id;
    for (const t of json.added_tokens ?? []) if (typeof t.id === 'number' && t.id > top) top = t.id;
    return { file, vocabSize: top >= 0 ? top + 1 : null };
  } catch {
    // Unreadable as a tokenizer: reported as unknown; prompts are not drawn from it here.
    return { file, vocabSize: null };
  }
}

/** Opens a checkpoint: everything but the weights' values. Throws a HeadsweepError (stage 'load') naming the file at fault. */
export function openSource(path: string, opts: SourceOptions = {}): Source {
  const files = new OpenFiles();
  try {
    return openSourceWith(path, opts, files);
  } finally {
    files.close();
  }
}

/** As openSource, with the files left open in `files` (the loader reads the weights through them). */
export function openSourceWith(path: string, opts: SourceOptions, files: OpenFiles): Source {
  let isFolder: boolean;
  try {
    isFolder = statSync(path).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw checkpointError(path, code === 'ENOENT' ? 'no such file' : `cannot open (${code ?? (err as Error).message})`, undefined, err);
  }
  const layout = isFolder ? folderLayout(path) : fileLayout(path);
  const opened = openWeights(layout, files);

  const read: SourceFile[] = [];
  const readJson = (role: FileRole, file: string) => {
    const json = readJsonObject(file);
    read.push({ path: file, name: relative(layout.folder, file), role, bytes: json.bytes, whole: true, sha256: json.sha256 });
    return json.value;
  };
  const { family, written } = familyAndConfig(layout, opened, opts, readJson);
  const parsed = family.parse(written);
  const tlConfig = family.tlConfig(parsed);
  const resolved = parseModelConfig(tlConfig);
  if (!resolved.ok) throw invalidConfig(written, resolved.problems.join('; '));
  const config = resolved.config;

  const stored = storedOf(opened, family);
  const where = opened.index?.file ?? layout.weights;
  const { tensors: plan, ignored } = planTensors(where, family.name, config, family.convert(config, parsed, stored), stored);
  const steps = stepOf(layout, family, opened, readJson);

  const weightFiles: SourceFile[] = opened.shards.map((s) => ({
    path: s.file, name: relative(layout.folder, s.file), role: 'weights' as const, bytes: statSync(s.file).size, whole: opened.kind === 'safetensors', sha256: null,
  }));
  const index = opened.index;
  const indexFile: SourceFile[] = index === null ? [] : [{
    path: index.file, name: relative(layout.folder, index.file), role: 'index', bytes: index.bytes, whole: true, sha256: index.sha256,
  }];

  const tensors = new Map<string, SourceTensor>();
  const zeros: string[] = [];
  for (const p of plan.values()) {
    if (p.source === null) {
      zeros.push(p.key);
      continue;
    }
    const t = p.source;
    let entry = tensors.get(t.name);
    if (entry === undefined) tensors.set(t.name, (entry = { name: t.name, dtype: t.dtype, shape: t.shape, file: t.storage.file, tl: [], ignored: false }));
    entry.tl.push(p.key);
  }
  for (const name of ignored) {
    const t = stored.get(name)!;
    tensors.set(name, { name, dtype: t.dtype, shape: t.shape, file: t.storage.file, tl: [], ignored: true });
  }

  return {
    path,
    kind: layout.kind,
    family: family.name,
    converter: `${family.name}@${family.version}`,
    container: layout.container,
    files: [...weightFiles, ...indexFile, ...read],
    written,
    tlConfig,
    config,
    ...steps,
    metadata: opened.kind === 'safetensors' ? opened.shards[0].header.metadata : {},
    tokenizer: tokenizerOf(layout.folder),
    tensors: [...tensors.values()],
    zeros,
    plan,
    regions: new Map(opened.kind === 'torch' ? opened.shards.map((a) => [a.file, a.read]) : []),
  };
}
