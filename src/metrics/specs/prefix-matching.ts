/**
 * `prefix_matching` (METRICS.md §4): for a query q with earlier copies P(q), the attention
 * mass on the induction targets S(q) = { k + 1 : k ∈ P(q) }, the tokens that followed
 * those copies. Only queries with a non-empty P(q) count. An induction head scores near 1.
 */
import { buildMask, type PatternMask } from '../mask.ts';
import { patternMetric } from '../spec.ts';

export function prefixMatchingMask(tokens: readonly Int32Array[]): PatternMask {
  return buildMask(tokens, (_q, earlier, row) => {
    for (const k of earlier) row[k + 1] = 1; // k < q, so k + 1 ≤ q stays causal
    return earlier.length > 0;
  });
}

export const prefixMatching = patternMetric({
  name: 'prefix_matching',
  summary: 'attention mass on the token after an earlier copy of the current token',
  definition: 'mean over all (sequence, query) pairs with a non-empty `P(q)` of `Σ_{j∈S(q)} A[q, j]`',
  readsAs: 'attention to the token *after* an earlier copy of the current token: the induction-head signature '
    + '(Olsson et al. 2022). Near 1 for an induction head on repeated random tokens.',
  mask: prefixMatchingMask,
});
