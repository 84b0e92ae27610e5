/**
 * `text` prompt sets: windows of natural text, so loss and icl_score are measured on the
 * kind of data induction heads help with in the wild (repeated names, words, code).
 *
 * Generation is a pure function of (spec, file contents). The exact algorithm:
 *   1. The file is read as bytes and tokenized whole by `tokenizer` (src/train/tokenizer.ts:
 *      byte-level, one id per byte, so token index = byte offset).
 *   2. One generator per prompt set: pure-rand xoroshiro128plus(seed).
 *   3. For each of the `count` sequences in order: offset = uniformInt(rng, 0, N − length)
 *      over the N tokens, and the sequence is [BOS?] + tokens[offset, offset + length).
 * `origin.lines` records the file line each window starts on, for error messages.
 */
import { resolve } from 'node:path';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { z } from 'zod';
import type { ModelConfig } from '../model/config.ts';
import { issueLines, promptError, shownPath } from '../errors.ts';
import { readProblem, readRegularFile } from '../files.ts';
import { TOKENIZERS, TOKENIZER_NAMES } from '../train/tokenizer.ts';
import { seededRng } from './rng.ts';
import type { PromptSet } from './types.ts';

const positiveInt = z.number().int().positive();

export const TextSpecSchema = z.strictObject({
  kind: z.literal('text'),
  name: z.string().min(1),
  /** A UTF-8 text file; relative paths resolve against the run config's folder. */
  path: z.string().min(1),
  /** `byte` (vocab 257, BOS 256) or `char64` (vocab 64, BOS 0). */
  tokenizer: z.enum(TOKENIZER_NAMES),
  /** Text tokens per sequence, BOS not included. */
  length: positiveInt,
  count: positiveInt,
  seed: z.number().int().min(0).max(0xffff_ffff),
  /** Prepend the tokenizer's BOS id. */
  bos: z.boolean().default(true),
});

export type TextSpec = z.input<typeof TextSpecSchema>;

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
  const tokenizer = TOKENIZERS[spec.tokenizer];
  if (tokenizer.vocabSize > c.d_vocab) {
    throw promptError(where, `tokenizer '${tokenizer.name}' has ${tokenizer.vocabSize} ids but the model's d_vocab is ${c.d_vocab}`, file);
  }
  const modelBos = c.bos_token_id ?? null;
  if (spec.bos && modelBos !== null && modelBos !== tokenizer.bos) {
    throw promptError(where, `tokenizer '${tokenizer.name}' uses BOS ${tokenizer.bos} but the model's bos_token_id is ${modelBos}`, file);
  }
  let bytes: Uint8Array;
  try {
    bytes = readRegularFile(file);
  } catch (err) {
    throw promptError(where, `cannot read text file ${shownPath(file)}: ${readProblem(err)}`, file);
  }
  const tokens = tokenizer.encode(bytes);
  if (tokens.length < spec.length) {
    throw promptError(where, `${file} has ${tokens.length} tokens, fewer than length ${spec.length}`, file);
  }
  const lineStarts = [0];
  bytes.forEach((b, i) => {
    if (b === 0x0a) lineStarts.push(i + 1);
  });
  const lineOf = (offset: number): number => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };

  const rng = seededRng(spec.seed);
  const prefix = spec.bos ? 1 : 0;
  const sequences: Int32Array[] = [];
  const lines: number[] = [];
  for (let s = 0; s < spec.count; s++) {
    const offset = uniformInt(rng, 0, tokens.length - spec.length);
    const seq = new Int32Array(prefix + spec.length);
    if (spec.bos) seq[0] = tokenizer.bos;
    seq.set(tokens.subarray(offset, offset + spec.length), prefix);
    sequences.push(seq);
    lines.push(lineOf(offset));
  }
  return { name: spec.name, sequences, origin: { file, lines } };
}
