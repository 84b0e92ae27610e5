/**
 * What an output root remembers between sweeps, so that a rerun scores only what is new:
 * one small JSON file per checkpoint,
 *
 *     <out>/.state/run=<run>/<first 32 hex of sha256(run NUL path)>.json
 *
 * saying which bytes were scored (sha256, with the size and mtime they had, so an
 * unchanged file is not hashed again), under which settings (a key per prompt set and
 * one for the weight-only scores, see incremental.ts), and which table files hold the
 * result. One file per checkpoint rather than one index: shards writing into the same
 * root never touch the same state file (a checkpoint belongs to one shard), and a
 * killed sweep loses at most the entry it was writing.
 *
 * An entry is written (atomically) only after its table files are in place, so an entry
 * never promises files that are not there; a sweep killed in between leaves files
 * without an entry, which the rerun scores again and overwrites.
 */
import { existsSync, readdirSync, readFileSync, statSync, type BigIntStats } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from './sinks/atomic.ts';
import { OUTPUT_FORMATS } from './sinks/index.ts';
import { checkpointKey } from './shard.ts';
import { TABLE_NAMES } from './tables.ts';

export const STATE_DIR = '.state';

const KeyedSetSchema = z.strictObject({ name: z.string(), key: z.string() });

export const CheckpointStateSchema = z.strictObject({
  format: z.literal(1),
  run: z.string(),
  /** The path as the config's glob resolved it (the `checkpoint` column). */
  path: z.string(),
  /** Size and mtime (ns, decimal) of the file when it was hashed. */
  size: z.number().int().min(0),
  mtime_ns: z.string().regex(/^\d+$/),
  /** null when the file could not be read at all. */
  sha256: z.string().nullable(),
  /** File stem of the checkpoint's table files (`step-<step>-<sha12>`). */
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

/** The state file of one checkpoint. */
export function stateFile(out: string, run: string, path: string): string {
  const key = createHash('sha256').update(checkpointKey(run, path), 'utf8').digest('hex').slice(0, 32);
  return join(out, STATE_DIR, `run=${run}`, `${key}.json`);
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
    for (const name of readdirSync(join(out, folder))) {
      const m = TEMP.exec(name);
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
