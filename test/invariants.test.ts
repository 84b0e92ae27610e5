/**
 * Invariants of scoreCheckpoint: the batch size does not change a score, a prompt set of
 * mixed lengths pools its parts, and the wasm and cpu backends agree.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../src/backend.ts';
import { closeCheckpoint, loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { ReadBuffer } from '../src/checkpoint/read.ts';
import { stackedMatMul } from '../src/model/pieces.ts';
import { countBigrams } from '../src/metrics/bigrams.ts';
import { prefixMatchingMask } from '../src/metrics/specs/prefix-matching.ts';
import { METRIC_NAMES, scoreCheckpoint, type MetricName } from '../src/score.ts';
import { FIXTURE_NAMES, loadFixture } from './helpers/fixtures.ts';
import { scoreDifference } from './helpers/scores.ts';

const PATTERNS = ['prefix_matching', 'duplicate_token', 'previous_token'] as const;
const FORWARD_METRICS: MetricName[] = [...PATTERNS, 'mean_loss', 'icl_score'];

beforeAll(async () => {
  await initBackend('wasm');
});

describe.each(FIXTURE_NAMES)('batch size does not change the scores: %s', (name) => {
  it('batch size 1 equals the whole prompt set in one batch, within 1e-6', async () => {
    const fx = loadFixture(name);
    const run = (batchSize: number) => scoreCheckpoint(fx.checkpoint, fx.promptSets, { metrics: FORWARD_METRICS, batchSize, icl: fx.icl });
    const one = await run(1);
    const whole = await run(Math.max(...fx.promptSets.map((s) => s.sequences.length)));
    expect(scoreDifference(one, whole).max).toBeLessThanOrEqual(1e-6);
  });
});

describe('a prompt set of mixed lengths', () => {
  it('pools its equal-length parts, weighting each by its number of (sequence, query) pairs', async () => {
    // planted-induction-2l: repeated_random has 49 tokens a sequence, natural_like 64.
    const fx = loadFixture('planted-induction-2l');
    const [a, b] = fx.promptSets;
    const mixed = { name: 'mixed', sequences: [b.sequences[0], ...a.sequences, ...b.sequences.slice(1)] };
    const opts = { metrics: FORWARD_METRICS, batchSize: 4, icl: fx.icl };
    const parts = (await scoreCheckpoint(fx.checkpoint, [a, b], opts)).promptSets;
    const [got] = (await scoreCheckpoint(fx.checkpoint, [mixed], opts)).promptSets;

    const weights = {
      prefix_matching: [a, b].map((s) => prefixMatchingMask(s.sequences).count),
      previous_token: [a, b].map((s) => s.sequences.reduce((n, seq) => n + seq.length - 1, 0)),
    };
    for (const m of ['prefix_matching', 'previous_token'] as const) {
      const [wa, wb] = weights[m];
      got[m]!.forEach((x, j) => expect(x).toBeCloseTo((parts[0][m]![j] * wa + parts[1][m]![j] * wb) / (wa + wb), 6));
    }
    const [la, lb] = weights.previous_token; // losses count one per (sequence, i ≥ 1), like previous_token
    expect(got.mean_loss).toBeCloseTo((parts[0].mean_loss! * la + parts[1].mean_loss! * lb) / (la + lb), 6);
    // The 49-token sequences do not reach late = 60, so neither does the mixed set.
    expect(got.icl_score).toBeNull();
  });
});

describe('where the weights live', () => {
  it.each(FIXTURE_NAMES)('W_E and W_U left in the file score exactly as weights in memory, every metric: %s', async (name) => {
    const fx = loadFixture(name);
    const bigrams = countBigrams(fx.promptSets.flatMap((s) => s.sequences), fx.checkpoint.config.d_vocab);
    const opts = { metrics: METRIC_NAMES, batchSize: 4, icl: fx.icl, bigrams };
    const inFile = loadCheckpoint(fx.checkpoint.path, { readBuffer: new ReadBuffer(), leaveInFile: ['embed.W_E', 'unembed.W_U'] });
    try {
      expect(inFile.weights.has('embed.W_E')).toBe(false);
      expect(scoreDifference(await scoreCheckpoint(fx.checkpoint, fx.promptSets, opts), await scoreCheckpoint(inFile, fx.promptSets, opts)).max).toBe(0);
    } finally {
      closeCheckpoint(inFile);
    }
  });
});

describe('stacked matrix products', () => {
  it('cut apart on wasm, each piece equals the batched product within 1e-5 (relative to the largest entry)', () => {
    // Attention-like shapes, odd sizes on purpose; values from a fixed generator.
    const [n, m, k, p] = [6, 13, 7, 11];
    const fill = (size: number, seed: number) => Float32Array.from({ length: size }, (_, i) => Math.sin(seed * 1000 + i * 0.37));
    const a = tf.tensor3d(fill(n * m * k, 1), [n, m, k]);
    const b = tf.tensor3d(fill(n * k * p, 2), [n, k, p]);
    try {
      const piecewise = tf.tidy(() => stackedMatMul(a, b));
      const batched = tf.tidy(() => tf.matMul(a, b));
      expect(piecewise.shape).toEqual([n, m, p]);
      const [got, want] = [piecewise.dataSync(), batched.dataSync()];
      tf.dispose([piecewise, batched]);
      const scale = Math.max(...want.map(Math.abs));
      expect(Math.max(...got.map((x, i) => Math.abs(x - want[i]))) / scale).toBeLessThanOrEqual(1e-5);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});

describe('backends', () => {
  afterAll(async () => {
    await initBackend('wasm');
  });

  it.each(FIXTURE_NAMES)('cpu and wasm agree within 1e-5 on every score: %s', async (name) => {
    const fx = loadFixture(name);
    // bigram_kl against the fixture's own prompt tokens.
    const bigrams = countBigrams(fx.promptSets.flatMap((s) => s.sequences), fx.checkpoint.config.d_vocab);
    const run = () => scoreCheckpoint(fx.checkpoint, fx.promptSets, { metrics: METRIC_NAMES, batchSize: 4, icl: fx.icl, bigrams });
    await initBackend('cpu');
    const cpu = await run();
    await initBackend('wasm');
    const wasm = await run();
    expect(scoreDifference(cpu, wasm).max).toBeLessThanOrEqual(1e-5);
  });
});
