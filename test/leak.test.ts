/**
 * scoreCheckpoint disposes every tensor it makes: uploaded weights, token batches, masks,
 * patterns, logits and the weight-score intermediates (bigram_kl's direct path among them),
 * on success and on error.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../src/backend.ts';
import { HeadsweepError } from '../src/errors.ts';
import { countBigrams } from '../src/metrics/bigrams.ts';
import { METRIC_NAMES, scoreCheckpoint } from '../src/score.ts';
import { FIXTURE_NAMES, loadFixture, type Fixture } from './helpers/fixtures.ts';

/** bigram_kl against the fixture's own prompt tokens: any corpus whose ids fit the model will do. */
const bigramsOf = (fx: Fixture) => countBigrams(fx.promptSets.flatMap((s) => s.sequences), fx.checkpoint.config.d_vocab);

beforeAll(async () => {
  await initBackend('wasm');
});

describe('no tensor leak', () => {
  it.each(FIXTURE_NAMES)('a full scoreCheckpoint with every metric leaves numTensors unchanged: %s', async (name) => {
    const fx = loadFixture(name);
    const before = tf.memory().numTensors;
    const scores = await scoreCheckpoint(fx.checkpoint, fx.promptSets, { metrics: METRIC_NAMES, batchSize: 3, icl: fx.icl, bigrams: bigramsOf(fx) });
    expect(tf.memory().numTensors).toBe(before);
    // The run really scored something, so the count is not trivially unchanged.
    expect(scores.promptSets).toHaveLength(fx.promptSets.length);
    expect(scores.copying).toHaveLength(fx.checkpoint.config.n_layers * fx.checkpoint.config.n_heads);
    expect(scores.promptSets[0].mean_loss).toBeGreaterThan(0);
    expect(scores.bigram_kl).toBeGreaterThan(0);
  });

  it('a prompt set that fails validation leaves numTensors unchanged', async () => {
    const fx = loadFixture('random-1l-none-shortformer');
    const before = tf.memory().numTensors;
    const bad = { name: 'bad', sequences: [Int32Array.of(0, 1, 60)] }; // d_vocab is 60
    const run = scoreCheckpoint(fx.checkpoint, [bad], { metrics: METRIC_NAMES, batchSize: 1, icl: fx.icl, bigrams: bigramsOf(fx) });
    await expect(run).rejects.toThrow("prompt set 'bad': sequence 0: token id 60 at position 2 is outside the vocabulary [0, 60)");
    await expect(run).rejects.toBeInstanceOf(HeadsweepError);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a score that fails after the weights are uploaded and the forward passes ran leaves numTensors unchanged', async () => {
    // Validation fails before any upload, so only a later failure exercises the disposal on error:
    // bigram_kl runs last and rejects a corpus with more ids than the model's d_vocab.
    const fx = loadFixture('random-1l-none-shortformer');
    const before = tf.memory().numTensors;
    const bigrams = countBigrams(fx.promptSets.flatMap((s) => s.sequences), 61); // d_vocab is 60
    const run = scoreCheckpoint(fx.checkpoint, fx.promptSets, { metrics: METRIC_NAMES, batchSize: 3, icl: fx.icl, bigrams });
    await expect(run).rejects.toThrow("bigram_kl: the corpus has 61 token ids but the model's d_vocab is 60");
    // The metric's own error names no file; the scorer puts the checkpoint in front of it.
    await expect(run).rejects.toMatchObject({ file: fx.checkpoint.path, message: `${fx.checkpoint.path}: bigram_kl: the corpus has 61 token ids but the model's d_vocab is 60` });
    expect(tf.memory().numTensors).toBe(before);
  });
});
