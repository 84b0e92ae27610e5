/**
 * A checkout never runs a stale build silently: the command line of a copy of this
 * checkout refuses to run once its sources differ from the ones its `dist/` was built
 * from, and names the fix. Files that are not sources do not count, and without sources
 * beside the build (an installed package) there is nothing to compare.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeEach, expect, test } from 'vitest';
import { tempDir } from './helpers/safetensors.ts';

const REPO = join(import.meta.dirname, '..');
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

const tmp = tempDir();
afterAll(() => tmp.cleanup());

let copy: string;
let n = 0;
beforeEach(() => {
  copy = join(tmp.dir, `checkout-${n++}`);
  for (const entry of ['bin', 'dist', 'src', 'pipeline', 'package.json', 'tsconfig.json', 'tsdown.config.ts']) cpSync(join(REPO, entry), join(copy, entry), { recursive: true });
  symlinkSync(join(REPO, 'node_modules'), join(copy, 'node_modules'));
});

function version(): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [join(copy, 'bin', 'headsweep.js'), '--version'], { encoding: 'utf8', timeout: 60_000 });
}

test('a build made from the sources beside it runs', () => {
  expect(version()).toMatchObject({ status: 0, stdout: `${VERSION}\n`, stderr: '' });
});

test('a changed source file: exit 1, naming the build and the fix', () => {
  appendFileSync(join(copy, 'src', 'errors.ts'), '// changed\n');
  expect(version()).toMatchObject({
    status: 1, stdout: '',
    stderr: `headsweep: the build in ${join(copy, 'dist')} was made from other sources than the ones beside it: run \`npm run build\` in ${copy}/\n`,
  });
});

test('a build without its record of sources counts as no build', () => {
  rmSync(join(copy, 'dist', 'sources.sha256'));
  expect(version()).toMatchObject({ status: 1, stderr: `headsweep: there is no build in ${join(copy, 'dist')}: run \`npm run build\` in ${copy}/\n` });
});

test('files that are not sources, and package.json scripts, do not make the build stale', () => {
  writeFileSync(join(copy, 'pipeline', 'notes.txt'), 'not a source\n');
  writeFileSync(join(copy, 'src', '.errors.ts.swp'), 'an editor swap file\n');
  const pkg = JSON.parse(readFileSync(join(copy, 'package.json'), 'utf8'));
  writeFileSync(join(copy, 'package.json'), JSON.stringify({ ...pkg, scripts: { ...pkg.scripts, extra: 'true' } }, null, 2));
  expect(version()).toMatchObject({ status: 0, stdout: `${VERSION}\n` });
});

test('without sources beside the build, as installed, it runs', () => {
  rmSync(join(copy, 'src'), { recursive: true });
  rmSync(join(copy, 'pipeline'), { recursive: true });
  expect(version()).toMatchObject({ status: 0, stdout: `${VERSION}\n` });
});
