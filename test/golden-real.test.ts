/**
 * Every score of the five models with MLPs in `test/fixtures/real/` (GPT-2, nanoGPT,
 * GPT-NeoX with partial rotary and parallel blocks, Llama with RMS norms, a gated SiLU MLP
 * and grouped-query attention, a TransformerLens GELU model), read from their
 * `NAME.tl.safetensors`, against the values an independent float64 implementation
 * computed from the same files (METRICS.md §7). Tolerances are §7's: pattern scores 1e-4
 * absolute; copying, composition, mean_loss and icl_score 1e-3 (icl early 10, late 40).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend.ts';
import type { CheckpointScores, MetricName } from '../src/score.ts';
import { loadRealFixture, REAL_FIXTURE_NAMES, type RealFixture } from './helpers/fixtures.ts';
import { compositionMisses, copyingMisses, GOLDEN_PATTERNS as PATTERNS, patternMisses, scoreInShortBatches, TOL } from './helpers/golden.ts';

const METRICS: MetricName[] = [...PATTERNS, 'copying', 'composition', 'mean_loss', 'icl_score'];

beforeAll(async () => {
  await initBackend('wasm');
});

describe.each(REAL_FIXTURE_NAMES)('golden scores of a model with MLPs: %s', (name) => {
  let fx: RealFixture;
  let scores: CheckpointScores;
  beforeAll(async () => {
    fx = loadRealFixture(name);
    scores = await scoreInShortBatches(fx, METRICS);
  });

  it('is a model with MLPs, scored on both prompt sets', () => {
    expect(fx.checkpoint.config.attn_only).toBe(false);
    expect(scores.promptSets.map((s) => s.promptSet)).toEqual(Object.keys(fx.expected));
  });

  it.each(PATTERNS)('%s per head within 1e-4', (metric) => {
    expect(patternMisses(scores, fx.expected, metric)).toEqual([]);
  });

  it('mean_loss and icl_score within 1e-3', () => {
    for (const got of scores.promptSets) {
      const want = fx.expected[got.promptSet];
      expect(Math.abs(got.mean_loss! - want.mean_loss)).toBeLessThanOrEqual(TOL);
      expect(want.icl_score).toBeDefined();
      expect(Math.abs(got.icl_score! - want.icl_score!)).toBeLessThanOrEqual(TOL);
    }
  });

  it('copying per head within 1e-3', () => {
    expect(copyingMisses(scores.copying!, scores.nHeads, fx.weights.copying)).toEqual([]);
  });

  it('every composition score within 1e-3, rows in the expected order', () => {
    expect(compositionMisses(scores.composition!, fx.weights.composition)).toEqual([]);
  });
});
