/**
 * Errors are values with a stage and a cause. Every message names the file, key or
 * config path at fault, so a line in the `errors` table is enough to act on.
 */
export type Stage = 'config' | 'load' | 'forward' | 'score' | 'write' | 'train' | 'worker';

export interface ErrorDetails {
  stage: Stage;
  /** File the error is about (checkpoint, prompt file, config), when there is one. */
  file?: string;
  /** Tensor key, metadata key or config path (`prompt_sets[1].seed`), when there is one. */
  key?: string;
  cause?: unknown;
}

export class HeadsweepError extends Error {
  readonly stage: Stage;
  readonly file?: string;
  readonly key?: string;

  constructor(message: string, details: ErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'HeadsweepError';
    this.stage = details.stage;
    this.file = details.file;
    this.key = details.key;
  }
}

/** A checkpoint file that cannot be read: `<file>: <reason>`. */
export function checkpointError(file: string, reason: string, key?: string, cause?: unknown): HeadsweepError {
  return new HeadsweepError(`${shownPath(file)}: ${reason}`, { stage: 'load', file, key, cause });
}

/** A tensor whose shape disagrees with the model config; names the key and both shapes. */
export function shapeMismatch(file: string, key: string, expected: readonly number[], actual: readonly number[]): HeadsweepError {
  return checkpointError(
    file,
    `tensor ${quote(key)} has shape ${formatShape(actual)} but the config expects ${formatShape(expected)}`,
    key,
  );
}

/** `[2, 3, 4]`, as messages print a shape; one of absurd rank (from a hostile file) is cut: `[1, 1, …(100000 dimensions)]`. */
export function formatShape(shape: readonly number[]): string {
  if (shape.length <= 16) return `[${shape.join(', ')}]`;
  return `[${shape.slice(0, 8).join(', ')}, …(${shape.length} dimensions)]`;
}

/** Bad prompt-set input (length, ids, n_ctx); `where` names the prompt set or file. */
export function promptError(where: string, reason: string, file?: string): HeadsweepError {
  return new HeadsweepError(`${where}: ${reason}`, { stage: 'config', file, key: where });
}

/** A config value at a YAML path that is wrong: `<file> → at <path>: <reason>`. */
export function configError(file: string, path: string, reason: string): HeadsweepError {
  const at = path === '' ? '' : ` → at ${path}`;
  return new HeadsweepError(`${shownPath(file)}${at}: ${reason}`, { stage: 'config', file, key: path });
}

/** zod issues as `key.path: message` lines (`(root)` for the value itself), for messages that list every problem. */
export function issueLines(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string[] {
  // Keys come from the file: escaped and cut like any other name from it (`quote` without its quotes).
  const part = (p: PropertyKey) => (typeof p === 'string' ? quote(p, 60).slice(1, -1) : String(p));
  return summarise(issues.map((i) => `${i.path.map(part).join('.') || '(root)'}: ${oneLine(i.message, 300)}`));
}

/** Turns anything thrown into a one-line message for logs and the errors table. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Characters of a value from a file that a message shows at most (a tensor name, a metadata value). */
export const QUOTE_LIMIT = 120;

/** Characters of a path a message shows at most. */
const PATH_LIMIT = 400;

/**
 * Control characters (C0, DEL, C1), the Unicode line and paragraph separators, and the
 * bidirectional overrides: what could start a new line, recolour a terminal or reorder
 * what is shown when a name from a file is printed.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(ch: string): string {
  const special: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
  const code = ch.charCodeAt(0);
  return special[ch] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
}

/** `text` cut to `max` characters, the cut said: `abc…(+1234 characters)`. Never splits a surrogate pair. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max;
  if (/[\ud800-\udbff]/.test(text[end - 1])) end--;
  return `${text.slice(0, end)}…(+${text.length - end} characters)`;
}

/**
 * A value that comes from a file, as a message shows it: a string in single quotes with
 * control characters, line breaks and terminal escapes written as `\n`, `\x1b`, ... (and
 * `\` and `'` escaped, so the quoting is unambiguous), cut to `max` characters; any other
 * value as short JSON-like text, however deep or large it is. Every tensor name, metadata
 * value and dtype a message repeats goes through this, so a file cannot forge a line of
 * a log or an errors row, and a 20 MB name costs a message of a hundred characters.
 */
export function quote(value: unknown, max = QUOTE_LIMIT): string {
  if (typeof value === 'string') return `'${cut(value, max).replace(/[\\']/g, (c) => `\\${c}`).replace(UNSAFE, escapeChar)}'`;
  return jsonQuote(value, max);
}

/** A value from a file as short JSON (a string in double quotes), cut and escaped as `quote` does: for a value whose JSON type the message is about. */
export function jsonQuote(value: unknown, max = QUOTE_LIMIT): string {
  return cut(shortJson(value, 3), max).replace(UNSAFE, escapeChar);
}

/** JSON-like text of any value, `depth` levels deep at most and a few items per level; never throws. */
function shortJson(value: unknown, depth: number): string {
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(cut(value, QUOTE_LIMIT));
  if (typeof value === 'bigint') return `${value}n`;
  if (Array.isArray(value)) {
    if (depth === 0) return value.length === 0 ? '[]' : '[…]';
    const items = value.slice(0, 8).map((v) => shortJson(v, depth - 1));
    return `[${items.join(', ')}${value.length > 8 ? `, …(${value.length} items)` : ''}]`;
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    if (depth === 0) return entries.length === 0 ? '{}' : '{…}';
    const items = entries.slice(0, 8).map(([k, v]) => `${JSON.stringify(cut(k, QUOTE_LIMIT))}: ${shortJson(v, depth - 1)}`);
    return `{${items.join(', ')}${entries.length > 8 ? `, …(${entries.length} keys)` : ''}}`;
  }
  return typeof value;
}

/**
 * Text from a file as output shows it: as it is when it is printable and at most `max`
 * characters (the usual case, so what is shown stays copy-pastable), else quoted as
 * `quote` does.
 */
export function shownText(text: string, max: number): string {
  return text.length <= max && !new RegExp(UNSAFE.source).test(text) ? text : quote(text, max);
}

/** A path as messages show it (`shownText`, up to 400 characters). */
export function shownPath(path: string): string {
  return shownText(path, PATH_LIMIT);
}

/** The longest message an errors row or a log line carries. */
export const MESSAGE_LIMIT = 2000;

/**
 * A message as one line of at most `MESSAGE_LIMIT` characters: the last guard before a
 * message becomes an errors row or a log line, for text no `quote` went through (an
 * error thrown by a library, say).
 */
export function oneLine(message: string, max = MESSAGE_LIMIT): string {
  return cut(message.replace(UNSAFE, escapeChar), max);
}

/** The message of an error a parser threw (JSON.parse quotes the text it choked on): one line, cut short. */
export function parserMessage(err: unknown): string {
  return oneLine(messageOf(err), 200);
}

/** Items listed in a message at most; the rest are counted. */
export const LIST_LIMIT = 12;

/**
 * The first `LIST_LIMIT` of `lines`, then one line counting the rest (`… and 1990 more
 * problems`): what a message or a log prints of a list of problems, however long.
 */
export function summarise(lines: readonly string[], noun = 'problems', total = lines.length): string[] {
  if (total <= LIST_LIMIT) return [...lines];
  return [...lines.slice(0, LIST_LIMIT - 1), `… and ${total - (LIST_LIMIT - 1)} more ${noun}`];
}
