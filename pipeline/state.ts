/**
 * What an output root remembers between sweeps, so that a rerun scores only what is new:
 * one small JSON file per checkpoint,
 *
 *     <out>/.state/run=<run>/<first 32 hex of sha256(run NUL path)>.json
 *
 * saying which bytes were scored (sha256, with the size and mtime every file of the
 * checkpoint had, so an unchanged checkpoint is not hashed again), under which settings
 * (a key per prompt set and one for the weight-only scores, see incremental.ts) and
 * conversion (the family's converter), and which table files hold the result. One file per checkpoint rather than one index: shards writing into the same
 * root never touch the same state file (a checkpoint belongs to one shard), and a
 * killed sweep loses at most the entry it was writing.
 *
 * An entry is written (atomically) only after its table files are in place, so an entry
 * never promises files that are not there; a sweep killed in between leaves files
 * without an entry, which the rerun scores again and overwrites.
 */
import { existsSync, readdirSync, readFileSync, statSync, type BigIntStats } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from './sinks/atomic.ts';
import { OUTPUT_FORMATS } from './sinks/index.ts';
import { checkpointKey } from './shard.ts';
import { checkpointId, TABLE_NAMES } from './tables.ts';

export const STATE_DIR = '.state';

const KeyedSetSchema = z.strictObject({ name: z.string(), key: z.string() });

const MtimeSchema = z.string().regex(/^\d+$/);

/** One file of a checkpoint: its name relative to the checkpoint's folder, size and mtime (ns, decimal). */
const FileStampSchema = z.strictObject({ name: z.string(), size: z.number().int().min(0), mtime_ns: MtimeSchema });

export const CheckpointStateSchema = z.strictObject({
  format: z.literal(1),
  run: z.string(),
  /** The path as the config's glob resolved it (the `checkpoint` column). */
  path: z.string(),
  /** Size and mtime (ns, decimal) of its first file (the weights file of a one-file checkpoint) when it was hashed. */
  size: z.number().int().min(0),
  mtime_ns: MtimeSchema,
  /** Every file it is read from, as when it was hashed; absent in entries of before, which stamped one file. */
  file_stamps: z.array(FileStampSchema).optional(),
  /** The family conversion its weights were read through (`gpt2@1`); null when it could not be read; absent in entries of before. */
  converter: z.string().nullable().optional(),
  /** null when the file could not be read at all. */
  sha256: z.string().nullable(),
  /** File stem of the checkpoint's table files (`fileStem`; `step-<step>-<sha12>` in outputs of before). */
  id: z.string(),
  /** `failed`: its files hold an errors row; it is tried again on the next sweep. */
  status: z.enum(['scored', 'failed']),
  /** The tfjs backend that computed the scores. */
  backend: z.string().nullable(),
  formats: z.array(z.enum(OUTPUT_FORMATS)),
  /** Key of the weight scores computed once per checkpoint (composition, bigram_kl); null when neither was asked for. */
  weights: z.string().nullable(),
  /** The prompt sets in the files, in row order, with the key each was scored under. */
  prompt_sets: z.array(KeyedSetSchema),
  /** Table files that belong to the checkpoint, relative to the output root. */
  files: z.array(z.string()),
  /** Rows those files hold, per table. */
  rows: z.partialRecord(z.enum(TABLE_NAMES), z.number().int().min(0)),
});

export type CheckpointState = z.infer<typeof CheckpointStateSchema>;
export type KeyedSet = z.infer<typeof KeyedSetSchema>;
export type FileStamp = z.infer<typeof FileStampSchema>;

/** Hex sha256 of `run NUL path`: names a checkpoint's state entry and, in part, its table files. */
function sourceDigest(run: string, path: string): string {
  return createHash('sha256').update(checkpointKey(run, path), 'utf8').digest('hex');
}

/** The state file of one checkpoint. */
export function stateFile(out: string, run: string, path: string): string {
  return join(out, STATE_DIR, `run=${run}`, `${sourceDigest(run, path).slice(0, 32)}.json`);
}

