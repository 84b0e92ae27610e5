/**
 * The docs as the code sees them: the generated lists of README.md and docs/TABLES.md
 * are what `npm run docs` renders from the registry and the tables now; every document
 * the code, comments, messages and docs cite (`METRICS.md §n`, `TABLES.md`, `README.md#…`,
 * markdown links) resolves inside the repository; and the metric registry and config
 * parsing load without tfjs.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { headingAnchor, headings, renderBlocks, staleDocs } from '../pipeline/docs.ts';

const REPO = join(import.meta.dirname, '..');
const run = promisify(execFile);

describe('generated docs', () => {
  it('README.md and docs/TABLES.md hold what npm run docs renders from the code', () => {
    const stale = staleDocs().map((s) => s.file);
    expect(stale, `stale generated blocks in ${stale.join(', ')}: run npm run docs`).toEqual([]);
  });

  it('a block whose markers are missing is an error naming the file and the block', () => {
    expect(() => renderBlocks('X.md', 'no markers here', { scores: () => '' }))
      .toThrow("X.md: no '<!-- generated: scores (npm run docs) -->' … '<!-- end generated: scores -->' block");
    const text = 'a\n<!-- generated: n (npm run docs) -->\nold\n<!-- end generated: n -->\nb';
    expect(renderBlocks('X.md', text, { n: () => 'new' })).toBe('a\n<!-- generated: n (npm run docs) -->\nnew\n<!-- end generated: n -->\nb');
  });
});

/** Every text file of the folders and files that cite documents (fixtures and generated bundles left out). */
function citingFiles(): string[] {
  const skip = new Set(['node_modules', '.git', 'out', '.worker-bundle', 'fixtures', '.data']);
  const walk = (path: string): string[] => {
    if (!existsSync(path)) return [];
    if (statSync(path).isFile()) return [path];
    return readdirSync(path).filter((n) => !skip.has(n)).flatMap((n) => walk(join(path, n)));
  };
  return ['src', 'pipeline', 'bench', 'docs', 'test', 'configs', 'deploy', 'bin', '.ci', 'README.md']
    .flatMap((p) => walk(join(REPO, p)))
    // This file names the patterns it looks for.
    .filter((f) => f !== import.meta.filename && !readFileSync(f).includes(0));
}

const headingCache = new Map<string, string[]>();
function anchorsOf(file: string): string[] {
  if (!headingCache.has(file)) headingCache.set(file, headings(readFileSync(file, 'utf8')));
  return headingCache.get(file)!.map(headingAnchor);
}

/** Where a document named in `from` is: a path from the repository or from `from`'s folder, or a bare name in the root or docs/. */
function resolveDoc(from: string, name: string): string | null {
  const candidates = name.includes('/')
    ? [join(REPO, name), join(dirname(from), name)]
    : [join(REPO, name), join(REPO, 'docs', name), join(dirname(from), name)];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? null;
}

describe('document references', () => {
  const files = citingFiles();
  const problems: string[] = [];
  const metricsSections = headings(readFileSync(join(REPO, 'docs', 'METRICS.md'), 'utf8'))
    .flatMap((h) => /^(\d+)\. /.exec(h)?.[1] ?? []);

  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const where = relative(REPO, file);
    // `METRICS.md §n`, also written `METRICS.md` §n and `METRICS.md §4, §6`.
    for (const m of text.matchAll(/METRICS\.md`?\s*((?:§\s*\d+(?:\s*[–,-]\s*)?)+)/g)) {
      for (const [, n] of m[1].matchAll(/§\s*(\d+)/g)) {
        if (!metricsSections.includes(n)) problems.push(`${where}: METRICS.md §${n}: docs/METRICS.md has no section ${n}`);
      }
    }
    // Any NAME.md, with or without a #anchor.
    for (const m of text.matchAll(/(?<![\w/.-])((?:[\w.-]+\/)*[\w-]+\.md)(#[\w-]+)?/g)) {
      const doc = resolveDoc(file, m[1]);
      if (doc === null) problems.push(`${where}: ${m[0]}: no such file in the repository`);
      else if (m[2] !== undefined && doc.endsWith('.md') && !anchorsOf(doc).includes(m[2].slice(1))) {
        problems.push(`${where}: ${m[0]}: ${relative(REPO, doc)} has no heading with that anchor`);
      }
    }
    // Markdown links of the docs themselves.
    if (file.endsWith('.md')) {
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const [target, anchor] = m[1].split('#');
        if (/^[a-z]+:/.test(target)) continue;
        const doc = target === '' ? file : join(dirname(file), target);
        if (!existsSync(doc)) problems.push(`${where}: link ${m[1]}: no such file`);
        else if (anchor !== undefined && !anchorsOf(doc).includes(anchor)) problems.push(`${where}: link ${m[1]}: no such heading`);
      }
    }
    if (/README-nightly/.test(text)) problems.push(`${where}: names README-nightly, which does not exist (README.md#nightly-operations)`);
    if (/(?<![\w-])shared\//.test(text)) problems.push(`${where}: refers to a shared/ folder outside the repository`);
  }

  it('scans the code, tests, configs and docs', () => {
    expect(files.map((f) => relative(REPO, f))).toEqual(expect.arrayContaining([
      'src/score.ts', 'pipeline/tables.ts', 'bench/run.ts', 'docs/METRICS.md', 'docs/TABLES.md', 'configs/nightly.example.yaml', 'README.md',
    ]));
  });

  it('resolves every METRICS.md section, document, anchor and link inside a clone', () => {
    expect(problems).toEqual([]);
  });
});

describe('light start-up', () => {
  it('the metric registry, classification, the tables and config parsing load without tfjs', async () => {
    // A resolve hook that refuses any @tensorflow module: importing one of these fails if it pulls tfjs in.
    const dir = mkdtempSync(join(tmpdir(), 'headsweep-no-tfjs-'));
    try {
      writeFileSync(join(dir, 'hooks.mjs'), [
        'export async function resolve(specifier, context, next) {',
        "  if (specifier.startsWith('@tensorflow/')) throw new Error(`tfjs loaded: ${specifier} from ${context.parentURL}`);",
        '  return next(specifier, context);',
        '}',
      ].join('\n'));
      writeFileSync(join(dir, 'register.mjs'), "import { register } from 'node:module';\nregister(new URL('./hooks.mjs', import.meta.url));\n");
      const modules = ['src/metrics/registry.ts', 'src/classify.ts', 'src/names.ts', 'pipeline/config.ts', 'pipeline/tables.ts', 'pipeline/docs.ts'];
      const script = `${modules.map((m) => `await import('./${m}');`).join(' ')} console.log('loaded');`;
      const { stdout } = await run(process.execPath, ['--import', 'tsx', '--import', join(dir, 'register.mjs'), '--input-type=module', '-e', script], { cwd: REPO });
      expect(stdout.trim()).toBe('loaded');
      // The hook does catch tfjs: the scorer imports it.
      await expect(run(process.execPath, ['--import', 'tsx', '--import', join(dir, 'register.mjs'), '--input-type=module', '-e', "await import('./src/score.ts')"], { cwd: REPO }))
        .rejects.toThrow('tfjs loaded: @tensorflow/tfjs-core');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
