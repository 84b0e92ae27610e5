/**
 * `duplicate_token` (METRICS.md §4): for a query q, the attention mass on its earlier
 * copies P(q) = { k < q : t[k] = t[q] }. Only queries with a non-empty P(q) count.
 */
import { buildMask, type PatternMask } from '../mask.ts';
import { patternMetric } from '../spec.ts';

export function duplicateTokenMask(tokens: readonly Int32Array[]): PatternMask {
  return buildMask(tokens, (_q, earlier, row) => {
    for (const k of earlier) row[k] = 1;
    return earlier.length > 0;
  });
}

export const duplicateToken = patternMetric({
  name: 'duplicate_token',
  summary: 'attention mass on earlier copies of the current token',
  definition: 'the same mean of `Σ_{k∈P(q)} A[q, k]`',
  readsAs: 'attention to earlier copies of the current token',
  mask: duplicateTokenMask,
});
