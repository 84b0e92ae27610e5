/**
 * Invariants of scoring the model kinds with MLPs (`test/fixtures/real/`): the wasm and
 * cpu backends agree, the batch size changes no score, nothing is left on the device, and
 * a norm whose gain is 1 (and bias 0) scores exactly as its gain-less kind.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../src/backend.ts';
import type { Checkpoint } from '../src/checkpoint/checkpoint.ts';
import { countBigrams } from '../src/metrics/bigrams.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { disposeParams, forward, uploadParams } from '../src/model/forward.ts';
import { METRIC_NAMES, scoreCheckpoint, type MetricName } from '../src/score.ts';
import { loadRealFixture, REAL_FIXTURE_NAMES, type RealFixture } from './helpers/fixtures.ts';
import { scoreDifference } from './helpers/scores.ts';

const PATTERNS = ['prefix_matching', 'duplicate_token', 'previous_token'] as const;
const SCORES: MetricName[] = [...PATTERNS, 'copying', 'composition', 'mean_loss', 'icl_score'];

beforeAll(async () => {
  await initBackend('wasm');
});

const score = (ck: Checkpoint, fx: RealFixture, batchSize: number) => scoreCheckpoint(ck, fx.promptSets, { metrics: SCORES, batchSize, icl: fx.icl });

describe('the wasm and cpu backends', () => {
  it('agree on a model with a gated MLP, RMS norms, rotary positions and grouped-query attention: every score within 1e-5, the logits within 1e-5 of their scale', async () => {
    const fx = loadRealFixture('llama-gqa-bf16');
    const c = fx.checkpoint.config;
    expect([c.gated_mlp, c.normalization_type, c.positional_embedding_type, c.n_key_value_heads]).toEqual([true, 'RMS', 'rotary', 2]);
    const seq = fx.promptSets[0].sequences.slice(0, 2);
    const logits = () => {
      const params = uploadParams(fx.checkpoint.weights);
      try {
        return tf.tidy(() => {
          const tokens = tf.tensor2d(Int32Array.from(seq.flatMap((s) => [...s])), [2, seq[0].length], 'int32');
          return forward(params, c, tokens, { logits: true, inference: true }).logits!.dataSync();
        });
      } finally {
        disposeParams(params);
      }
    };
    try {
      const onWasm = { scores: await score(fx.checkpoint, fx, 4), logits: logits() };
      await initBackend('cpu');
      const onCpu = { scores: await score(fx.checkpoint, fx, 4), logits: logits() };
      const { max, count } = scoreDifference(onWasm.scores, onCpu.scores);
      expect(count).toBe(2 * (3 * 8 + 2) + 8 + 48); // per prompt set 3 pattern scores × 8 heads and 2 losses; copying; composition
      expect(max).toBeLessThanOrEqual(1e-5);
      // Logits: within 1e-5 of their scale. Each backend rounds its own way (XNNPACK's
      // blocked sums against plain loops, a few float32 ulps per product), and this model
      // amplifies that to ~4e-6 relative at its largest logit, ~9; the scores above are
      // means of such values, icl_score (two single-position losses) differing most.
      let logitDiff = 0;
      let scale = 0;
      onWasm.logits.forEach((x, i) => {
        logitDiff = Math.max(logitDiff, Math.abs(x - onCpu.logits[i]));
        scale = Math.max(scale, Math.abs(x));
      });
      expect(logitDiff).toBeLessThanOrEqual(1e-5 * scale);
    } finally {
      await initBackend('wasm');
    }
  });
});

describe.each(REAL_FIXTURE_NAMES)('%s', (name) => {
  it('batch size 1 equals the whole prompt set in one batch, within 1e-6', async () => {
    const fx = loadRealFixture(name);
    const one = await score(fx.checkpoint, fx, 1);
    const whole = await score(fx.checkpoint, fx, Math.max(...fx.promptSets.map((s) => s.sequences.length)));
    expect(scoreDifference(one, whole).max).toBeLessThanOrEqual(1e-6);
  });

  it('a full scoreCheckpoint with every metric leaves numTensors unchanged', async () => {
    const fx = loadRealFixture(name);
    const bigrams = countBigrams(fx.promptSets.flatMap((s) => s.sequences), fx.checkpoint.config.d_vocab);
    const before = tf.memory().numTensors;
    const scores = await scoreCheckpoint(fx.checkpoint, fx.promptSets, { metrics: METRIC_NAMES, batchSize: 3, icl: fx.icl, bigrams });
    expect(tf.memory().numTensors).toBe(before);
    expect(scores.promptSets[0].mean_loss).toBeGreaterThan(0);
    expect(scores.copying).toHaveLength(fx.checkpoint.config.n_layers * fx.checkpoint.config.n_heads);
    expect(scores.bigram_kl).toBeGreaterThan(0);
  });
});

/** The checkpoint with every norm gain set to 1 and every norm bias to 0. */
function unitNorms(ck: Checkpoint): Checkpoint {
  const weights = new Map(
    [...ck.weights].map(([key, t]) => {
      if (!/(^|\.)ln(1|2|_final)\.[wb]$/.test(key)) return [key, t];
      return [key, { shape: t.shape, data: new Float32Array(t.data.length).fill(key.endsWith('.w') ? 1 : 0) }];
    }),
  );
  return { ...ck, weights };
}

/** The same checkpoint declared with the gain-less norm, its norm weights dropped. */
function withoutNormWeights(ck: Checkpoint, kind: ModelConfig['normalization_type']): Checkpoint {
  const weights = new Map([...ck.weights].filter(([key]) => !/(^|\.)ln(1|2|_final)\.[wb]$/.test(key)));
  return { ...ck, config: { ...ck.config, normalization_type: kind }, weights };
}

describe('norms without their weights', () => {
  it.each([
    ['llama-gqa-bf16', 'RMS', 'RMSPre'],
    ['gpt2-small-hf', 'LN', 'LNPre'],
  ] as const)('%s: %s with gain 1 and bias 0 scores as %s, forward and weight scores, within 1e-6', async (name, kind, pre) => {
    const fx = loadRealFixture(name);
    expect(fx.checkpoint.config.normalization_type).toBe(kind);
    const unit = unitNorms(fx.checkpoint);
    const a = await score(unit, fx, 4);
    const b = await score(withoutNormWeights(unit, pre), fx, 4);
    expect(scoreDifference(a, b).max).toBeLessThanOrEqual(1e-6);
    // The gains matter: the model as trained scores otherwise.
    expect(scoreDifference(a, await score(fx.checkpoint, fx, 4)).max).toBeGreaterThan(1e-3);
  });
});
