/**
 * The fenced blocks of README.md and what the README test does with each, by language:
 *
 * - `sh`: commands, run by bash in the example folder (`set -eo pipefail`: every command
 *   must succeed), with `headsweep` on the PATH;
 * - `sql`: DuckDB queries over that folder; each statement must succeed, and a query must
 *   return at least one row;
 * - `yaml`: a config, written where its `<!-- example: file <path> -->` line says (a
 *   later `sh` block runs it);
 * - `python`: not run (the project has no Python); every file path or glob in quotes
 *   under `out/` must match a file the examples before it wrote;
 * - `text`, `json`: output and file contents shown, not run.
 *
 * `<!-- example: not run: <reason> -->` on the line before a block (blank lines between
 * allowed) leaves a block of any language out, with the reason. A block without a
 * language, or in another language, fails the test until it is given one of these.
 */
import { readFileSync } from 'node:fs';

export interface Block {
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  /** The block's lines, without the fences and the indentation of the opening fence. */
  text: string;
  /** `file <path>`, `not run: <reason>`, or null. */
  directive: string | null;
}

const FENCE = /^(\s*)```(\S*)\s*$/;
const DIRECTIVE = /^\s*<!--\s*example:\s*(.*?)\s*-->\s*$/;

/** Every fenced block of a Markdown file, in order, with the directive before it. */
export function fencedBlocks(file: string): Block[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]);
    if (open === null) continue;
    const [, indent, lang] = open;
    let end = i + 1;
    while (end < lines.length && !new RegExp(`^${indent}\`\`\`\\s*$`).test(lines[end])) end++;
    let before = i - 1;
    while (before >= 0 && lines[before].trim() === '') before--;
    const directive = before >= 0 ? DIRECTIVE.exec(lines[before])?.[1] ?? null : null;
    const text = lines.slice(i + 1, end).map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l)).join('\n');
    blocks.push({ line: i + 1, lang, text, directive });
    i = end;
  }
  return blocks;
}

/** SQL text as statements, split at a `;` that ends a line; `--` comment lines stay with their statement. */
export function sqlStatements(sql: string): string[] {
  return sql.split(/;\s*$/m).map((s) => s.trim()).filter((s) => s.split('\n').some((l) => l.trim() !== '' && !l.trim().startsWith('--')));
}

/** Whether a statement returns rows: a query, as opposed to SET, INSTALL, CREATE, ... */
export function isQuery(statement: string): boolean {
  const code = statement.split('\n').filter((l) => !l.trim().startsWith('--')).join('\n').trim().toLowerCase();
  return /^(select|with|from|values|describe|show)\b/.test(code);
}

/** Paths and globs under `out/` that Python code names in quotes. */
export function quotedOutputPaths(code: string): string[] {
  return [...code.matchAll(/(['"])(out\/[^'"]+)\1/g)].map((m) => m[2]);
}
