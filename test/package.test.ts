/**
 * The package as a user gets it: `npm pack`, installed into an empty folder offline, then
 * the `headsweep` command and the library entry used from that folder.
 *
 * Offline, from the cache `npm ci` filled: that cache holds the tarballs of the locked
 * tree but not the registry metadata an install without a lockfile resolves versions
 * from. So the folder gets a lockfile of its own: the tarball, and the runtime part of
 * the checkout's package-lock.json, which lays every dependency out where
 * `npm install headsweep` puts it, hoisted beside headsweep rather than inside it.
 * `--omit=optional` leaves out tfjs-node, whose install script downloads TensorFlow.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parquetTable } from '../pipeline/sinks/parquet.ts';
import { tempDir } from './helpers/safetensors.ts';

const REPO = join(import.meta.dirname, '..');
const CHECKPOINT = join(REPO, 'data', 'checkpoints', 'attn-only-2l', 'step-001500.safetensors');
/** The host project's version, which `headsweep --version` must not print. */
const HOST_VERSION = '9.9.9';

const own = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
const tmp = tempDir();
const app = join(tmp.dir, 'app');
let packed: { filename: string; integrity: string; files: { path: string }[] };

function run(command: string, args: readonly string[], cwd = app): SpawnSyncReturns<string> {
  // npx too may only use the cache.
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 120_000, env: { ...process.env, npm_config_offline: 'true' } });
  if (result.error) throw result.error;
  return result;
}

function ok(result: SpawnSyncReturns<string>): string {
  expect(result.status, `${result.stderr}`).toBe(0);
  return result.stdout;
}

