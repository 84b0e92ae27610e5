/**
 * Comparisons the golden suites share: every score off by more than its tolerance
 * (METRICS.md §7), named, so a failure lists exactly which heads disagree.
 */
import { expect } from 'vitest';
import { scoreCheckpoint, type CheckpointScores, type CompositionScores, type MetricName } from '../../src/score.ts';
import type { ExpectedPromptSet, ExpectedWeights, Fixture, RealFixture } from './fixtures.ts';

export const PATTERN_TOL = 1e-4;
/** copying, composition and losses */
export const TOL = 1e-3;

/** The pattern scores the fixtures hold expected values for. */
export const GOLDEN_PATTERNS = ['prefix_matching', 'duplicate_token', 'previous_token'] as const;
export type PatternScore = (typeof GOLDEN_PATTERNS)[number];

/** A fixture scored as the golden suites score it: batch size 3 splits every prompt set into several batches, the last one short. */
export function scoreInShortBatches(fx: Fixture | RealFixture, metrics: readonly MetricName[]): Promise<CheckpointScores> {
  return scoreCheckpoint(fx.checkpoint, fx.promptSets, { metrics, batchSize: 3, icl: fx.icl });
}

/** One pattern score of every head of every prompt set against the expected values. */
export function patternMisses(scores: CheckpointScores, expected: Record<string, ExpectedPromptSet>, metric: PatternScore): string[] {
  const misses: string[] = [];
  for (const got of scores.promptSets) {
    const want = expected[got.promptSet].heads;
    expect(got[metric]).toHaveLength(want.length);
    for (const h of want) {
      const value = got[metric]![h.layer * scores.nHeads + h.head];
      if (!(Math.abs(value - h[metric]) <= PATTERN_TOL)) misses.push(`${got.promptSet} L${h.layer}H${h.head}: ${value} vs ${h[metric]}`);
    }
  }
  return misses;
}

/** copying per head ([layer · n_heads + head]) against the expected values. */
export function copyingMisses(copying: Float64Array, nHeads: number, expected: ExpectedWeights['copying']): string[] {
  expect(copying.length).toBe(expected.length);
  return expected
    .map(({ layer, head, copying: want }) => ({ at: `L${layer}H${head}`, got: copying[layer * nHeads + head], want }))
    .filter(({ got, want }) => !(Math.abs(got - want) <= TOL))
    .map(({ at, got, want }) => `${at}: ${got} vs ${want}`);
}

/** Every composition row, in order, and the baseline, against the expected values. */
export function compositionMisses(comp: CompositionScores, expected: ExpectedWeights['composition']): string[] {
  expect(comp.score.length).toBe(expected.length);
  const misses: string[] = [];
  expected.forEach((e, i) => {
    const at = `L${e.src_layer}H${e.src_head}→L${e.dst_layer}H${e.dst_head} ${e.kind}`;
    const key = [comp.src_layer[i], comp.src_head[i], comp.dst_layer[i], comp.dst_head[i], comp.kind[i]];
    if (key.join() !== [e.src_layer, e.src_head, e.dst_layer, e.dst_head, e.kind].join()) misses.push(`row ${i} is ${key.join()}, want ${at}`);
    else if (!(Math.abs(comp.score[i] - e.score) <= TOL)) misses.push(`${at}: ${comp.score[i]} vs ${e.score}`);
    if (!(Math.abs(comp.baseline - e.baseline) <= TOL)) misses.push(`${at} baseline: ${comp.baseline} vs ${e.baseline}`);
  });
  return misses;
}
