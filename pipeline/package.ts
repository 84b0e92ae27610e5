/**
 * headsweep's own files: its package.json, its build in `dist/`, and whether that build
 * was made from the sources beside it.
 *
 * The sources (`pipeline/*.ts`) and the build (`dist/*.mjs`, one flat folder) both sit one
 * folder below the package root, so `../` from this module is the root either way.
 *
 * Worker threads cannot load TypeScript, so the pool always runs the built worker, also
 * when the main thread runs the sources (tests, `tsx`). A checkout (the sources are there)
 * therefore refuses a build made from other sources than its own: the build records the
 * hash of its inputs in `dist/sources.sha256` and `staleBuild()` compares. An installed
 * package ships no sources and has nothing to compare.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PACKAGE_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The module every pool thread runs. */
export const WORKER_FILE = join(PACKAGE_ROOT, 'dist', 'worker.mjs');

/** The hash of the sources the build was made from (written by tsdown.config.ts). */
export const STAMP_FILE = join(PACKAGE_ROOT, 'dist', 'sources.sha256');

/**
 * Folders and files the build is made from; of package.json, only what the build reads
 * (see `buildFields`). In the folders, only source files count: an editor's swap file or
 * a stray note does not make the build stale.
 */
const SOURCE_DIRS = ['src', 'pipeline'];
const SOURCE_FILE = /\.(ts|mts|js|mjs|json)$/;
const SOURCE_FILES = ['package.json', 'tsconfig.json', 'tsdown.config.ts'];

export interface OwnPackage {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

export function ownPackage(): OwnPackage {
  return JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as OwnPackage;
}

/** sha256 over the build's inputs, each file by its path and bytes, in a fixed order. */
export function sourcesHash(): string {
  const files = [...SOURCE_FILES];
  for (const dir of SOURCE_DIRS) {
    for (const entry of readdirSync(join(PACKAGE_ROOT, dir), { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && SOURCE_FILE.test(entry.name)) files.push(join(entry.parentPath, entry.name).slice(PACKAGE_ROOT.length));
    }
  }
  const hash = createHash('sha256');
  for (const file of files.sort()) {
    const bytes = readFileSync(join(PACKAGE_ROOT, file));
    hash.update(`${file}\0`).update(file === 'package.json' ? buildFields(bytes) : bytes).update('\0');
  }
  return hash.digest('hex');
}

/**
 * The part of package.json the build depends on: the module type and the dependencies it
 * leaves external. A new script or dev dependency does not make the build stale.
 */
function buildFields(bytes: Buffer): string {
  const { type, dependencies, optionalDependencies, peerDependencies } = JSON.parse(bytes.toString('utf8'));
  return JSON.stringify({ type, dependencies, optionalDependencies, peerDependencies });
}

/** What is wrong with `dist/` in a checkout, as a sentence; null when it is current or this is an installed package. */
export function staleBuild(): string | null {
  if (!existsSync(join(PACKAGE_ROOT, 'src', 'index.ts'))) return null;
  const fix = `run \`npm run build\` in ${PACKAGE_ROOT}`;
  if (!existsSync(STAMP_FILE) || !existsSync(WORKER_FILE)) return `there is no build in ${join(PACKAGE_ROOT, 'dist')}: ${fix}`;
  if (readFileSync(STAMP_FILE, 'utf8').trim() !== sourcesHash()) return `the build in ${join(PACKAGE_ROOT, 'dist')} was made from other sources than the ones beside it: ${fix}`;
  return null;
}
