/**
 * `previous_token` (METRICS.md §4): the attention a query q puts on q - 1, over
 * q = 1..T-1 (position 0 has no previous token and does not count).
 */
import { buildMask, type PatternMask } from '../mask.ts';
import { patternMetric } from '../spec.ts';

export function previousTokenMask(tokens: readonly Int32Array[]): PatternMask {
  return buildMask(tokens, (q, _earlier, row) => {
    if (q === 0) return false;
    row[q - 1] = 1;
    return true;
  });
}

export const previousToken = patternMetric({
  name: 'previous_token',
  summary: 'attention mass on the previous position',
  definition: 'mean over all sequences and `q = 1..T-1` of `A[q, q-1]`',
  readsAs: 'a previous-token head, the first half of the induction circuit',
  mask: previousTokenMask,
});
