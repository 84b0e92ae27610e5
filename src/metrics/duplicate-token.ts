/**
 * `duplicate_token` (METRICS.md §4): for a query q, the attention mass on its earlier
 * copies P(q) = { k < q : t[k] = t[q] }. Only queries with a non-empty P(q) count.
 */
import { buildMask, type PatternMask } from './pattern.ts';

export function duplicateTokenMask(tokens: readonly Int32Array[]): PatternMask {
  return buildMask(tokens, (_q, earlier, row) => {
    for (const k of earlier) row[k] = 1;
    return earlier.length > 0;
  });
}
