/**
 * Set up once for the whole suite (vitest `globalSetup`), in the main vitest process:
 *
 * - **The build.** Tests run the TypeScript sources, but pool threads and CLI processes
 *   run `dist/` (worker threads cannot load TypeScript; bin/headsweep.js runs the build),
 *   so the suite builds first when `dist/` was not made from these sources, and again
 *   before each rerun in watch mode. Code that starts threads from a stale build anyway
 *   fails with the reason (pipeline/package.ts).
 * - **The temp folder.** Every test process and every process it starts gets a fresh
 *   folder of its own as the system temp folder (`TMPDIR`, which `os.tmpdir()` reads).
 *   A test must remove what it writes there: whatever is left when the suite ends fails
 *   it, named, and is then removed. A folder of the suite's own, rather than a before and
 *   after listing of the shared one, so other suites running on the machine at the same
 *   time cannot make it fail.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { PACKAGE_ROOT, staleBuild } from '../../pipeline/package.ts';

function ensureBuild(): void {
  const stale = staleBuild();
  if (stale === null) return;
  process.stderr.write(`test setup: ${stale.replace(/: run .*$/, '')}; building\n`);
  const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: PACKAGE_ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error(`npm run build failed (exit ${build.status ?? build.signal})`);
  const still = staleBuild();
  if (still !== null) throw new Error(still);
}

let suiteTmp: string | null = null;

export function setup(project: TestProject): void {
  ensureBuild();
  project.onTestsRerun(ensureBuild);
  suiteTmp = mkdtempSync(join(tmpdir(), 'headsweep-suite-'));
  process.env.TMPDIR = suiteTmp;
}

export function teardown(): void {
  if (suiteTmp === null) return;
  // tsx keeps its compile cache in the temp folder (`tsx-<uid>`) for any process that runs
  // a TypeScript file through it: a tool's cache, not something a test wrote.
  const left = readdirSync(suiteTmp).filter((name) => !/^tsx-\d+$/.test(name));
  rmSync(suiteTmp, { recursive: true, force: true });
  if (left.length === 0) return;
  // vitest reports an error thrown here but keeps its exit code.
  process.exitCode = 1;
  throw new Error(`tests left ${left.length} entries in the temp folder (removed now): ${left.sort().join(', ')}`);
}
