/**
 * The lists in the docs that come from the code: the README's score table, table list
 * and default classification rules, and docs/TABLES.md's column tables, all rendered from
 * the metric registry (src/metrics/registry.ts), the table columns (pipeline/tables.ts)
 * and DEFAULT_RULES (src/classify.ts). The prose around them is written by hand.
 *
 * Each list sits between two marker lines in its file,
 *
 *     <!-- generated: <name> (npm run docs) -->
 *     ...
 *     <!-- end generated: <name> -->
 *
 * `npm run docs` rewrites what is between them; test/docs.test.ts fails while a file
 * differs from what this renders, so the docs cannot drift from the code.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_RULES, type Rule } from '../src/classify.ts';
import { METRICS, type MetricSpec } from '../src/metrics/registry.ts';
import { COLUMNS, TABLE_NAMES, TABLES_VERSION, type ColumnSpec, type TableName } from './tables.ts';

const ROOT = join(import.meta.dirname, '..');

/** What each table holds one row of. */
const ROW_OF: Record<TableName, string> = {
  heads: 'prompt set × layer × head (ordered by prompt set, then layer, then head)',
  composition: 'pair of heads and kind (Q, K, V), source layer before destination layer',
  checkpoint_scores: 'prompt set of a checkpoint',
  checkpoints: 'checkpoint scored',
  prompts: 'sequence of a prompt set, per run',
  errors: 'checkpoint (or other input) that failed; the sweep goes on without it',
};

const DUCKDB_TYPE: Record<ColumnSpec['type'], string> = {
  Utf8: 'VARCHAR', Int32: 'INTEGER', Int64: 'BIGINT', Float64: 'DOUBLE', Bool: 'BOOLEAN', 'List<Int32>': 'INTEGER[]',
};

/** Markdown table cells: a `|` inside one would end it. */
function cell(text: string): string {
  return text.replace(/(?<!\\)\|/g, '\\|');
}

/** A spec's "per" as the README's score table says it. */
function perText(m: MetricSpec): string {
  switch (m.per) {
    case 'head': return m.kind === 'pattern' ? 'head × prompt set' : 'head';
    case 'head_pair': return '(earlier head, later head)';
    case 'prompt_set': return 'checkpoint × prompt set';
    case 'checkpoint': return 'checkpoint';
  }
}

const KIND_TEXT: Record<MetricSpec['kind'], string> = {
  pattern: 'attention patterns',
  weights: 'weights',
  loss: 'logits',
  corpus: 'weights and the `bigram` corpus',
};

/**
 * The anchor GitHub gives a heading: lower case, every character but letters, digits,
 * spaces, `-` and `_` dropped, spaces turned into `-`.
 */
export function headingAnchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
}

/** The headings of a markdown file (outside code blocks), as written. */
export function headings(markdown: string): string[] {
  let fenced = false;
  return markdown.split('\n').flatMap((line) => {
    if (line.startsWith('```')) fenced = !fenced;
    const m = fenced ? null : /^#{1,6} (.+)$/.exec(line);
    return m === null ? [] : [m[1]];
  });
}

/** `METRICS.md §n` as a link to that section of docs/METRICS.md. */
function metricsLink(section: string): string {
  const n = /§(\d+)/.exec(section)![1];
  const heading = headings(readFileSync(join(ROOT, 'docs', 'METRICS.md'), 'utf8')).find((h) => h.startsWith(`${n}. `));
  if (heading === undefined) throw new Error(`docs/METRICS.md has no section ${n}`);
  return `[${section}](docs/METRICS.md#${headingAnchor(heading)})`;
}

/** README: every score, in registry order. */
function scoresTable(): string {
  const rows = METRICS.map((m) => [
    `\`${m.name}\``, perText(m), KIND_TEXT[m.kind], m.range === null ? '' : `[${m.range.join(', ')}]`,
    m.definition, m.readsAs, m.definedIn.startsWith('METRICS.md') ? metricsLink(m.definedIn) : `\`${m.definedIn}\``,
  ].map(cell));
  return markdownTable(['score', 'per', 'reads', 'range', 'definition', 'reads as', 'exact definition'], rows);
}

