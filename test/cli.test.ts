/**
 * The command line itself, as a new user meets it: no command prints the list of
 * commands, `--version` is an option of `headsweep` alone (not of every command's help),
 * and `validate` reports an unreadable checkpoint as a warning of the plan, since the
 * config is valid (the sweep records the file in `errors`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import { headsweep } from './helpers/cli.ts';
import { tempDir } from './helpers/safetensors.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const COMMANDS = ['sweep', 'validate', 'inspect', 'report', 'compact', 'train'];
const VERSION = (JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;

test('no command: exit 2 with the list of commands', async () => {
  const run = await headsweep([]);
  expect(run.code).toBe(EXIT.badConfig);
  expect(run.stderr).toContain('headsweep: name a command:');
  for (const name of COMMANDS) expect(run.stderr).toMatch(new RegExp(`^ +headsweep ${name}\\b`, 'm'));
});

describe('--version', () => {
  test('headsweep --version prints the version, and headsweep --help lists it', async () => {
    const run = await headsweep(['--version']);
    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout.trim()).toBe(VERSION);
    expect((await headsweep(['--help'])).stdout).toContain('--version');
  });

  test.concurrent.each(COMMANDS)('headsweep %s --help does not list it', async (name) => {
    const run = await headsweep([name, '--help']);
    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout).toContain('--help');
    expect(run.stdout).not.toContain('--version');
  });
});

test('validate: an unreadable checkpoint is a warning of the plan, and the exit code is 0', async () => {
  const demo = join(import.meta.dirname, '..', 'data', 'demo', 'planted-2l');
  writeFileSync(join(tmp.dir, 'broken.safetensors'), 'garbage');
  const config = join(tmp.dir, 'sweep.yaml');
  writeFileSync(config, [
    'name: unreadable',
    'output: out',
    'checkpoints:',
    `  - {run: r, paths: ["${demo}/step00000.safetensors", "broken.safetensors"]}`,
    'prompt_sets:',
    '  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 2, seed: 0}',
  ].join('\n'));
  const run = await headsweep(['validate', config]);
  expect(run.code, run.stderr).toBe(EXIT.ok);
  expect(run.stdout).toMatch(/step \? +broken\.safetensors +UNREADABLE \(load\): /);
  expect(run.stdout).toContain('warning: 1 checkpoint cannot be read (broken.safetensors): a sweep records it in errors and exits 3');
});
