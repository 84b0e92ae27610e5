/**
 * `previous_token` (METRICS.md §4): the attention a query q puts on q - 1, over
 * q = 1..T-1 (position 0 has no previous token and does not count).
 */
import { buildMask, type PatternMask } from './pattern.ts';

export function previousTokenMask(tokens: readonly Int32Array[]): PatternMask {
  return buildMask(tokens, (q, _earlier, row) => {
    if (q === 0) return false;
    row[q - 1] = 1;
    return true;
  });
}
