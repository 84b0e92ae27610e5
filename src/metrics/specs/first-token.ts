/**
 * `first_token` (METRICS.md §4): the attention a query q ≥ 1 parks on position 0, over
 * q = 1..T-1 (query 0 can attend only to itself and does not count). Heads of trained
 * models often dump attention they do not need on the first token, BOS when there is
 * one: the "attention sink" (Xiao et al. 2023).
 */
import { buildMask, type PatternMask } from '../mask.ts';
import { patternMetric } from '../spec.ts';

export function firstTokenMask(tokens: readonly Int32Array[]): PatternMask {
  return buildMask(tokens, (q, _earlier, row) => {
    if (q === 0) return false;
    row[0] = 1;
    return true;
  });
}

export const firstToken = patternMetric({
  name: 'first_token',
  summary: 'attention mass on the first position (BOS when the prompts have one)',
  definition: 'mean over all sequences and `q = 1..T-1` of `A[q, 0]`',
  readsAs: 'an attention sink: a head that parks the attention it does not need on the first token (Xiao et al. 2023). '
    + 'A head attending uniformly scores `(H_T - 1) / (T - 1)`, 0.042 on 101 tokens',
  mask: firstTokenMask,
});
