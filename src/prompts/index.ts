/** Prompt sets: build one from its spec, check it against a model. */
import type { ModelConfig } from '../model/config.ts';
import { repeatedRandom } from './repeated-random.ts';
import { textPromptSet } from './text.ts';
import { readTokensFile } from './tokens-file.ts';
import type { PromptSet, PromptSetSpec } from './types.ts';
import { validatePromptSet } from './validate.ts';

export interface BuildOptions {
  /** Folder that relative files (tokens, text, tokenizers) resolve against (the run config's folder). */
  baseDir?: string;
  /** A `tokens` file holding more ids than this is an error (the sweep's memory budget for prompts), with `maxTokensReason` in the message. */
  maxTokens?: number;
  maxTokensReason?: string;
  /** How many ids the tokenizer beside the model's weights has, when it has one (Source.tokenizer). */
  tokenizerIds?: number | null;
}

/** Builds a prompt set for a model and checks it fits (ids in the vocabulary, length ≤ n_ctx). */
export function buildPromptSet(spec: PromptSetSpec, c: ModelConfig, opts: BuildOptions = {}): PromptSet {
  const set =
    spec.kind === 'repeated_random' ? repeatedRandom(spec, c, opts)
    : spec.kind === 'text' ? textPromptSet(spec, c, opts.baseDir)
    : readTokensFile(spec, opts.baseDir, { maxTokens: opts.maxTokens, maxTokensReason: opts.maxTokensReason });
  validatePromptSet(set, c);
  return set;
}

export { repeatedRandom, type RepeatedRandomOptions } from './repeated-random.ts';
export { isBuiltinTokenizer, loadTokenizerJson, promptTokenizer, type PromptTokenizer } from './tokenizer.ts';
export { readTokensFile } from './tokens-file.ts';
export { textPromptSet, TextSpecSchema, type TextSpec } from './text.ts';
export { validatePromptSet } from './validate.ts';
export { sampleDistinct, seededRng, type Rng } from './rng.ts';
export {
  PromptSetSpecSchema, RepeatedRandomSpecSchema, TokensFileSpecSchema, REPEATED_RANDOM_DEFAULTS,
  type PromptOrigin, type PromptSet, type PromptSetSpec, type RepeatedRandomSpec, type TokensFileSpec,
} from './types.ts';
