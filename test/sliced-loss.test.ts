/**
 * The scorer's losses come from the unembedding computed in vocabulary slices with a
 * running log-sum-exp, at the positions a score reads (model/unembed.ts). Here they are
 * compared with the whole-vocabulary computation (every logit of every position, the
 * log-sum-exp of tfjs, the target picked by index), pooled the same way, on every golden
 * fixture: within 1e-5 whatever the slice width, and icl_score alone (two positions per
 * sequence read) equals icl_score computed beside mean_loss.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../src/backend.ts';
import { disposeParams, forward, tokenLosses, uploadParams } from '../src/model/forward.ts';
import { checkIclPositions, type IclPositions } from '../src/metrics/loss.ts';
import type { Checkpoint } from '../src/checkpoint/checkpoint.ts';
import type { PromptSet } from '../src/prompts/types.ts';
import { scoreCheckpoint } from '../src/score.ts';
import { FIXTURE_NAMES, loadFixture, loadRealFixture, REAL_FIXTURE_NAMES } from './helpers/fixtures.ts';

beforeAll(async () => {
  await initBackend('wasm');
});

/** mean_loss and icl_score from the whole [batch, pos, d_vocab] logits, one sequence at a time, in float64. */
function wholeVocabulary(ck: Checkpoint, set: PromptSet, icl: IclPositions): { mean_loss: number; icl_score: number | null } {
  checkIclPositions(icl);
  const params = uploadParams(ck.weights);
  try {
    let [sum, count, early, late] = [0, 0, 0, 0];
    let reachesLate = true;
    for (const seq of set.sequences) {
      const loss = tf.tidy(() => {
        const tokens = tf.tensor2d(seq, [1, seq.length], 'int32');
        return tokenLosses(forward(params, ck.config, tokens, { logits: true }).logits!, tokens).dataSync(); // (T-1): loss[i] at i-1
      });
      for (const x of loss) sum += x;
      count += loss.length;
      early += loss[icl.early - 1];
      if (icl.late < seq.length) late += loss[icl.late - 1];
      else reachesLate = false;
    }
    return { mean_loss: sum / count, icl_score: reachesLate ? (late - early) / set.sequences.length : null };
  } finally {
    disposeParams(params);
  }
}

const CASES = [
  ...FIXTURE_NAMES.map((name) => ({ name, load: () => loadFixture(name) })),
  ...REAL_FIXTURE_NAMES.map((name) => ({ name, load: () => loadRealFixture(name) })),
];

describe.each(CASES)('sliced unembedding against the whole vocabulary: $name', ({ load }) => {
  it('mean_loss and icl_score within 1e-5 for slices of 1, 7 and the default width', async () => {
    const fx = load();
    const vocab = fx.checkpoint.config.d_vocab;
    for (const set of fx.promptSets) {
      const want = wholeVocabulary(fx.checkpoint, set, fx.icl);
      for (const vocabSlice of [1, 7, undefined]) {
        const got = (await scoreCheckpoint(fx.checkpoint, [set], { metrics: ['mean_loss', 'icl_score'], batchSize: 3, icl: fx.icl, vocabSlice })).promptSets[0];
        expect(Math.abs(got.mean_loss! - want.mean_loss), `${set.name}, slice ${vocabSlice ?? vocab}`).toBeLessThanOrEqual(1e-5);
        if (want.icl_score === null) expect(got.icl_score).toBeNull();
        else expect(Math.abs(got.icl_score! - want.icl_score), `${set.name}, slice ${vocabSlice ?? vocab}`).toBeLessThanOrEqual(1e-5);
      }
      expect(want.mean_loss).toBeGreaterThan(0);
    }
  });

  it('icl_score alone, from its two positions, equals icl_score beside mean_loss', async () => {
    const fx = load();
    const opts = { batchSize: 4, icl: fx.icl };
    const both = await scoreCheckpoint(fx.checkpoint, fx.promptSets, { ...opts, metrics: ['mean_loss', 'icl_score'] });
    const alone = await scoreCheckpoint(fx.checkpoint, fx.promptSets, { ...opts, metrics: ['icl_score'] });
    both.promptSets.forEach((s, i) => {
      expect(alone.promptSets[i].mean_loss).toBeUndefined();
      if (s.icl_score === null) expect(alone.promptSets[i].icl_score).toBeNull();
      else expect(Math.abs(alone.promptSets[i].icl_score! - s.icl_score!)).toBeLessThanOrEqual(1e-6);
    });
  });
});

describe('a vocabulary slice that is not a positive integer', () => {
  it('is refused before any work, naming the option (a slice of 0 would never end)', async () => {
    const fx = loadFixture(FIXTURE_NAMES[0]);
    for (const vocabSlice of [0, -3, 2.5]) {
      await expect(scoreCheckpoint(fx.checkpoint, fx.promptSets, { metrics: ['mean_loss'], batchSize: 3, icl: fx.icl, vocabSlice })).rejects.toThrow(
        `vocabulary slice ${vocabSlice} is not a positive integer`,
      );
    }
  });
});
