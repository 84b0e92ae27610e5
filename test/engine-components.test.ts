/**
 * The forward pass's components against numbers worked out by hand (rotary positions,
 * activations, norms), and its model kinds against their definitions: grouped-query
 * attention equals the same model with K and V repeated to every query head, a parallel
 * block equals x + attn(ln1 x) + mlp(ln2 x) written out from the components (and is not
 * the sequential block), and a pass that needs only a layer's pattern stops there.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../src/backend.ts';
import type { Weights } from '../src/checkpoint/checkpoint.ts';
import { compositionScores } from '../src/metrics/composition.ts';
import { copyingScores } from '../src/metrics/copying.ts';
import { attentionOutput, attentionPattern, causalMask, headsSideBySide, type AttentionContext, type AttentionWeights } from '../src/model/attention.ts';
import { modelConfig, type ModelConfig } from '../src/model/config.ts';
import { embed } from '../src/model/embed.ts';
import { disposeParams, forward, uploadParams, type Params } from '../src/model/forward.ts';
import { ACTIVATIONS, mlp } from '../src/model/mlp.ts';
import { norm } from '../src/model/norm.ts';
import { rotate, rotation } from '../src/model/rotary.ts';
import { unembed } from '../src/model/unembed.ts';
import { loadRealFixture } from './helpers/fixtures.ts';

beforeAll(async () => {
  await initBackend('wasm');
});

/** Largest |a - b| over two equal-length arrays. */
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** The first `n` sequences of a fixture's first prompt set as a [batch, pos] tensor. */
function tokensOf(sequences: readonly Int32Array[], n: number): tf.Tensor2D {
  const batch = sequences.slice(0, n);
  return tf.tensor2d(Int32Array.from(batch.flatMap((s) => [...s])), [batch.length, batch[0].length], 'int32');
}

describe('rotary positions, against a hand-computed example', () => {
  const x = [1, 2, 3, 4, 5, 6];
  /** rotate() on one head of one sequence: [pos][d_head] */
  function rotated(c: ModelConfig, rows: number[][]): number[][] {
    const d = c.d_head;
    return tf.tidy(() => {
      const input = tf.tensor4d(rows.flat(), [1, 1, rows.length, d]); // (1, 1, T, dh)
      const out = rotate(rotation(c, rows.length), input).dataSync();
      return rows.map((_, p) => Array.from(out.subarray(p * d, (p + 1) * d)));
    });
  }

  it('rotate-half pairs (i, i + n), rotary_dim 4 of d_head 6: the last two dimensions pass through', () => {
    const c = modelConfig({ n_layers: 1, n_heads: 1, d_model: 6, d_head: 6, d_vocab: 4, n_ctx: 3, positional_embedding_type: 'rotary', rotary_dim: 4 });
    // n = 2 pairs, (0, 2) at θ = p and (1, 3) at θ = p · 10000^(-2/4) = p / 100.
    // p = 1: y0 = 1 cos 1 - 3 sin 1 = 0.5403023 - 2.5244130 = -1.9841106
    //        y1 = 2 cos .01 - 4 sin .01 = 1.9999000 - 0.0399993 = 1.9599007
    //        y2 = 3 cos 1 + 1 sin 1 = 1.6209069 + 0.8414710 = 2.4623779
    //        y3 = 4 cos .01 + 2 sin .01 = 3.9998000 + 0.0199997 = 4.0197997
    // p = 2: y0 = 1 cos 2 - 3 sin 2 = -0.4161468 - 2.7278923 = -3.1440391
    //        y1 = 2 cos .02 - 4 sin .02 = 1.9996000 - 0.0799947 = 1.9196053
    //        y2 = 3 cos 2 + 1 sin 2 = -1.2484405 + 0.9092974 = -0.3391431
    //        y3 = 4 cos .02 + 2 sin .02 = 3.9992000 + 0.0399973 = 4.0391974
    const want = [
      [1, 2, 3, 4, 5, 6], // p = 0: no rotation
      [-1.9841106, 1.9599007, 2.4623779, 4.0197997, 5, 6],
      [-3.1440391, 1.9196053, -0.3391431, 4.0391974, 5, 6],
    ];
    const got = rotated(c, [x, x, x]);
    got.forEach((row, p) => row.forEach((v, i) => expect(v).toBeCloseTo(want[p][i], 5)));
  });

  it('adjacent pairs (2i, 2i + 1) with rotary_base 100, the whole head rotating', () => {
    const c = modelConfig({
      n_layers: 1, n_heads: 1, d_model: 4, d_head: 4, d_vocab: 4, n_ctx: 2,
      positional_embedding_type: 'rotary', rotary_adjacent_pairs: true, rotary_base: 100,
    });
    // Pairs (0, 1) at θ = p and (2, 3) at θ = p · 100^(-2/4) = p / 10.
    // p = 1: y0 = 1 cos 1 - 2 sin 1 = 0.5403023 - 1.6829420 = -1.1426397
    //        y1 = 2 cos 1 + 1 sin 1 = 1.0806046 + 0.8414710 = 1.9220756
    //        y2 = 3 cos .1 - 4 sin .1 = 2.9850125 - 0.3993337 = 2.5856788
    //        y3 = 4 cos .1 + 3 sin .1 = 3.9800167 + 0.2995002 = 4.2795169
    const got = rotated(c, [x.slice(0, 4), x.slice(0, 4)]);
    expect(got[0].map((v) => +v.toFixed(6))).toEqual([1, 2, 3, 4]);
    [-1.1426397, 1.9220756, 2.5856788, 4.2795169].forEach((v, i) => expect(got[1][i]).toBeCloseTo(v, 5));
  });
});

