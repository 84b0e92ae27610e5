/**
 * The manual as printed: every fenced block of README.md, in order, in one example
 * folder that looks like a fresh clone after `npm ci` (the repository's files linked in,
 * its `out/` left out), through the real CLI, bash and DuckDB. What each language means
 * and how a block is left out (with its reason) is in test/helpers/readme.ts; a changed
 * or added example is picked up as it is. The examples must leave the repository as they
 * found it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { glob } from 'tinyglobby';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fencedBlocks, isQuery, quotedOutputPaths, sqlStatements, type Block } from './helpers/readme.ts';

const REPO = join(import.meta.dirname, '..');
const BLOCKS = fencedBlocks(join(REPO, 'README.md'));

let sandbox: string;
let db: DuckDBConnection;
let repoStatus: string;

const gitStatus = () => spawnSync('git', ['status', '--porcelain', '--ignored'], { cwd: REPO, encoding: 'utf8' }).stdout;

/**
 * The example folder: every top-level entry of the repository linked in but `out/` (so the
 * examples start from no output) and `configs/`, a real folder of linked files, so that
 * a config an example writes there lands in the example folder, not the repository.
 */
function makeSandbox(): string {
  const dir = mkdtempSync(join(tmpdir(), 'headsweep-readme-'));
  for (const name of readdirSync(REPO)) {
    if (name === 'out' || name === '.git' || name === 'configs') continue;
    symlinkSync(join(REPO, name), join(dir, name));
  }
  mkdirSync(join(dir, 'configs'));
  for (const name of readdirSync(join(REPO, 'configs'))) symlinkSync(join(REPO, 'configs', name), join(dir, 'configs', name));
  // `headsweep`, as an installed package puts it on the PATH.
  mkdirSync(join(dir, '.bin'));
  writeFileSync(join(dir, '.bin', 'headsweep'), `#!/bin/sh\nexec "${process.execPath}" "${join(REPO, 'bin', 'headsweep.js')}" "$@"\n`);
  chmodSync(join(dir, '.bin', 'headsweep'), 0o755);
  return dir;
}

function bash(script: string, cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `set -eo pipefail\n${script}`], {
      cwd,
      env: { ...process.env, PATH: `${join(cwd, '.bin')}:${process.env.PATH}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { output += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { output += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

const where = (b: Block) => `README.md:${b.line}`;

async function run(block: Block): Promise<void> {
  if (block.directive?.startsWith('not run:')) {
    expect(block.directive.slice('not run:'.length).trim(), `${where(block)}: say why it is not run`).not.toBe('');
    return;
  }
  switch (block.lang) {
    case 'sh': {
      const result = await bash(block.text, sandbox);
      expect(result.code, `${where(block)}:\n${block.text}\n${result.output.slice(-3000)}`).toBe(0);
      return;
    }
    case 'sql':
      for (const statement of sqlStatements(block.text)) {
        const rows = await db.runAndReadAll(statement).then((r) => r.getRowsJS(), (err: unknown) => {
          throw new Error(`${where(block)}: ${statement}\n${String(err)}`);
        });
        if (isQuery(statement)) expect(rows.length, `${where(block)}: returns no rows:\n${statement}`).toBeGreaterThan(0);
      }
      return;
    case 'yaml': {
      const file = /^file (\S+)$/.exec(block.directive ?? '')?.[1];
      expect(file, `${where(block)}: a config needs <!-- example: file <path> --> (where the test saves it) or <!-- example: not run: <reason> -->`).toBeDefined();
      expect(isAbsolute(file!) || normalize(file!).startsWith('..'), `${where(block)}: ${file} must be inside the example folder`).toBe(false);
      // Never through a link into the repository.
      expect(existsSync(join(sandbox, file!)), `${where(block)}: ${file} already exists`).toBe(false);
      mkdirSync(dirname(join(sandbox, file!)), { recursive: true });
      writeFileSync(join(sandbox, file!), `${block.text}\n`);
      return;
    }
    case 'python':
      for (const path of quotedOutputPaths(block.text)) {
        expect(await glob(path, { cwd: sandbox, onlyFiles: true, expandDirectories: false }), `${where(block)}: '${path}' names no file`).not.toEqual([]);
      }
      return;
    case 'text':
    case 'json':
      return;
    default:
      throw new Error(`${where(block)}: a block in '${block.lang || 'no language'}' has no runner: write sh, sql, yaml (with a file), python, text or json, or put <!-- example: not run: <reason> --> before it`);
  }
}

describe('reading the blocks', () => {
  test('fences, languages, indented blocks and the line before them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'headsweep-readme-blocks-'));
    try {
      const file = join(dir, 'sample.markdown');
      writeFileSync(file, [
        '# x', '', '<!-- example: not run: needs a cluster -->', '', '```sh', 'kubectl apply', '```',
        '- a list', '  ```text', '  shown', '  ```', '```', 'no language', '```',
      ].join('\n'));
      expect(fencedBlocks(file)).toEqual([
        { line: 5, lang: 'sh', text: 'kubectl apply', directive: 'not run: needs a cluster' },
        { line: 9, lang: 'text', text: 'shown', directive: null },
        { line: 12, lang: '', text: 'no language', directive: null },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('statements and the paths Python names', () => {
    expect(sqlStatements('-- a\nselect 1;\n\nSET x = 1;\nselect 2\nfrom t;')).toEqual(['-- a\nselect 1', 'SET x = 1', 'select 2\nfrom t']);
    expect(['-- a\nselect 1', 'SET x = 1', 'INSTALL y'].map(isQuery)).toEqual([true, false, false]);
    expect(quotedOutputPaths(`pd.read_feather('out/a/b.arrow'); glob.glob("out/*/x.parquet"); open('data/x')`)).toEqual(['out/a/b.arrow', 'out/*/x.parquet']);
  });
});

describe('README.md, every example as printed', () => {
  beforeAll(async () => {
    repoStatus = gitStatus();
    sandbox = makeSandbox();
    db = await (await DuckDBInstance.create()).connect();
    // Relative paths in queries start at the example folder, as a user's shell would have it.
    await db.run(`SET file_search_path = '${sandbox}'`);
  });
  afterAll(() => {
    db?.closeSync();
    rmSync(sandbox, { recursive: true, force: true });
  });

  test('it has examples of each kind the test runs', () => {
    const langs = new Set(BLOCKS.filter((b) => b.directive === null || !b.directive.startsWith('not run:')).map((b) => b.lang));
    for (const lang of ['sh', 'sql', 'yaml', 'python']) expect(langs, lang).toContain(lang);
  });

  for (const block of BLOCKS) {
    const what = block.directive?.startsWith('not run:') ? `not run (${block.directive.slice(9).trim()})` : block.lang;
    test(`${where(block)} ${what}: ${block.text.split('\n')[0].slice(0, 60)}`, () => run(block), 300_000);
  }

  test('the examples wrote nothing into the repository', () => {
    expect(gitStatus()).toBe(repoStatus);
  });
});
