/**
 * The worker code as one plain JavaScript module, so a pool thread starts without the
 * TypeScript loader.
 *
 * Why: every thread of the pool imports the worker's ~40 TypeScript modules, and through
 * tsx each import is a round trip to a loader thread. Measured with two threads starting
 * at once, that took 1.5 s before the first checkpoint could begin; importing one bundle
 * of the same code takes 0.6 s. esbuild (what tsx itself compiles with) bundles it in
 * ~20 ms, so it is rebuilt at every pool start and never goes stale.
 *
 * The bundle keeps packages external (one tfjs-core instance for every backend, and the
 * wasm backend finds its .wasm files beside its own module) and is written beside this
 * file, so its package imports resolve exactly as the sources' do. Its name is the hash
 * of its contents: concurrent sweeps (shards) write the same file, each atomically.
 * When it cannot be built or written (a read-only install), threads load the sources
 * through `worker-entry.mjs` instead, which is slower to start and otherwise the same.
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildSync } from 'esbuild';

const SOURCE = fileURLToPath(new URL('./worker.ts', import.meta.url));
const DIR = fileURLToPath(new URL('./.worker-bundle/', import.meta.url));

/** The bundled worker's file URL, or undefined when it could not be made. */
export function bundledWorker(): string | undefined {
  try {
    const result = buildSync({
      entryPoints: [SOURCE],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      write: false,
      logLevel: 'silent',
    });
    const code = result.outputFiles[0].contents;
    const file = `${DIR}worker-${createHash('sha256').update(code).digest('hex').slice(0, 16)}.mjs`;
    if (!existsSync(file)) {
      mkdirSync(DIR, { recursive: true });
      const tmp = `${file}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
      writeFileSync(tmp, code);
      renameSync(tmp, file);
    }
    return pathToFileURL(file).href;
  } catch {
    return undefined;
  }
}