describe('activations, against their known values', () => {
  const at = (name: keyof typeof ACTIVATIONS, xs: number[]) => tf.tidy(() => Array.from(ACTIVATIONS[name](tf.tensor1d(xs)).dataSync()));

  it('gelu is the exact erf form x·Φ(x), not the tanh curve', () => {
    // Φ(1) = 0.8413447461, Φ(-2) = 0.0227501319, Φ(0.5) = 0.6914624613
    const got = at('gelu', [1, -2, 0.5]);
    [0.8413447461, -2 * 0.0227501319, 0.5 * 0.6914624613].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
    // The tanh curve differs from it by 1.5e-4 at 1: far outside float32 rounding.
    expect(Math.abs(got[0] - 0.8411919906)).toBeGreaterThan(1e-4);
  });

  it.each(['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'] as const)('%s is 0.5·x·(1 + tanh(√(2/π)(x + 0.044715 x³)))', (name) => {
    // x = 1: tanh(0.7978846 · 1.044715) = tanh(0.8335624) = 0.6823840 -> 0.5 · 1.6823840 = 0.8411920
    const got = at(name, [1, -2, 0.5]);
    [0.8411919906, -0.0454023059, 0.3457140098].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
  });

  it('silu is x·sigmoid(x), relu is max(x, 0)', () => {
    const silu = at('silu', [1, -2]);
    [1 / (1 + Math.exp(-1)), -2 / (1 + Math.exp(2))].forEach((v, i) => expect(silu[i]).toBeCloseTo(v, 6));
    expect(at('relu', [1, -2, 0])).toEqual([1, 0, 0]);
  });
});

describe('norms, against the definitions of METRICS.md §2', () => {
  // x = (1, 2, 3, 6): mean 3, deviations (-2, -1, 0, 3), biased variance 14/4 = 3.5, mean(x²) = 50/4 = 12.5
  const x = [1, 2, 3, 6];
  const w = [1, 2, 0.5, -1];
  const b = [0, 1, 0, 0.5];
  const normed = (kind: ModelConfig['normalization_type']) => {
    const c = modelConfig({ n_layers: 1, n_heads: 1, d_model: 4, d_head: 4, d_vocab: 4, n_ctx: 1, normalization_type: kind });
    return tf.tidy(() => Array.from(norm(c, { w: tf.tensor1d(w), b: tf.tensor1d(b) }, tf.tensor3d(x, [1, 1, 4])).dataSync()));
  };
  const ln = [-2, -1, 0, 3].map((d) => d / Math.sqrt(3.5 + 1e-5));
  const rms = x.map((v) => v / Math.sqrt(12.5 + 1e-5));

  it.each([
    ['LN', ln.map((v, i) => v * w[i] + b[i])],
    ['LNPre', ln],
    ['RMS', rms.map((v, i) => v * w[i])],
    ['RMSPre', rms],
    [null, x],
  ] as const)('%s', (kind, want) => {
    normed(kind).forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
  });
});

