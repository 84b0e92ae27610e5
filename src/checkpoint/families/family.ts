/**
 * A checkpoint family: how one trainer's files map onto TransformerLens (TL) names and the
 * TL config. One file per family (tl.ts, gpt2.ts, neox.ts, llama.ts, nanogpt.ts), each
 * with the index maths of CHECKPOINT-FORMATS.md written as recipes (convert.ts).
 *
 * This module loads no tfjs, so config schemas can name the families.
 */
import type { z } from 'zod';
import { checkpointError, issueLines, quote, type HeadsweepError } from '../../errors.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { Conversion, Recipe } from '../convert.ts';
import type { StoredTensor } from '../read.ts';

export const FAMILY_NAMES = ['tl', 'gpt2', 'neox', 'llama', 'nanogpt'] as const;
export type FamilyName = (typeof FAMILY_NAMES)[number];

/** The model config as the trainer wrote it. */
export interface WrittenConfig {
  /** config.json's object, nanoGPT's `model_args`, or the safetensors header's config. */
  value: Record<string, unknown>;
  /** Where it was read: a file, `<file> __metadata__.config`, `<file> model_args`. */
  source: string;
  /** The file to name when it is wrong. */
  file: string;
}

export interface Family<P = unknown> {
  name: FamilyName;
  /**
   * Bumped whenever a change here changes what some checkpoint loads as, so that scores
   * computed through an older conversion are not taken for current ones.
   */
  version: number;
  /** What the family reads, for messages and `inspect`. */
  title: string;
  /** The written config, checked and with the trainer's defaults filled in. */
  parse(w: WrittenConfig): P;
  /** The TL spelling of the config (`TlConfigSchema`'s fields), for `parseModelConfig`. */
  tlConfig(p: P): Record<string, unknown>;
  /** A recipe for each TL tensor, from the source's tensor names. */
  convert(c: ModelConfig, p: P, tensors: ReadonlyMap<string, StoredTensor>): Conversion;
}

/** `<file>: invalid config[ in <where>]: <problems>`; `where` only when the config is not the file itself. */
export function invalidConfig(w: WrittenConfig, problems: string, key = 'config'): HeadsweepError {
  return checkpointError(w.file, `invalid config${w.source === w.file ? '' : ` in ${w.source}`}: ${problems}`, key);
}

/** Parses a written config with a family's schema; a problem names the file and the key. */
export function parseWith<S extends z.ZodType>(schema: S, w: WrittenConfig): z.infer<S> {
  const parsed = schema.safeParse(w.value);
  if (!parsed.success) throw invalidConfig(w, issueLines(parsed.error.issues).join('; '));
  return parsed.data;
}

/** A config problem that no schema catches (a dimension that does not divide, a feature not implemented). */
export function configProblem(w: WrittenConfig, key: string, reason: string): never {
  throw invalidConfig(w, `${key}: ${reason}`, key);
}

/** d_model / n_heads, which must divide. */
export function headSize(w: WrittenConfig, dModelKey: string, dModel: number, headsKey: string, heads: number): number {
  if (dModel % heads !== 0) configProblem(w, dModelKey, `${dModel} is not a multiple of ${headsKey} ${heads}`);
  return dModel / heads;
}

/** rope_scaling and friends change the rotary frequencies, which headsweep does not implement. */
export function refuseRopeScaling(w: WrittenConfig, scaling: unknown, parameters: { rope_type?: string } | undefined): void {
  const type = (scaling as { rope_type?: unknown; type?: unknown } | null | undefined)?.rope_type ?? (scaling as { type?: unknown } | null | undefined)?.type;
  if (scaling !== null && scaling !== undefined && type !== 'default') {
    configProblem(w, 'rope_scaling', `${quote(scaling)} changes the rotary frequencies, which headsweep does not implement (only unscaled rotary positions)`);
  }
  if (parameters?.rope_type !== undefined && parameters.rope_type !== 'default') {
    configProblem(w, 'rope_parameters.rope_type', `${quote(parameters.rope_type)} changes the rotary frequencies, which headsweep does not implement (only 'default')`);
  }
}

/**
 * A trainer family's conversion: its recipes, with the known buffers `buffer` matches
 * (causal masks, rotary tables) read past and any other tensor left over an error naming
 * `conversion`; `where` places the tensor when it is not at the top of the file (` in model`).
 */
export function withBuffers(recipes: Map<string, Recipe>, buffer: RegExp, conversion: string, where = ''): Conversion {
  return {
    recipes,
    ignored: (name) => buffer.test(name),
    unexpected: (name) => `unexpected tensor ${quote(name)}${where}: ${conversion} does not read it and it is not a known buffer`,
  };
}
