/**
 * `<out>/manifest.json`: what ran, with which config, code and backend, and how it ended
 * (TABLES.md). Written atomically at the end of a sweep, and again on Ctrl-C with status
 * `interrupted`, so the file on disk always describes a whole run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { BackendName } from '../src/backend.ts';
import { TABLES_VERSION, type TableName } from './tables.ts';
import { ownPackage } from './package.ts';
import { writeFileAtomic } from './sinks/atomic.ts';

export interface Manifest {
  name: string;
  /** `finished` when every planned checkpoint was tried; see `exit_code` for failures. */
  status: 'finished' | 'interrupted' | 'failed';
  /** The resolved config, defaults filled in. */
  config: unknown;
  config_path: string;
  /** ISO 8601 times. */
  started_at: string;
  finished_at: string;
  /** The tfjs backend that ran. */
  backend: BackendName;
  workers: number;
  /** `i/n` for a sharded sweep (pipeline/shard.ts), null otherwise (absent: written before sweeps had shards). */
  shard?: string | null;
  /** headsweep, node and every installed runtime dependency. */
  versions: Record<string, string>;
  /**
   * The version of the table schemas this sweep wrote (TABLES_VERSION in tables.ts; absent:
   * version 1). Files of checkpoints an earlier version scored and this sweep skipped keep
   * their version's columns; readers take a column such a file lacks as null (TABLES.md).
   */
  tables_version?: number;
  counts: {
    checkpoints_planned: number;
    /** Scored by this sweep, wholly or in the prompt sets whose settings changed. */
    scored: number;
    /** Already scored under the same bytes and settings by an earlier sweep, so skipped (absent: a sweep before incremental runs). */
    up_to_date?: number;
    failed: number;
    /** Rows the output holds for the planned checkpoints (scored now or up to date) and the prompts. */
    rows: Record<TableName, number>;
  };
  exit_code: number;
  /** What the plan warned of (a glob matching no file yet, icl positions past a prompt set); absent before sweeps had warnings. */
  warnings?: string[];
}

/**
 * Versions of headsweep, node and each runtime dependency in package.json that is
 * installed (the optional tfjs-node often is not), read from the installed package.json
 * files rather than the ranges asked for. Each is looked up where Node's resolution would
 * find it, so a dependency that npm hoisted next to an installed headsweep is found too.
 */
export function packageVersions(): Record<string, string> {
  const own = ownPackage();
  const versions: Record<string, string> = { headsweep: own.version, node: process.versions.node };
  const lookup = createRequire(import.meta.url).resolve;
  for (const name of Object.keys({ ...own.dependencies, ...own.optionalDependencies }).sort()) {
    // The package.json itself: a package's `exports` may not let it be resolved by name.
    const file = (lookup.paths(name) ?? []).map((dir) => join(dir, name, 'package.json')).find((f) => existsSync(f));
    if (file !== undefined) versions[name] = (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return versions;
}

/**
 * Writes `<out>/<fileName>` atomically (`manifest.json`, or a shard's name from
 * `manifestFileName`), keys in the order of `Manifest`.
 */
export async function writeManifest(out: string, m: Manifest, fileName = 'manifest.json'): Promise<void> {
  const ordered: Manifest = {
    name: m.name,
    status: m.status,
    config: m.config,
    config_path: m.config_path,
    started_at: m.started_at,
    finished_at: m.finished_at,
    backend: m.backend,
    workers: m.workers,
    shard: m.shard ?? null,
    versions: m.versions,
    tables_version: m.tables_version ?? TABLES_VERSION,
    counts: m.counts,
    exit_code: m.exit_code,
    warnings: m.warnings ?? [],
  };
  await writeFileAtomic(join(out, fileName), `${JSON.stringify(ordered, null, 2)}\n`);
}