/**
 * The stem of a checkpoint's table files: `step-<step, 9 digits>-<sha12 of its bytes>-<source>`
 * (`step-unknown-...` without a step), where `source` is the first 8 hex of its state
 * entry's name. Step first, so a folder listing sorts by training step; the bytes, so
 * new bytes get new files; the source, so two paths with the same bytes and step (a
 * `final.safetensors` copied from the last step) never share a file.
 */
export function fileStem(ck: { run: string; path: string; step: number | null }, sha256: string): string {
  return `${checkpointId(ck.step, sha256)}-${sourceDigest(ck.run, ck.path).slice(0, 8)}`;
}

/**
 * Whether a table file's name has the stem of outputs written before stems named their
 * source (`step-<step>-<sha12>`). Two sources with the same bytes could share such a
 * file, so a sweep never deletes one because a single entry stopped listing it:
 * `removeUnlistedOldStems` removes it once no entry lists it.
 */
export function isOldStem(fileOrStem: string): boolean {
  return /^step-(\d{9}|unknown)-[0-9a-f]{12}(\.(arrow|parquet))?$/.test(basename(fileOrStem));
}

/**
 * The stored state of a checkpoint, or null when there is none. An entry that does not
 * parse (edited by hand, or from another headsweep version) counts as none: the
 * checkpoint is scored again and its files rewritten.
 */
export function readState(out: string, run: string, path: string): CheckpointState | null {
  const file = stateFile(out, run, path);
  if (!existsSync(file)) return null;
  try {
    const parsed = CheckpointStateSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
    return parsed.success && parsed.data.run === run && parsed.data.path === path ? parsed.data : null;
  } catch {
    return null;
  }
}

export async function writeState(out: string, state: CheckpointState): Promise<void> {
  await writeFileAtomic(stateFile(out, state.run, state.path), `${JSON.stringify(state, null, 2)}\n`);
}

/** Every entry of a run that parses, whichever checkpoints the config names now. */
function readRunStates(out: string, run: string): CheckpointState[] {
  const dir = join(out, STATE_DIR, `run=${run}`);
  if (!existsSync(dir)) return [];
  const states: CheckpointState[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.json')) continue;
    try {
      const parsed = CheckpointStateSchema.safeParse(JSON.parse(readFileSync(join(dir, name), 'utf8')));
      if (parsed.success) states.push(parsed.data);
    } catch {
      // Half-written by hand or unreadable: it lists nothing.
    }
  }
  return states;
}

/** How many of a run's entries list each file (relative to the output root). */
export function listings(out: string, run: string): Map<string, number> {
  const count = new Map<string, number>();
  for (const s of readRunStates(out, run)) for (const f of s.files) count.set(f, (count.get(f) ?? 0) + 1);
  return count;
}

/**
 * Gives an entry's files a new stem by renaming them (their rows do not name the stem),
 * then writes the entry. Killed in between, the entry still names the old files, some of
 * which are gone: the next sweep scores the checkpoint again.
 */
export async function renameStem(out: string, state: CheckpointState, id: string): Promise<CheckpointState> {
  // A file deleted by hand stays deleted: the sweep writes it again from its other format.
  const present = state.files.filter((f) => existsSync(join(out, f)));
  const files = present.map((f) => join(dirname(f), basename(f).replace(state.id, id)));
  for (const [i, f] of present.entries()) await rename(join(out, f), join(out, files[i]));
  const renamed = { ...state, id, files };
  await writeState(out, renamed);
  return renamed;
}

/**
 * Removes the table files of `run` that have an old stem (`isOldStem`) and that no state
 * entry lists: what two sources once shared and both have since replaced, or what a
 * sweep killed before writing its entry left. Returns the files removed.
 */
export async function removeUnlistedOldStems(out: string, run: string, tables: readonly string[]): Promise<string[]> {
  const old = tables.flatMap((table) => {
    const dir = join(table, `run=${run}`);
    return existsSync(join(out, dir)) ? readdirSync(join(out, dir)).filter((n) => isOldStem(n)).map((n) => join(dir, n)) : [];
  });
  if (old.length === 0) return [];
  const listed = listings(out, run);
  const removed = old.filter((f) => !listed.has(f));
  for (const f of removed) await rm(join(out, f), { force: true });
  return removed;
}

