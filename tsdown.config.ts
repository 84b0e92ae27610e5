/**
 * The build: `npm run build` (also run by `npm ci` / `npm install` in a checkout, as
 * `prepare`) compiles the library, the command line and the pool's worker into `dist/`.
 *
 * - Three entries, one flat folder: `index.mjs` (the library, with `index.d.mts`),
 *   `cli.mjs` (what bin/headsweep.js runs) and `worker.mjs` (what each pool thread runs,
 *   one module with its own code bundled in, so a thread starts without resolving the
 *   sources file by file). Shared code is split into chunks beside them; each command's
 *   modules are their own chunks, loaded only when the command runs.
 * - Dependencies stay external: every backend registers with the one installed
 *   tfjs-core, and the wasm backend and parquet-wasm find their `.wasm` files beside
 *   their own modules, as in the sources.
 * - `dist/sources.sha256` records the sources the build was made from (taken before it
 *   began), so a checkout never runs a stale build (pipeline/package.ts).
 */
import { writeFileSync } from 'node:fs';
import { defineConfig } from 'tsdown';
import { STAMP_FILE, sourcesHash } from './pipeline/package.ts';

const sources = sourcesHash();

export default defineConfig({
  entry: { index: 'src/index.ts', cli: 'pipeline/cli.ts', worker: 'pipeline/worker.ts' },
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outDir: 'dist',
  dts: true,
  logLevel: 'warn',
  // The d.ts generation takes most of the few seconds a build takes, and that is expected.
  checks: { pluginTimings: false },
  hooks: {
    'build:done': () => writeFileSync(STAMP_FILE, `${sources}\n`),
  },
});
