/**
 * `text` prompt sets: windows of natural text, so loss and icl_score are measured on the
 * kind of data induction heads help with in the wild (repeated names, words, code).
 *
 * Generation is a pure function of (spec, file contents, tokenizer). The exact algorithm:
 *   1. The file is tokenized whole by `tokenizer` (tokenizer.ts): `byte` and `char64` read
 *      its bytes, one id per byte; a tokenizer.json reads it as UTF-8 text, without special
 *      tokens.
 *   2. One generator per prompt set: pure-rand xoroshiro128plus(seed).
 *   3. For each of the `count` sequences in order: offset = uniformInt(rng, 0, N − length)
 *      over the N tokens, and the sequence is [BOS?] + tokens[offset, offset + length).
 * `origin.lines` records the file line each window starts on, for error messages.
 *
 * BOS: `byte` and `char64` prepend their own (256, 0) unless `bos: false`; with a
 * tokenizer.json the model's family decides (GPT-2 prepends one, Pythia none), as for
 * repeated_random, and `bos` overrides it.
 */
import { resolve } from 'node:path';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { z } from 'zod';
import type { ModelConfig } from '../model/config.ts';
import { issueLines, promptError, shownPath } from '../errors.ts';
import { readProblem, readRegularFile } from '../files.ts';
import { resolveBos } from './bos.ts';
import { seededRng } from './rng.ts';
import { isBuiltinTokenizer, promptTokenizer, type PromptTokenizer } from './tokenizer.ts';
import type { PromptSet } from './types.ts';

const positiveInt = z.number().int().positive();

export const TextSpecSchema = z.strictObject({
  kind: z.literal('text'),
  name: z.string().min(1),
  /** A UTF-8 text file; relative paths resolve against the run config's folder. */
  path: z.string().min(1),
  /**
   * `byte` (vocab 257, BOS 256), `char64` (vocab 64, BOS 0), or a tokenizer.json (the
   * file, or a model folder holding one; relative to the run config's folder).
   */
  tokenizer: z.string().min(1),
  /** Text tokens per sequence, BOS not included. */
  length: positiveInt,
  count: positiveInt,
  seed: z.number().int().min(0).max(0xffff_ffff),
  /**
   * true: prepend BOS (a builtin tokenizer's own, else the model's); false: none; an id:
   * that id. Default: true for `byte` and `char64`, the model's BOS for a tokenizer.json.
   */
  bos: z.union([z.boolean(), z.number().int().min(0)]).optional(),
}).transform((s) => (s.bos === undefined && isBuiltinTokenizer(s.tokenizer) ? { ...s, bos: true } : s));

export type TextSpec = z.input<typeof TextSpecSchema>;

/** The BOS id a window starts with, or null. */
function textBos(where: string, file: string, bos: boolean | number | undefined, tokenizer: PromptTokenizer, c: ModelConfig): number | null {
  if (bos !== true || tokenizer.bos === null) return resolveBos(where, bos, c);
  const modelBos = c.bos_token_id ?? null;
  if (modelBos !== null && modelBos !== tokenizer.bos) {
    throw promptError(where, `tokenizer '${tokenizer.label}' uses BOS ${tokenizer.bos} but the model's bos_token_id is ${modelBos}`, file);
  }
  return tokenizer.bos;
}

/** Reads `spec.path` (relative to `baseDir`, default the working directory) and cuts the windows. */
export function textPromptSet(raw: TextSpec, c: ModelConfig, baseDir = process.cwd()): PromptSet {
  const where = `prompt set '${raw.name}'`;
  const parsed = TextSpecSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = issueLines(parsed.error.issues);
    throw promptError(where, `invalid text spec: ${problems.join('; ')}`);
  }
  const spec = parsed.data;
  const file = resolve(baseDir, spec.path);
  let tokenizer: PromptTokenizer;
  try {
    tokenizer = promptTokenizer(spec.tokenizer, baseDir);
  } catch (err) {
    throw promptError(where, (err as Error).message, file);
  }
  if (tokenizer.vocabSize > c.d_vocab) {
    throw promptError(where, `tokenizer '${tokenizer.label}' has ${tokenizer.vocabSize} ids but the model's d_vocab is ${c.d_vocab}`, file);
  }
  const bos = textBos(where, file, spec.bos, tokenizer, c);
  let bytes: Uint8Array;
  try {
    bytes = readRegularFile(file);
  } catch (err) {
    throw promptError(where, `cannot read text file ${shownPath(file)}: ${readProblem(err)}`, file);
  }
  const tokens = tokenizer.encode(bytes);
  if (tokens.length < spec.length) {
    throw promptError(where, `${shownPath(file)} has ${tokens.length} tokens, fewer than length ${spec.length}`, file);
  }
  // lineOf[i]: the file line token i starts on.
  const lineOf = new Int32Array(tokens.length);
  let line = 1;
  tokens.forEach((id, i) => {
    lineOf[i] = line;
    line += tokenizer.newlines(id);
  });

  const rng = seededRng(spec.seed);
  const prefix = bos === null ? 0 : 1;
  const sequences: Int32Array[] = [];
  const lines: number[] = [];
  for (let s = 0; s < spec.count; s++) {
    const offset = uniformInt(rng, 0, tokens.length - spec.length);
    const seq = new Int32Array(prefix + spec.length);
    if (bos !== null) seq[0] = bos;
    seq.set(tokens.subarray(offset, offset + spec.length), prefix);
    sequences.push(seq);
    lines.push(lineOf[offset]);
  }
  return { name: spec.name, sequences, origin: { file, lines } };
}
