/**
 * Attention-pattern and loss scores (METRICS.md §4, §6) against the golden fixtures,
 * which an independent float64 implementation computed.
 *
 * Tolerances are METRICS.md §7's bounds for float32 compute. Pattern scores: 1e-4
 * absolute; each is a mean of softmax sums in [0, 1], which float32 gets right to ~1e-7
 * relative, so 1e-4 leaves wide room and still catches a wrong mask (one misplaced key
 * moves a score by ~1e-2). Losses: 1e-3 absolute; a log-sum-exp over d_vocab logits
 * that went through every layer's float32 residual stream, differences of two such
 * means for icl_score.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../src/backend.ts';
import { maskedHeadSums } from '../src/metrics/pattern.ts';
import { duplicateTokenMask } from '../src/metrics/specs/duplicate-token.ts';
import { prefixMatchingMask } from '../src/metrics/specs/prefix-matching.ts';
import { previousTokenMask } from '../src/metrics/specs/previous-token.ts';
import { scoreCheckpoint, type CheckpointScores, type MetricName } from '../src/score.ts';
import { FIXTURE_NAMES, loadFixture, type Fixture } from './helpers/fixtures.ts';
import { GOLDEN_PATTERNS as PATTERNS, patternMisses, scoreInShortBatches, TOL } from './helpers/golden.ts';

const METRICS: MetricName[] = [...PATTERNS, 'mean_loss', 'icl_score'];

beforeAll(async () => {
  await initBackend('wasm');
});

/** The keys of row `q` of a [batch, qPos, kPos] mask that are 1. */
function marked(m: { cells: Int32Array; pos: number }, b: number, q: number): number[] {
  const rowStart = (b * m.pos + q) * m.pos;
  return Array.from(m.cells.filter((cell) => cell >= rowStart && cell < rowStart + m.pos), (cell) => cell - rowStart);
}

describe('pattern masks on a hand-written sequence', () => {
  // positions: 0 1 2 3 4 5 ; tokens 0 5 6 5 6 5
  const tokens = [Int32Array.of(0, 5, 6, 5, 6, 5)];

  it('prefix_matching reads the token after each earlier copy, over queries with a copy', () => {
    const m = prefixMatchingMask(tokens);
    expect([0, 1, 2].map((q) => marked(m, 0, q))).toEqual([[], [], []]);
    expect(marked(m, 0, 3)).toEqual([2]); // copy of 5 at 1 -> target 2
    expect(marked(m, 0, 4)).toEqual([3]); // copy of 6 at 2 -> target 3
    expect(marked(m, 0, 5)).toEqual([2, 4]); // copies of 5 at 1, 3 -> targets 2, 4
    expect(m.count).toBe(3);
  });

  it('duplicate_token reads the earlier copies themselves', () => {
    const m = duplicateTokenMask(tokens);
    expect(marked(m, 0, 3)).toEqual([1]);
    expect(marked(m, 0, 4)).toEqual([2]);
    expect(marked(m, 0, 5)).toEqual([1, 3]);
    expect(m.count).toBe(3);
  });

  it('previous_token reads q - 1 for every q ≥ 1', () => {
    const m = previousTokenMask([...tokens, Int32Array.of(1, 2, 3, 4, 5, 6)]);
    expect(marked(m, 1, 0)).toEqual([]);
    expect([1, 2, 3, 4, 5].map((q) => marked(m, 1, q))).toEqual([[0], [1], [2], [3], [4]]);
    expect(m.count).toBe(10);
  });
});

describe('a batch where no query counts', () => {
  it('adds exactly nothing to a score (no sum over an empty mask, which wasm leaves uninitialised)', () => {
    const pattern = tf.fill([2, 3, 4, 4], 0.25) as tf.Tensor4D;
    const empty = duplicateTokenMask([Int32Array.of(1, 2, 3, 4), Int32Array.of(5, 6, 7, 8)]);
    expect(empty.cells.length).toBe(0);
    try {
      // Freed memory full of a recognisable value, which an uninitialised output would show.
      for (let i = 0; i < 8; i++) tf.fill([64], 1e6).dataSync();
      for (let i = 0; i < 8; i++) {
        const sums = tf.tidy(() => maskedHeadSums(pattern, empty));
        expect(Array.from(sums.dataSync())).toEqual([0, 0, 0]);
        sums.dispose();
      }
    } finally {
      pattern.dispose();
    }
  });

  it('leaves the score of the batches that do count unchanged', async () => {
    const fx = loadFixture('random-2l-ln-standard');
    const counting = fx.promptSets[0].sequences.slice(0, 3);
    const distinct = [0, 1, 2].map((s) => Int32Array.from({ length: 40 }, (_, i) => (i + s) % 40)); // no token repeats within a sequence
    const opts = { metrics: ['duplicate_token', 'prefix_matching'] as MetricName[], batchSize: 3, icl: fx.icl };
    const [alone] = (await scoreCheckpoint(fx.checkpoint, [{ name: 'a', sequences: counting }], opts)).promptSets;
    const [mixed] = (await scoreCheckpoint(fx.checkpoint, [{ name: 'b', sequences: [...distinct, ...counting] }], opts)).promptSets;
    for (const m of ['duplicate_token', 'prefix_matching'] as const) expect(Array.from(mixed[m]!)).toEqual(Array.from(alone[m]!));
  });
});

describe.each(FIXTURE_NAMES)('golden pattern and loss scores: %s', (name) => {
  let fx: Fixture;
  let scores: CheckpointScores;
  beforeAll(async () => {
    fx = loadFixture(name);
    scores = await scoreInShortBatches(fx, METRICS);
  });

  it('scores every prompt set of the fixture, in order', () => {
    expect(scores.promptSets.map((s) => s.promptSet)).toEqual(Object.keys(fx.expected));
    expect(scores.copying).toBeUndefined();
    expect(scores.composition).toBeUndefined();
  });

  it.each(PATTERNS)('%s per head within 1e-4', (metric) => {
    expect(patternMisses(scores, fx.expected, metric)).toEqual([]);
  });

  it('mean_loss within 1e-3, icl_score within 1e-3 where the sequences reach `late`, else null', () => {
    for (const got of scores.promptSets) {
      const want = fx.expected[got.promptSet];
      expect(Math.abs(got.mean_loss! - want.mean_loss)).toBeLessThanOrEqual(TOL);
      if (want.icl_score === undefined) expect(got.icl_score).toBeNull();
      else expect(Math.abs(got.icl_score! - want.icl_score)).toBeLessThanOrEqual(TOL);
    }
  });
});

describe('scores no query counts towards', () => {
  it('are NaN for prefix_matching and duplicate_token on sequences without repeats', async () => {
    const fx = loadFixture('random-1l-none-shortformer');
    const distinct = { name: 'distinct', sequences: [Int32Array.of(0, 1, 2, 3, 4, 5), Int32Array.of(0, 7, 8, 9, 10, 11)] };
    const [got] = (await scoreCheckpoint(fx.checkpoint, [distinct], { metrics: [...PATTERNS], batchSize: 2, icl: fx.icl })).promptSets;
    expect(Array.from(got.prefix_matching!).every(Number.isNaN)).toBe(true);
    expect(Array.from(got.duplicate_token!).every(Number.isNaN)).toBe(true);
    expect(Array.from(got.previous_token!).every((s) => s > 0 && s < 1)).toBe(true);
    expect(got.mean_loss).toBeUndefined();
  });
});
