/**
 * `first_token` (METRICS.md §4): mean over sequences and queries q ≥ 1 of A[q, 0]. The
 * expected values are worked out by hand below, first on a hand-written pattern, then on
 * a hand-built one-layer model whose two heads attend in closed form.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../src/backend.ts';
import { closeCheckpoint, loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { writeSafetensors } from '../src/checkpoint/containers/safetensors.ts';
import { classifyHead, DEFAULT_RULES, labelHeads } from '../src/classify.ts';
import { maskedHeadSums } from '../src/metrics/pattern.ts';
import { firstTokenMask } from '../src/metrics/specs/first-token.ts';
import { scoreCheckpoint } from '../src/score.ts';
import { parseConfig } from '../pipeline/config.ts';

beforeAll(async () => {
  await initBackend('wasm');
});

describe('the first_token mask on a hand-written pattern', () => {
  it('averages A[q, 0] over every sequence and query q >= 1, pooled', async () => {
    // 2 sequences × 2 heads × 4 positions. Head 0 attends uniformly (A[q, 0] = 1/(q + 1));
    // head 1's rows put 0.9, 0.8, 0.7 on key 0 in sequence 0 and 0.6, 0.5, 1.0 in sequence 1.
    const uniform = [[1, 0, 0, 0], [1 / 2, 1 / 2, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [1 / 4, 1 / 4, 1 / 4, 1 / 4]];
    const sink = (a: number, b: number, c: number) => [[1, 0, 0, 0], [a, 1 - a, 0, 0], [b, 0, 1 - b, 0], [c, 0, 0, 1 - c]];
    const pattern = tf.tensor4d([[uniform, sink(0.9, 0.8, 0.7)], [uniform, sink(0.6, 0.5, 1.0)]]);
    const mask = firstTokenMask([Int32Array.of(0, 5, 6, 7), Int32Array.of(0, 7, 7, 7)]);
    // Query 0 of each sequence does not count, whatever its tokens: 2 × 3 queries.
    expect(mask.count).toBe(6);
    const sums = await maskedHeadSums(pattern, mask).data();
    pattern.dispose();
    // Head 0: 2 · (1/2 + 1/3 + 1/4) / 6 = 13/36. Head 1: (0.9 + 0.8 + 0.7 + 0.6 + 0.5 + 1.0) / 6 = 0.75.
    expect(sums[0] / mask.count).toBeCloseTo(13 / 36, 6);
    expect(sums[1] / mask.count).toBeCloseTo(0.75, 6);
  });
});

describe('first_token of a hand-built model', () => {
  // One layer, two heads, no norm, standard positions. Every token embeds as e0 and
  // position 0 adds e1, so x[0] = e0 + e1 and x[p] = e0 for p > 0.
  // Head 0 has W_Q = W_K = 0: every score is 0, so A[q, k] = 1/(q + 1).
  // Head 1 reads e0 into its query (W_Q[1][0][0] = √2) and e1 into its key
  // (W_K[1][1][0] = ln 9), so its score is √2 · ln 9 / √d_head = ln 9 on key 0 and 0 on
  // every other key: A[q, 0] = 9 / (9 + q) and A[q, k] = 1 / (9 + q) for 0 < k ≤ q.
  let dir: string;
  const file = () => join(dir, 'sink.safetensors');
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'headsweep-first-token-'));
    const [dModel, dHead, nHeads, dVocab, nCtx] = [4, 2, 2, 6, 8];
    const W_E = new Float32Array(dVocab * dModel);
    for (let t = 0; t < dVocab; t++) W_E[t * dModel] = 1;
    const W_pos = new Float32Array(nCtx * dModel);
    W_pos[1] = 1;
    const W_Q = new Float32Array(nHeads * dModel * dHead);
    const W_K = new Float32Array(nHeads * dModel * dHead);
    W_Q[(1 * dModel + 0) * dHead + 0] = Math.SQRT2;
    W_K[(1 * dModel + 1) * dHead + 0] = Math.log(9);
    const zeros = (...shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    writeSafetensors(file(), {
      'embed.W_E': { shape: [dVocab, dModel], data: W_E },
      'pos_embed.W_pos': { shape: [nCtx, dModel], data: W_pos },
      'blocks.0.attn.W_Q': { shape: [nHeads, dModel, dHead], data: W_Q },
      'blocks.0.attn.W_K': { shape: [nHeads, dModel, dHead], data: W_K },
      'blocks.0.attn.W_V': zeros(nHeads, dModel, dHead),
      'blocks.0.attn.W_O': zeros(nHeads, dHead, dModel),
      'unembed.W_U': zeros(dModel, dVocab),
    }, {
      config: JSON.stringify({
        n_layers: 1, n_heads: nHeads, d_model: dModel, d_head: dHead, d_vocab: dVocab, n_ctx: nCtx,
        attn_only: true, normalization_type: null, positional_embedding_type: 'standard', bos_token_id: 0,
      }),
    });
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('scores the uniform head and the sink head as worked out by hand, and labels only the sink', async () => {
    const ck = loadCheckpoint(file());
    try {
      // Distinct tokens (no earlier copies) in sequences of 6 and 5 tokens: 5 + 4 queries count.
      const promptSets = [{ name: 'distinct', sequences: [Int32Array.of(0, 1, 2, 3, 4, 5), Int32Array.of(0, 5, 4, 3, 2)] }];
      const scores = await scoreCheckpoint(ck, promptSets, { metrics: ['first_token', 'previous_token'], batchSize: 1, icl: { early: 1, late: 2 } });
      const [set] = scores.promptSets;
      // Head 0: (1/2 + … + 1/6 + 1/2 + … + 1/5) / 9 = (87/60 + 77/60) / 9 = 41/135.
      // Head 1: (Σ_{q=1..5} 9/(9+q) + Σ_{q=1..4} 9/(9+q)) / 9 = 2 (1/10 + 1/11 + 1/12 + 1/13) + 1/14.
      expect(set.first_token![0]).toBeCloseTo(41 / 135, 5);
      expect(set.first_token![1]).toBeCloseTo(2 * (1 / 10 + 1 / 11 + 1 / 12 + 1 / 13) + 1 / 14, 5);
      // previous_token of head 1 (9/10 at q = 1, 1/(9+q) after): (1.8 + 2 (1/11 + 1/12 + 1/13) + 1/14) / 9 ≈ 0.264 < 0.4.
      expect(set.previous_token![1]).toBeCloseTo((1.8 + 2 * (1 / 11 + 1 / 12 + 1 / 13) + 1 / 14) / 9, 5);
      // 0.774 ≥ 0.6: the sink is labelled first_token; the uniform head (0.304) nothing.
      expect(labelHeads(scores)).toEqual([[null, 'first_token']]);
    } finally {
      closeCheckpoint(ck);
    }
  });
});

describe('the default first_token rule', () => {
  it('labels a head at >= 0.6, after every other rule', () => {
    expect(DEFAULT_RULES.at(-1)).toEqual({ label: 'first_token', all: [{ metric: 'first_token', op: '>=', value: 0.6 }] });
    expect(classifyHead({ first_token: 0.6 })).toBe('first_token');
    expect(classifyHead({ first_token: 0.59 })).toBeNull();
    expect(classifyHead({ first_token: 0.9, previous_token: 0.5 })).toBe('previous_token');
    expect(classifyHead({ first_token: 0.9, prefix_matching: 0.5, copying: 0.4 })).toBe('induction');
    expect(classifyHead({ first_token: 0.9, copying: 0.7 })).toBe('copying');
  });

  it('is a metric a sweep config may ask for and a rule may test', () => {
    const config = parseConfig([
      'name: t',
      'output: out',
      'checkpoints: [{run: r, paths: ["*.safetensors"]}]',
      'prompt_sets: [{name: p, kind: repeated_random, count: 1, seed: 0}]',
      'metrics: [first_token]',
      'classify: [{label: sink, all: [{metric: first_token, op: ">", value: 0.8}]}]',
    ].join('\n'), 't.yaml');
    expect(config.metrics).toEqual(['first_token']);
    expect(config.classify[0].all[0].metric).toBe('first_token');
    // The default metrics ask for it too.
    expect(parseConfig('name: t\noutput: out\ncheckpoints: [{run: r, paths: ["*.safetensors"]}]\nprompt_sets: [{name: p, kind: repeated_random, count: 1, seed: 0}]', 't.yaml')
      .metrics).toContain('first_token');
  });
});