/** The llama fixture's K and V repeated to every query head on the host, as a model without grouping. */
function withRepeatedKv(weights: Weights, c: ModelConfig): { weights: Weights; config: ModelConfig } {
  const kv = c.n_key_value_heads!;
  const group = c.n_heads / kv;
  const out: Weights = new Map();
  for (const [name, t] of weights) {
    const m = /^blocks\.(\d+)\.attn\._(W_K|W_V|b_K|b_V)$/.exec(name);
    if (!m) {
      out.set(name, t);
      continue;
    }
    const perHead = t.data.length / kv;
    const data = new Float32Array(c.n_heads * perHead);
    for (let h = 0; h < c.n_heads; h++) data.set(t.data.subarray(Math.floor(h / group) * perHead, (Math.floor(h / group) + 1) * perHead), h * perHead);
    out.set(`blocks.${m[1]}.attn.${m[2]}`, { shape: [c.n_heads, ...t.shape.slice(1)], data });
  }
  return { weights: out, config: { ...c, n_key_value_heads: null } };
}

describe('grouped-query attention', () => {
  it('equals the same model with K and V repeated to every query head: patterns, logits and weight scores', () => {
    const fx = loadRealFixture('llama-gqa-bf16');
    const c = fx.checkpoint.config;
    expect(c.n_key_value_heads).toBe(2);
    expect(c.n_heads).toBe(4);
    const full = withRepeatedKv(fx.checkpoint.weights, c);
    const tokens = tokensOf(fx.promptSets[0].sequences, 4);
    const run = (weights: Weights, config: ModelConfig) => {
      const params = uploadParams(weights);
      try {
        const out = tf.tidy(() => {
          const { patterns, logits } = forward(params, config, tokens, { patternLayers: [0, 1], logits: true, inference: true });
          return { patterns: patterns.map((p) => p.dataSync()), logits: logits!.dataSync() };
        });
        const copying = copyingScores(params, { ...fx.checkpoint, config, weights });
        return { ...out, copying, composition: compositionScores(params, config).score };
      } finally {
        disposeParams(params);
      }
    };
    const grouped = run(fx.checkpoint.weights, c);
    const repeated = run(full.weights, full.config);
    tokens.dispose();
    grouped.patterns.forEach((p, l) => expect(maxAbsDiff(p, repeated.patterns[l])).toBeLessThanOrEqual(1e-6));
    expect(maxAbsDiff(grouped.logits, repeated.logits)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(grouped.copying, repeated.copying)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(grouped.composition, repeated.composition)).toBeLessThanOrEqual(1e-6);
    // Query heads 0 and 1 share key/value head 0 but have their own W_Q: their patterns differ.
    const pos = fx.promptSets[0].sequences[0].length;
    const plane = pos * pos; // one head's [qPos, kPos] of the first sequence
    expect(maxAbsDiff(grouped.patterns[0].subarray(0, plane), grouped.patterns[0].subarray(plane, 2 * plane))).toBeGreaterThan(1e-3);
  });
});

