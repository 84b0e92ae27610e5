/**
 * The command line loads only what the command it runs needs: `--help` lists every command
 * without loading any, and `inspect` never loads the sweep's modules. Checked on the real
 * bin/headsweep.js, with a Node module hook that records every module URL loaded through
 * `import` (each package's entry among them).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { tempDir } from './helpers/safetensors.ts';

const REPO = join(import.meta.dirname, '..');
const PLANTED = join(REPO, 'test', 'fixtures', 'planted-induction-2l.safetensors');

const tmp = tempDir();
afterAll(() => tmp.cleanup());

// The hooks run on a thread of their own, so they append to a file named in the environment.
const HOOKS = "import { appendFileSync } from 'node:fs';\n"
  + "export async function load(url, context, next) { appendFileSync(process.env.LOADED_LIST, url + '\\n'); return next(url, context); }";
const REGISTER = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOKS)}`)});`;

/** The packages (by name) and headsweep's own files (dist/...) that `headsweep <args>` loads. */
function loaded(args: string[]): { packages: Set<string>; own: string[]; stdout: string } {
  const list = tmp.file(`loaded-${args[0]}.txt`, '');
  const run = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(REGISTER)}`, join(REPO, 'bin', 'headsweep.js'), ...args], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, LOADED_LIST: list },
  });
  expect(run.status, run.stderr).toBe(0);
  const urls = readFileSync(list, 'utf8').split('\n').filter((u) => u.startsWith('file:')).map(decodeURIComponent);
  const packages = new Set(urls.flatMap((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1] ?? []));
  const own = urls.filter((u) => !u.includes('/node_modules/')).map((u) => u.slice(u.lastIndexOf('/dist/') + 1)).filter((u) => u.startsWith('dist/'));
  return { packages, own, stdout: run.stdout };
}

const SWEEP_ONLY = ['@tensorflow/tfjs-core', 'apache-arrow', 'parquet-wasm', 'piscina', 'p-queue', 'vega', 'vega-lite', 'tinyglobby'];

test('--help lists every command and loads no command\'s module', () => {
  const { packages, own, stdout } = loaded(['--help']);
  expect(stdout).toMatch(/headsweep sweep <config>/);
  expect(stdout).toMatch(/headsweep train <config>/);
  expect(packages.has('yargs')).toBe(true);
  expect([...packages].filter((p) => SWEEP_ONLY.includes(p) || p === 'zod' || p === 'yaml')).toEqual([]);
  // bin/headsweep.js's cli.mjs and the chunks it imports statically, no command chunk.
  expect(own.filter((f) => /^dist\/(sweep|validate|inspect|report|compact|train)-/.test(f))).toEqual([]);
});

test('inspect loads the checkpoint reader, not the sweep\'s packages', () => {
  const { packages, own, stdout } = loaded(['inspect', PLANTED]);
  expect(stdout).toMatch(/^step {9}\d+ \(__metadata__\.step\)$/m);
  expect(own.some((f) => /^dist\/inspect-/.test(f))).toBe(true);
  expect([...packages].filter((p) => SWEEP_ONLY.includes(p))).toEqual([]);
});
