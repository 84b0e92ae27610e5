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
  /** headsweep, node and every installed runtime dependency. */
  versions: Record<string, string>;
  counts: {
    checkpoints_planned: number;
    scored: number;
    failed: number;
    rows: Record<TableName, number>;
  };
  exit_code: number;
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

/** Writes `<out>/manifest.json` atomically, keys in the order of `Manifest`. */
export async function writeManifest(out: string, m: Manifest): Promise<void> {
  const ordered: Manifest = {
    name: m.name,
    status: m.status,
    config: m.config,
    config_path: m.config_path,
    started_at: m.started_at,
    finished_at: m.finished_at,
    backend: m.backend,
    workers: m.workers,
    versions: m.versions,
    counts: m.counts,
    exit_code: m.exit_code,
  };
  await writeFileAtomic(join(out, 'manifest.json'), `${JSON.stringify(ordered, null, 2)}\n`);
}
