/**
 * YAML config files checked by a zod schema, shared by the sweep config
 * (pipeline/config.ts) and the train config (src/train/config.ts): one reader, one
 * parser, so both report a bad file the same way, every problem as
 * `<file> → at <YAML path>: <reason> (line <n>)`.
 */
import { distance } from 'fastest-levenshtein';
import { isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, visit, type Document } from 'yaml';
import { z } from 'zod';
import { configError, HeadsweepError, LIST_LIMIT, summarise } from './errors.ts';
import { FileProblem, readProblem, readRegularFile } from './files.ts';

/** A config is a page of YAML; a file past this is not one (and its parse tree would take gigabytes). */
const MAX_CONFIG_BYTES = 1 << 20;

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

/** The schema under its wrappers (optional, default, nullable, a transform's input). */
function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  const def = schema._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
  const inner = def.type === 'pipe' ? def.in : def.innerType;
  return inner === undefined ? schema : unwrap(inner);
}

/** The keys an object at `path` of `schema` may have (every branch's, under a union). */
function keysAt(schema: z.core.$ZodType, path: readonly PropertyKey[]): string[] {
  const s = unwrap(schema);
  const def = s._zod.def as { type: string; shape?: Record<string, z.core.$ZodType>; element?: z.core.$ZodType; options?: z.core.$ZodType[] };
  if (def.type === 'union') return [...new Set(def.options!.flatMap((o) => keysAt(o, path)))];
  if (path.length === 0) return def.type === 'object' ? Object.keys(def.shape!) : [];
  const [step, ...rest] = path;
  if (def.type === 'object') return def.shape![String(step)] === undefined ? [] : keysAt(def.shape![String(step)], rest);
  if (def.type === 'array') return keysAt(def.element!, rest);
  return [];
}

/** `unknown key`, with the closest key the schema knows there when one is close enough to be a typo. */
function unknownKey(key: string, known: readonly string[]): string {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const k of known) {
    // A missing or extra word part (`memory_budget` for `memory_budget_mb`) counts as close.
    const d = k.startsWith(key) || key.startsWith(k) ? 1 : distance(key, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? `unknown key (did you mean '${best}'?)` : 'unknown key';
}

/**
 * Flattens zod issues to one problem per offending value. A union reports the branch
 * whose type matched (the object form of `output`, say), not "invalid input".
 */
function problemsOf(schema: z.core.$ZodType, issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[] = []): Problem[] {
  const out: Problem[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: [...path, key], message: unknownKey(key, keysAt(schema, path)) });
    } else if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const typeMatched = issue.errors.filter((branch) => !branch.some((i) => i.code === 'invalid_type' && i.path.length === 0));
      out.push(...problemsOf(schema, typeMatched[0] ?? issue.errors[0], path));
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
  // A list of two million bad metrics is one problem told two million times: the first few, then a count.
  const lines = summarise(problems.slice(0, LIST_LIMIT).map((p) => {
    const line = lineOf(p.path);
    return configError(file, yamlPath(p.path), `${p.message}${line === null ? '' : ` (line ${line})`}`).message;
  }), 'problems', problems.length);
  return new HeadsweepError(lines.join('\n'), { stage: 'config', file, key: yamlPath(problems[0].path) });
}

/**
 * The line a YAML path is written on: the line of its key in a mapping (a block value
 * starts on the line after its key), of its item in a sequence; for a path that is not
 * there (a missing key), the line of the nearest enclosing one.
 */
function lineOfPath(doc: Document, lineCounter: LineCounter, path: readonly PropertyKey[]): number | null {
  for (let n = path.length; n > 0; n--) {
    const parent = n === 1 ? doc.contents : doc.getIn(path.slice(0, n - 1) as (string | number)[], true);
    const step = path[n - 1];
    let node: unknown = null;
    if (isMap(parent)) node = parent.items.find((pair) => isScalar(pair.key) && String(pair.key.value) === String(step))?.key;
    else if (isSeq(parent) && typeof step === 'number') node = parent.items[step];
    if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
  }
  return isNode(doc.contents) && doc.contents.range ? lineCounter.linePos(doc.contents.range[0]).line : null;
}

/** Aliases a config may expand (yaml's default, 100): far more than a config needs, far fewer than an alias bomb makes. */
const MAX_ALIAS_COUNT = 100;

/**
 * Why the YAML's aliases cannot be resolved, with the line of the first alias that is at
 * fault: an alias to an anchor not set before it, or aliases that expand into more nodes
 * than `MAX_ALIAS_COUNT` (a "billion laughs" document).
 */
function aliasProblem(doc: Document, lineCounter: LineCounter, err: unknown): string {
  const message = (err as Error).message;
  const unresolved = /Unresolved alias.*: (.*)$/.exec(message);
  let line: number | null = null;
  visit(doc, {
    Alias(_, node) {
      if (unresolved !== null && node.source !== unresolved[1]) return undefined;
      if (node.range) line = lineCounter.linePos(node.range[0]).line;
      return visit.BREAK;
    },
  });
  const at = line === null ? '' : ` (line ${line})`;
  if (unresolved !== null) return `alias *${unresolved[1].slice(0, 80)} names no anchor set before it${at}`;
  if (/Excessive alias count/.test(message)) return `its aliases expand to more than ${MAX_ALIAS_COUNT} copies, which no config needs (an alias bomb?); write the values out${at}`;
  return `cannot resolve its aliases: ${message}${at}`;
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
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    throw configError(file, '', aliasProblem(doc, lineCounter, err));
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw configError(file, '', 'expected a YAML mapping of keys to values');
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw configProblems(file, problemsOf(schema, parsed.error.issues), (path) => lineOfPath(doc, lineCounter, path));
}

/** The text of a config file, or a `config`-stage error that says it does not exist or why it cannot be read. */
export function readConfigText(file: string): string {
  try {
    return readRegularFile(file, { bytes: MAX_CONFIG_BYTES, what: 'a config file' }).toString('utf8');
  } catch (err) {
    throw configError(file, '', err instanceof FileProblem && err.code === 'ENOENT' ? 'no such config file' : readProblem(err));
  }
}