/** README: each table, what a row is, and its columns, linking to TABLES.md. */
function tablesList(): string {
  const rows = TABLE_NAMES.map((t) => [
    `[${t}](docs/TABLES.md#${t})`, ROW_OF[t], COLUMNS[t].map((c) => c.name).join(', '),
  ].map(cell));
  return markdownTable(['table', 'one row per', 'columns'], rows);
}

/** TABLES.md: one table's columns with their Arrow and DuckDB types. */
function columnsTable(table: TableName): string {
  const rows = COLUMNS[table].map((c) => [c.name, `${c.type}${c.nullable ? '?' : ''} / ${DUCKDB_TYPE[c.type]}`, c.meaning].map(cell));
  return `One row per ${ROW_OF[table]}.\n\n${markdownTable(['column', 'type', 'meaning'], rows)}`;
}

/** README: the default rules as a `classify:` section would spell them. */
function classifyDefaults(): string {
  const condition = (c: Rule['all'][number]) => `{metric: ${c.metric}, op: "${c.op}", value: ${c.value}}`;
  const lines = DEFAULT_RULES.map((r) => `  - {label: ${r.label}, all: [${r.all.map(condition).join(', ')}]}`);
  // A listing, not a config of its own: the README examples test runs the configs that use it.
  return ['<!-- example: not run: the default rules as a listing; the configs above are run with them -->', '```yaml', 'classify:', ...lines, '```'].join('\n');
}

/** README: the metric names a config may list, and the default list. */
function metricNames(): string {
  const names = METRICS.map((m) => `\`${m.name}\``).join(', ');
  const corpus = METRICS.filter((m) => m.kind === 'corpus').map((m) => `\`${m.name}\``).join(', ');
  return `\`metrics\` may list any of ${names}. The default is every one of them, except ${corpus}, `
    + 'which is asked for by default only when `bigram` names a corpus (and is an error without one).';
}

function markdownTable(header: readonly string[], rows: readonly string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Every generated block, by file (relative to the repository) and name. */
export const GENERATED: Record<string, Record<string, () => string>> = {
  'README.md': {
    scores: scoresTable,
    tables: tablesList,
    'classify-defaults': classifyDefaults,
    'metric-names': metricNames,
  },
  'docs/TABLES.md': {
    version: () => `The current tables version is **${TABLES_VERSION}**.`,
    ...Object.fromEntries(TABLE_NAMES.map((t) => [`columns-${t}`, () => columnsTable(t)])),
  },
};

const begin = (name: string) => `<!-- generated: ${name} (npm run docs) -->`;
const end = (name: string) => `<!-- end generated: ${name} -->`;

/** `text` with every block of `blocks` rewritten; a block whose markers are missing is an error naming it. */
export function renderBlocks(file: string, text: string, blocks: Record<string, () => string>): string {
  let out = text;
  for (const [name, render] of Object.entries(blocks)) {
    const from = out.indexOf(begin(name));
    const to = out.indexOf(end(name));
    if (from < 0 || to < from) throw new Error(`${file}: no '${begin(name)}' … '${end(name)}' block`);
    out = `${out.slice(0, from)}${begin(name)}\n${render()}\n${out.slice(to)}`;
  }
  return out;
}

/** The files whose generated blocks differ from what the code renders, with their rendered text. */
export function staleDocs(root = ROOT): { file: string; current: string; rendered: string }[] {
  return Object.entries(GENERATED).flatMap(([file, blocks]) => {
    const current = readFileSync(join(root, file), 'utf8');
    const rendered = renderBlocks(file, current, blocks);
    return rendered === current ? [] : [{ file, current, rendered }];
  });
}

/** Rewrites the stale files; returns their names. */
export function writeDocs(root = ROOT): string[] {
  const stale = staleDocs(root);
  for (const { file, rendered } of stale) writeFileSync(join(root, file), rendered);
  return stale.map((s) => s.file);
}