/** The parallel and the sequential block written out from the components, layer by layer. */
function byHand(params: Params, c: ModelConfig, tokens: tf.Tensor2D, parallel: boolean): Float32Array {
  return tf.tidy(() => {
    const pos = tokens.shape[1];
    const at: AttentionContext = { mask: causalMask(pos), rotation: rotation(c, pos), matMul3d: (a, b) => tf.matMul(a, b), sideBySide: headsSideBySide };
    const ln = (prefix: string) => ({ w: params[`${prefix}.w`], b: params[`${prefix}.b`] });
    let x = embed(c, params['embed.W_E'], tokens, undefined); // rotary: no W_pos
    for (let l = 0; l < c.n_layers; l++) {
      const p = `blocks.${l}`;
      const w: AttentionWeights = {
        W_Q: params[`${p}.attn.W_Q`], b_Q: params[`${p}.attn.b_Q`], W_K: params[`${p}.attn.W_K`], b_K: params[`${p}.attn.b_K`],
        W_V: params[`${p}.attn.W_V`], b_V: params[`${p}.attn.b_V`], W_O: params[`${p}.attn.W_O`], b_O: params[`${p}.attn.b_O`],
      };
      const mlpOf = (h: tf.Tensor3D) =>
        mlp({ W_in: params[`${p}.mlp.W_in`], b_in: params[`${p}.mlp.b_in`], W_out: params[`${p}.mlp.W_out`], b_out: params[`${p}.mlp.b_out`] }, c, norm(c, ln(`${p}.ln2`), h));
      const xn = norm(c, ln(`${p}.ln1`), x);
      const a = attentionOutput(w, c, at, attentionPattern(w, c, at, l, xn), xn);
      if (parallel) {
        x = tf.add(tf.add(x, a), mlpOf(x)); // x + attn(ln1 x) + mlp(ln2 x)
      } else {
        const mid = tf.add(x, a) as tf.Tensor3D; // m = x + attn(ln1 x)
        x = tf.add(mid, mlpOf(mid)); // m + mlp(ln2 m)
      }
    }
    return unembed(params['unembed.W_U'], params['unembed.b_U'], norm(c, ln('ln_final'), x)).dataSync() as Float32Array;
  });
}

describe('parallel blocks', () => {
  it('compute x + attn(ln1 x) + mlp(ln2 x), which differs from the sequential block', () => {
    const fx = loadRealFixture('pythia-like-neox');
    const c = fx.checkpoint.config;
    expect(c.parallel_attn_mlp).toBe(true);
    const sequential: ModelConfig = { ...c, parallel_attn_mlp: false };
    const params = uploadParams(fx.checkpoint.weights);
    const tokens = tokensOf(fx.promptSets[0].sequences, 3);
    try {
      const logitsOf = (config: ModelConfig) => tf.tidy(() => forward(params, config, tokens, { logits: true, inference: true }).logits!.dataSync());
      const [parallelLogits, sequentialLogits] = [logitsOf(c), logitsOf(sequential)];
      expect(maxAbsDiff(parallelLogits, byHand(params, c, tokens, true))).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(sequentialLogits, byHand(params, c, tokens, false))).toBeLessThanOrEqual(1e-5);
      // The MLP reads the residual before attention in one and after it in the other.
      expect(maxAbsDiff(parallelLogits, sequentialLogits)).toBeGreaterThan(1e-2);
    } finally {
      tokens.dispose();
      disposeParams(params);
    }
  });
});

describe('a pass that needs only a pattern', () => {
  it('runs the earlier layers whole, MLPs included, and reads nothing of the requested layer past its pattern', () => {
    const fx = loadRealFixture('gpt2-small-hf');
    const c = fx.checkpoint.config;
    const tokens = tokensOf(fx.promptSets[0].sequences, 3);
    const unread = /^(blocks\.1\.(attn\.(W_V|b_V|W_O|b_O)|ln2\..|mlp\..*)|ln_final\..|unembed\..*)$/;
    const all = uploadParams(fx.checkpoint.weights);
    const patternOnly = uploadParams(fx.checkpoint.weights, (name) => !unread.test(name));
    const noMlp0 = uploadParams(new Map([...fx.checkpoint.weights].map(([n, t]) => [n, n === 'blocks.0.mlp.W_out' ? { ...t, data: new Float32Array(t.data.length) } : t])));
    try {
      expect(Object.keys(all).length - Object.keys(patternOnly).length).toBe(14);
      const layer1 = (params: Params, logits: boolean) =>
        tf.tidy(() => forward(params, c, tokens, { patternLayers: [1], logits, inference: true }).patterns[0].dataSync());
      const whole = layer1(all, true);
      expect(maxAbsDiff(layer1(patternOnly, false), whole)).toBeLessThanOrEqual(1e-7);
      // Layer 0's MLP output reaches layer 1's queries and keys.
      expect(maxAbsDiff(layer1(noMlp0, false), whole)).toBeGreaterThan(1e-3);
    } finally {
      tokens.dispose();
      for (const p of [all, patternOnly, noMlp0]) disposeParams(p);
    }
  });
});
