/**
 * Prompt sets (METRICS.md §3): how one is specified, and the token sequences it becomes.
 * The spec schemas are strict (unknown keys are errors) so a run config can embed them.
 */
import { z } from 'zod';
import { TextSpecSchema } from './text.ts';

/** A named list of token sequences, ready for the forward pass. */
export interface PromptSet {
  name: string;
  /** One Int32Array of token ids per sequence (sequences may differ in length). */
  sequences: Int32Array[];
  /** Where explicit ids came from, so errors can name the file and line of a sequence. */
  origin?: PromptOrigin;
}

export interface PromptOrigin {
  file: string;
  /** 1-based line number of each sequence in `file`. */
  lines: number[];
}

/** Olsson et al.'s repeated random tokens: 25 ids, 4 times, after BOS (101 tokens). */
export const REPEATED_RANDOM_DEFAULTS = { length: 25, repeats: 4 } as const;

const positiveInt = z.number().int().positive();

export const RepeatedRandomSpecSchema = z.strictObject({
  kind: z.literal('repeated_random'),
  name: z.string().min(1),
  /** Distinct ids per block. */
  length: positiveInt.default(REPEATED_RANDOM_DEFAULTS.length),
  /** Times the block is repeated. */
  repeats: positiveInt.default(REPEATED_RANDOM_DEFAULTS.repeats),
  /** Number of sequences. */
  count: positiveInt,
  /** Seeds the generator; xoroshiro128+ takes 32 bits. */
  seed: z.number().int().min(0).max(0xffff_ffff),
  /**
   * Ids are drawn from [lo, hi); default: every id of the tokenizer (`tokenizer`, else the
   * tokenizer.json beside the weights), else the whole vocabulary. BOS ids are never drawn.
   */
  token_range: z.tuple([z.number().int().min(0), z.number().int().positive()]).optional(),
  /** A tokenizer.json (or a model folder holding one) whose ids bound the default range; relative to the run config's folder. */
  tokenizer: z.string().min(1).optional(),
  /** true: prepend the model's bos_token_id; a number: prepend that id; false: no BOS.
   *  Default: prepend the model's bos_token_id when it has one. */
  bos: z.union([z.boolean(), z.number().int().min(0)]).optional(),
});

export const TokensFileSpecSchema = z.strictObject({
  kind: z.literal('tokens'),
  name: z.string().min(1),
  /** A `.jsonl` file: one JSON array of token ids per line, blank lines skipped. */
  path: z.string().min(1),
});

export const PromptSetSpecSchema = z.discriminatedUnion('kind', [RepeatedRandomSpecSchema, TokensFileSpecSchema, TextSpecSchema]);

/** Specs as written by hand (defaults may be left out). */
export type RepeatedRandomSpec = z.input<typeof RepeatedRandomSpecSchema>;
export type TokensFileSpec = z.input<typeof TokensFileSpecSchema>;
export type PromptSetSpec = z.input<typeof PromptSetSpecSchema>;
