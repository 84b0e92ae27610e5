/**
 * A checkpoint's work cut into parts (src/work.ts), each scored on its own as a worker
 * would, merges into the very scores of one whole pass: bit for bit, for any cut. And a
 * model run a layer at a time (every batch through one layer's uploaded weights before
 * the next) scores exactly as one with every layer on the device. Both on the
 * attention-only and the real golden fixtures, every metric.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../src/backend.ts';
import { countBigrams } from '../src/metrics/bigrams.ts';
import { METRIC_NAMES, scoreCheckpoint, scoreCheckpointPart, type CheckpointScores, type ScoreOptions } from '../src/score.ts';
import { forwardBatches, mergeParts, scoreRequest, splitWork, workCosts, type WorkPart } from '../src/work.ts';
import { FIXTURE_NAMES, loadFixture, loadRealFixture, REAL_FIXTURE_NAMES, type Fixture, type RealFixture } from './helpers/fixtures.ts';
import { scoreDifference } from './helpers/scores.ts';

beforeAll(async () => {
  await initBackend('wasm');
});

const CASES = [
  ...FIXTURE_NAMES.map((name) => ({ name, load: (): Fixture | RealFixture => loadFixture(name) })),
  ...REAL_FIXTURE_NAMES.map((name) => ({ name, load: (): Fixture | RealFixture => loadRealFixture(name) })),
];

function optionsFor(fx: Fixture | RealFixture): ScoreOptions {
  const bigrams = countBigrams(fx.promptSets.flatMap((s) => s.sequences), fx.checkpoint.config.d_vocab);
  return { metrics: METRIC_NAMES, batchSize: 2, icl: fx.icl, bigrams };
}

/** Every score of a result, in one comparable object (timings left out). */
function untimed(s: CheckpointScores): Omit<CheckpointScores, 'seconds'> {
  const { seconds: _, ...rest } = s;
  return rest;
}

describe.each(CASES)('$name', ({ load }) => {
  it('parts of any cut merge into the scores of the whole, bit for bit', async () => {
    const fx = load();
    const opts = optionsFor(fx);
    const whole = await scoreCheckpoint(fx.checkpoint, fx.promptSets, opts);
    const req = scoreRequest(fx.checkpoint.config, opts.metrics, opts.batchSize, opts.icl);
    const n = forwardBatches(fx.promptSets, opts.batchSize).length;
    expect(n).toBeGreaterThan(2);
    const cuts: WorkPart[][] = [
      splitWork(workCosts(fx.checkpoint.config, fx.promptSets, opts.metrics, opts.batchSize, opts.icl), 2),
      // One batch a part, the weights alone, and the parts handed in backwards.
      [{ weights: true, batches: { from: 0, to: 0 } }, ...Array.from({ length: n }, (_, i) => ({ weights: false, batches: { from: i, to: i + 1 } }))].reverse(),
    ];
    for (const cut of cuts) {
      const parts = await Promise.all(cut.map((part) => scoreCheckpointPart(fx.checkpoint, fx.promptSets, opts, part)));
      // Each part computes its own batches and no others (the merge would hide extra ones), and the weights only where asked.
      parts.forEach((p, i) => {
        const { from, to } = cut[i].batches;
        expect(p.batches.map((b) => b.batch)).toEqual(Array.from({ length: to - from }, (_, j) => from + j));
        expect(p.weights !== undefined).toBe(cut[i].weights);
      });
      expect(untimed(mergeParts(fx.checkpoint.config, fx.promptSets, req, parts))).toEqual(untimed(whole));
    }
    expect(whole.promptSets[0].mean_loss).toBeGreaterThan(0);
  });

  it('a layer at a time scores exactly as every layer at once, and frees every tensor', async () => {
    const fx = load();
    const opts = optionsFor(fx);
    const before = tf.memory().numTensors;
    const byLayer = await scoreCheckpoint(fx.checkpoint, fx.promptSets, { ...opts, layerByLayer: true });
    expect(tf.memory().numTensors).toBe(before);
    const atOnce = await scoreCheckpoint(fx.checkpoint, fx.promptSets, { ...opts, layerByLayer: false });
    expect(scoreDifference(byLayer, atOnce).max).toBe(0);
    expect(untimed(byLayer)).toEqual(untimed(atOnce));
  });
});

describe('splitWork', () => {
  it('cuts where each part gets about its share of the cost, the weights in the first', () => {
    expect(splitWork({ weights: 4, batches: [1, 1, 1, 1, 1, 1, 1, 1] }, 2)).toEqual([
      { weights: true, batches: { from: 0, to: 2 } },
      { weights: false, batches: { from: 2, to: 8 } },
    ]);
    // Weights heavier than a part's share: the first part holds them alone, the others share the batches.
    expect(splitWork({ weights: 10, batches: [1, 1, 1, 1] }, 3)).toEqual([
      { weights: true, batches: { from: 0, to: 0 } },
      { weights: false, batches: { from: 0, to: 2 } },
      { weights: false, batches: { from: 2, to: 4 } },
    ]);
    expect(splitWork({ weights: 0, batches: [1, 1, 1] }, 1)).toEqual([{ weights: true, batches: { from: 0, to: 3 } }]);
  });
});
