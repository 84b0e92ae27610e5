/**
 * What a sweep config may ask for, measured against the memory it may use, before
 * anything is built: prompt sets are checked from their specs (count × tokens per
 * sequence), so `count: 1e9` is a config error at its YAML path in milliseconds instead
 * of a process that grows until the machine stops it.
 *
 * Why half the budget over (workers + 2) copies: every run holds its prompt sets, each
 * checkpoint in flight carries a copy to its worker thread (one per worker, plus one
 * being written), and the `prompts` table is built from them; the other half of the
 * budget is for the checkpoints themselves (plan.ts, `estimateBytes`).
 */
import { totalmem } from 'node:os';
import { configError } from '../src/errors.ts';
import { REPEATED_RANDOM_DEFAULTS, type PromptSetSpec } from '../src/prompts/types.ts';
import type { LoadedConfig, SweepConfig } from './config.ts';

/** Bytes the sweep may hold at once: `memory_budget_mb`, or a quarter of the machine's memory. */
export function memoryBudgetBytes(config: SweepConfig): number {
  return config.memory_budget_mb !== undefined ? config.memory_budget_mb * 2 ** 20 : Math.floor(totalmem() / 4);
}

/** Bytes of one token id in a prompt set (Int32Array). */
const TOKEN_BYTES = 4;

export interface PromptTokenLimit {
  /** Token ids all prompt sets together may hold. */
  tokens: number;
  /** Where the number comes from, for messages. */
  reason: string;
}

export function promptTokenLimit(config: SweepConfig, budgetBytes: number): PromptTokenLimit {
  const copies = config.workers + 2;
  const tokens = Math.floor(budgetBytes / 2 / TOKEN_BYTES / copies);
  const budget = config.memory_budget_mb !== undefined ? `memory_budget_mb ${config.memory_budget_mb}` : `the default memory budget of ${Math.round(budgetBytes / 2 ** 20)} MiB (a quarter of this machine's memory)`;
  return { tokens, reason: `at most ${tokens} token ids fit: half of ${budget}, as ${TOKEN_BYTES}-byte ids in ${copies} copies for ${config.workers} workers; lower the count or raise memory_budget_mb` };
}

/** Tokens a generated prompt set will hold, from its spec (BOS counted); null for a tokens file, known only once read. */
function specTokens(spec: PromptSetSpec): number | null {
  if (spec.kind === 'repeated_random') return spec.count * (1 + (spec.length ?? REPEATED_RANDOM_DEFAULTS.length) * (spec.repeats ?? REPEATED_RANDOM_DEFAULTS.repeats));
  if (spec.kind === 'text') return spec.count * (1 + spec.length);
  return null;
}

/**
 * Refuses prompt sets whose specs ask for more tokens than `limit`, at the YAML path of
 * the count; returns what is left of the limit for the tokens files, read later.
 */
export function checkPromptSetSizes(loaded: LoadedConfig, config: SweepConfig, limit: PromptTokenLimit): number {
  let used = 0;
  config.prompt_sets.forEach((spec, i) => {
    const tokens = specTokens(spec);
    if (tokens === null || spec.kind === 'tokens') return;
    used += tokens;
    if (used > limit.tokens) {
      const what = used === tokens ? `${tokens} token ids` : `${tokens} token ids, ${used} with the prompt sets before it`;
      throw configError(loaded.file, `prompt_sets[${i}].count`, `${spec.count} sequences are ${what}; ${limit.reason}`);
    }
  });
  return limit.tokens - used;
}
