/**
 * `<out>/manifest.json`: what ran, with which config, code and backend, and how it ended
 * (TABLES.md). Written atomically at the end of a sweep, and again on Ctrl-C with status
 * `interrupted`, so the file on disk always describes a whole run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendName } from '../src/backend.ts';
import type { TableName } from './tables.ts';
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

const ROOT = new URL('../', import.meta.url);

/**
 * Versions of headsweep, node and each runtime dependency in package.json that is
 * installed (the optional tfjs-node often is not), read from the installed package.json
 * files rather than the ranges asked for.
 */
export function packageVersions(): Record<string, string> {
  const own = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as {
    version: string;
    dependencies?: Record<string, string>;
    optionalDependencies?: Record<string, string>;
  };
  const versions: Record<string, string> = { headsweep: own.version, node: process.versions.node };
  const names = Object.keys({ ...own.dependencies, ...own.optionalDependencies }).sort();
  for (const name of names) {
    const file = new URL(`node_modules/${name}/package.json`, ROOT);
    if (!existsSync(file)) continue;
    versions[name] = (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
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
    counts: m.counts,
    exit_code: m.exit_code,
    warnings: m.warnings ?? [],
  };
  await writeFileAtomic(join(out, fileName), `${JSON.stringify(ordered, null, 2)}\n`);
}
