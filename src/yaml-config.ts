/**
 * YAML config files checked by a zod schema, shared by the sweep config
 * (pipeline/config.ts) and the train config (src/train/config.ts): one reader, one
 * parser, so both report a bad file the same way, every problem as
 * `<file> → at <YAML path>: <reason> (line <n>)`.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isNode } from 'yaml';
import { z } from 'zod';
import { configError, HeadsweepError } from './errors.ts';

/** `['prompt_sets', 1, 'seed']` → `prompt_sets[1].seed`. */
export function yamlPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

interface Problem {
  path: PropertyKey[];
  message: string;
}

/**
 * Flattens zod issues to one problem per offending value. A union reports the branch
 * whose type matched (the object form of `output`, say), not "invalid input".
 */
function problemsOf(issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[] = []): Problem[] {
  const out: Problem[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: [...path, key], message: 'unknown key' });
    } else if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const typeMatched = issue.errors.filter((branch) => !branch.some((i) => i.code === 'invalid_type' && i.path.length === 0));
      out.push(...problemsOf(typeMatched[0] ?? issue.errors[0], path));
    } else if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) {
      out.push({ path, message: `required (${issue.message.replace(/^Invalid input: /, '').replace(/, received undefined$/, '')})` });
    } else {
      out.push({ path, message: issue.message.replace(/^Invalid input: /, '') });
    }
  }
  return out;
}

/** One error for all problems: the first names the key, every line names a YAML path. */
function configProblems(file: string, problems: Problem[], lineOf: (path: PropertyKey[]) => number | null): HeadsweepError {
  const lines = problems.map((p) => {
    const line = lineOf(p.path);
    return configError(file, yamlPath(p.path), `${p.message}${line === null ? '' : ` (line ${line})`}`).message;
  });
  return new HeadsweepError(lines.join('\n'), { stage: 'config', file, key: yamlPath(problems[0].path) });
}

/**
 * YAML text → a value of `schema`, or one `config`-stage HeadsweepError whose every line
 * names `file`, the YAML path at fault and its line.
 */
export function parseYamlWith<S extends z.ZodType>(schema: S, text: string, file: string): z.infer<S> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const at = lineCounter.linePos(e.pos[0]);
    throw configError(file, '', `not valid YAML at line ${at.line}, column ${at.col}: ${e.message.split('\n')[0]}`);
  }
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw configError(file, '', 'expected a YAML mapping of keys to values');
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const lineOf = (path: PropertyKey[]): number | null => {
    // Walk up to the nearest node that exists (an unknown or missing key has no node of its own).
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n) as (string | number)[], true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return null;
  };
  throw configProblems(file, problemsOf(parsed.error.issues), lineOf);
}

/** The text of a config file, or a `config`-stage error that says it does not exist or why it cannot be read. */
export function readConfigText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw configError(file, '', code === 'ENOENT' ? 'no such config file' : `cannot read (${(err as Error).message})`);
  }
}