/** Size and mtime of a file as a state entry records them, or null when it cannot be stat'ed. */
export function fileStamp(file: string): { size: number; mtime_ns: string } | null {
  let st: BigIntStats;
  try {
    st = statSync(file, { bigint: true });
  } catch {
    return null;
  }
  return { size: Number(st.size), mtime_ns: st.mtimeNs.toString() };
}

/** A file as a checkpoint names it: where it is, and its name relative to the checkpoint's folder. */
export interface NamedFile {
  path: string;
  name: string;
}

/** What a checkpoint's files looked like: the first one's size and mtime (as entries of before have them), and every one's. */
export interface SourceStamp {
  size: number;
  mtime_ns: string;
  file_stamps: FileStamp[];
}

/** Stamps of `files`, sorted by name; null when there are none or one cannot be stat'ed. */
export function stampFiles(files: readonly NamedFile[]): SourceStamp | null {
  const stamps: FileStamp[] = [];
  for (const f of files) {
    const stamp = fileStamp(f.path);
    if (stamp === null) return null;
    stamps.push({ name: f.name, ...stamp });
  }
  if (stamps.length === 0) return null;
  const { size, mtime_ns } = stamps[0];
  return { size, mtime_ns, file_stamps: [...stamps].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
}

/** Whether two stamps (of `stampFiles`) describe the same files, sizes and mtimes. */
export function sameStamps(a: readonly FileStamp[], b: readonly FileStamp[]): boolean {
  return a.length === b.length && a.every((s, i) => s.name === b[i].name && s.size === b[i].size && s.mtime_ns === b[i].mtime_ns);
}

/** The regular files directly in a folder (not in its subfolders), named by their names. */
export function filesIn(folder: string): NamedFile[] {
  try {
    return readdirSync(folder, { withFileTypes: true }).filter((d) => d.isFile()).map((d) => ({ path: join(folder, d.name), name: d.name }));
  } catch {
    return [];
  }
}

/** The stamps a state entry of before implies: its one file. */
export function storedStamps(state: CheckpointState, name: string): FileStamp[] {
  return state.file_stamps ?? [{ name, size: state.size, mtime_ns: state.mtime_ns }];
}

/**
 * The conversion a state entry records, or the one an entry of before implies. Entries of
 * before identified a checkpoint by its file's sha256, which is still its identity only
 * for a lone safetensors file carrying its TL config (any other source now has the
 * identity of all its files, so it is scored again as changed): one read as TL names,
 * which is the tl family's first version.
 */
export function storedConverter(state: CheckpointState): string | null {
  return state.converter === undefined ? 'tl@1' : state.converter;
}

/** `<name>.<pid>.tmp`: what `writeFileAtomic` writes before the rename. */
const TEMP = /^(.*)\.(\d+)\.tmp$/;

/**
 * Removes the `*.<pid>.tmp` files a killed sweep left in the output root, its table
 * folders and its state folder (never the final files: a tmp file is only ever renamed
 * onto them). `owned(name)` says, from the final name the tmp file was for, whether this
 * sweep may remove it; `grace` is the age in ms after which any tmp file is stale
 * (another shard writing into the same root holds its tmp files for milliseconds).
 * Returns the files removed, relative to `out`.
 */
export async function removeStaleTemps(out: string, owned: (folder: string, finalName: string) => boolean, graceMs: number): Promise<string[]> {
  if (!existsSync(out)) return [];
  const folders = [''];
  for (const top of [...TABLE_NAMES, STATE_DIR]) {
    const dir = join(out, top);
    if (!existsSync(dir)) continue;
    for (const d of readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) folders.push(join(top, d.name));
  }
  const removed: string[] = [];
  const now = Date.now();
  for (const folder of folders) {
    for (const entry of readdirSync(join(out, folder), { withFileTypes: true })) {
      // A folder is never a sweep's temporary file (a killed compaction leaves `compacted.<pid>.tmp/`: compact.ts's).
      const name = entry.name;
      const m = entry.isFile() ? TEMP.exec(name) : null;
      if (m === null) continue;
      const file = join(out, folder, name);
      const stale = owned(folder, m[1]) || now - statSync(file).mtimeMs > graceMs;
      if (!stale) continue;
      await rm(file, { force: true });
      removed.push(join(folder, name));
    }
  }
  return removed;
}