/** The lockfile an empty project gets for the tarball: the checkout's runtime tree beside headsweep. */
function appLockfile(tarball: string): object {
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
  const root = lock.packages[''];
  const packages: Record<string, unknown> = {
    '': { name: 'host-app', version: HOST_VERSION, dependencies: { headsweep: tarball } },
    'node_modules/headsweep': {
      version: own.version, resolved: tarball, integrity: packed.integrity,
      dependencies: root.dependencies, optionalDependencies: root.optionalDependencies, bin: root.bin, engines: root.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) if (path !== '' && entry.dev !== true) packages[path] = entry;
  return { name: 'host-app', version: HOST_VERSION, lockfileVersion: 3, requires: true, packages };
}

beforeAll(() => {
  // The suite's global setup built dist/ from these sources; packing must not build again.
  const pack = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp.dir], REPO);
  packed = JSON.parse(ok(pack))[0];
  const tarball = `file:../${packed.filename}`;
  mkdirSync(app);
  tmp.file('app/package.json', JSON.stringify({ name: 'host-app', version: HOST_VERSION, private: true, type: 'module', dependencies: { headsweep: tarball } }));
  tmp.file('app/package-lock.json', JSON.stringify(appLockfile(tarball)));
  ok(run('npm', ['ci', '--offline', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund']));
  copyFileSync(CHECKPOINT, join(app, 'step-001500.safetensors'));
}, 300_000);
afterAll(() => tmp.cleanup());

test('the tarball holds what runs: bin/, dist/ with the types, package.json and the README', () => {
  const files = packed.files.map((f) => f.path);
  expect(files.filter((f) => !/^(bin|dist)\//.test(f)).sort()).toEqual(['README.md', 'package.json']);
  expect(files).toEqual(expect.arrayContaining(['bin/headsweep.js', 'dist/cli.mjs', 'dist/index.mjs', 'dist/index.d.mts', 'dist/worker.mjs']));
});

test('npx headsweep: --help lists every command, --version is headsweep\'s own', () => {
  const help = ok(run('npx', ['--no-install', 'headsweep', '--help']));
  for (const name of ['sweep', 'validate', 'inspect', 'report', 'compact', 'train']) expect(help).toMatch(new RegExp(`^  headsweep ${name} `, 'm'));
  expect(ok(run('npx', ['--no-install', 'headsweep', '--version']))).toBe(`${own.version}\n`);
});

test('npx headsweep inspect reads a checkpoint', () => {
  const text = ok(run('npx', ['--no-install', 'headsweep', 'inspect', 'step-001500.safetensors']));
  expect(text).toMatch(/^step {9}1500 \(__metadata__\.step\)$/m);
  expect(text).toMatch(/^ {2}n_layers +2$/m);
});

describe('a sweep and the library, from the installed package', () => {
  const heads = new Map<string, number>();

  beforeAll(() => {
    tmp.file('app/sweep.yaml', [
      'name: installed',
      'output: {dir: out, formats: [arrow, parquet]}',
      'checkpoints:',
      '  - {run: r, paths: ["step-001500.safetensors"]}',
      'prompt_sets:',
      '  - {name: rrt, kind: repeated_random, length: 20, repeats: 4, count: 16, seed: 0}',
      'metrics: [prefix_matching]',
      'icl: {early: 10, late: 80}',
      'workers: 1',
    ].join('\n'));
    ok(run('npx', ['--no-install', 'headsweep', 'sweep', 'sweep.yaml']));
  });

  test('writes Arrow and Parquet (both wasm modules found in the install) on the wasm backend', async () => {
    const dir = join(app, 'out', 'heads', 'run=r');
    const files = readdirSync(dir).sort();
    expect(files.map((f) => f.replace(/^.*\./, ''))).toEqual(['arrow', 'parquet']);
    const arrow = tableFromIPC(readFileSync(join(dir, files[0])));
    const parquet = await parquetTable(readFileSync(join(dir, files[1])));
    expect(arrow.numRows).toBe(2 * 4);
    expect(parquet.numRows).toBe(arrow.numRows);
    for (const row of arrow) heads.set(`${row.layer}:${row.head}`, row.prefix_matching as number);
    const manifest = JSON.parse(readFileSync(join(app, 'out', 'manifest.json'), 'utf8'));
    expect(manifest.backend).toBe('wasm');
  });

  test('the manifest lists the installed version of every runtime dependency, hoisted beside headsweep', () => {
    const { versions } = JSON.parse(readFileSync(join(app, 'out', 'manifest.json'), 'utf8')) as { versions: Record<string, string> };
    const installed = (name: string) => (JSON.parse(readFileSync(join(app, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
    const names = Object.keys(own.dependencies);
    expect(names.filter((name) => existsSync(join(app, 'node_modules', 'headsweep', 'node_modules', name)))).toEqual([]);
    expect(versions).toEqual({ headsweep: own.version, node: process.versions.node, ...Object.fromEntries(names.map((n) => [n, installed(n)])) });
  });

  test('the README\'s library example runs as printed and gives the sweep\'s numbers', () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### As a library'));
    const [, code, printed] = /```js\n([\s\S]*?)```[\s\S]*?```text\n([\s\S]*?)```/.exec(section)!;
    writeFileSync(join(app, 'score.mjs'), code);
    const out = ok(run(process.execPath, ['score.mjs']));

    const layers = out.trimEnd().split('\n');
    expect(layers.pop()).toBe('(wasm backend)');
    expect(layers).toHaveLength(2);
    layers.forEach((line, layer) => {
      const [label, values] = line.split(': ');
      expect(label).toBe(`layer ${layer}`);
      values.split(' ').forEach((v, head) => expect(Number(v)).toBeCloseTo(heads.get(`${layer}:${head}`)!, 3));
    });
    // The output the README shows is what it prints, up to the last digit.
    const NUMBER = /\d\.\d{3}/g;
    const numbers = (text: string) => (text.match(NUMBER) ?? []).map(Number);
    expect(out.replace(NUMBER, '#')).toBe(printed.replace(NUMBER, '#'));
    numbers(out).forEach((v, i) => expect(v).toBeCloseTo(numbers(printed)[i], 2));
  });

  test('the library\'s types resolve through the package\'s exports', () => {
    tmp.file('app/types.ts', [
      "import { loadCheckpoint, scoreCheckpoint, type Checkpoint, type CheckpointScores } from 'headsweep';",
      'export const load: (file: string) => Checkpoint = loadCheckpoint;',
      'export const score: (c: Checkpoint) => Promise<CheckpointScores> = (c) => scoreCheckpoint(c, [], { metrics: [], batchSize: 1, icl: { early: 1, late: 2 } });',
    ].join('\n'));
    const tsc = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    // Without the package's types the import is an implicit `any`, an error under --strict.
    ok(run(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--types', 'node', '--typeRoots', join(REPO, 'node_modules', '@types'), 'types.ts']));
  });
});
