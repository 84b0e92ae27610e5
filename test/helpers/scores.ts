/**
 * Comparing two results of scoreCheckpoint, for the invariant suites (batch size,
 * backend, where weights live, equivalent models).
 */
import { expect } from 'vitest';
import type { CheckpointScores } from '../../src/score.ts';

/**
 * Largest absolute difference over every score two results share, and how many there
 * were; a NaN or a score `b` lacks counts as Infinity. Per-head scores are every
 * Float64Array of a prompt set's scores, so a new per-head score is compared too.
 */
export function scoreDifference(a: CheckpointScores, b: CheckpointScores): { max: number; count: number } {
  const pairs: [number, number][] = [];
  a.promptSets.forEach((sa, i) => {
    const sb = b.promptSets[i] as unknown as Record<string, unknown>;
    for (const [key, value] of Object.entries(sa)) {
      if (value instanceof Float64Array) value.forEach((x, j) => pairs.push([x, (sb[key] as Float64Array | undefined)?.[j] ?? NaN]));
      else if (typeof value === 'number') pairs.push([value, typeof sb[key] === 'number' ? sb[key] : NaN]);
    }
  });
  a.copying?.forEach((x, j) => pairs.push([x, b.copying?.[j] ?? NaN]));
  a.composition?.score.forEach((x, j) => pairs.push([x, b.composition?.score[j] ?? NaN]));
  if (a.bigram_kl !== undefined) pairs.push([a.bigram_kl, b.bigram_kl ?? NaN]);
  expect(pairs.length).toBeGreaterThan(0);
  return { max: Math.max(...pairs.map(([x, y]) => (Number.isNaN(x - y) ? Infinity : Math.abs(x - y)))), count: pairs.length };
}
