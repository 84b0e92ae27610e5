/**
 * Initial weights of an attention-only transformer, as in TRAINING-NOTES (a recipe seen
 * to form an induction head): W_E, W_pos ~ N(0, 0.1²); W_Q, W_K, W_V ~ N(0, 1/d_model);
 * W_O ~ N(0, 1/(n_heads·d_head)); W_U ~ N(0, 1/d_model); biases 0; LN gains 1.
 * The variance of each matrix is 1/fan_in, so every projection starts with unit-scale
 * outputs from unit-scale (normalised) inputs.
 */
import type { Weights } from '../checkpoint/checkpoint.ts';
import { expectedShapes, type ModelConfig } from '../model/config.ts';
import { normal, stream } from './random.ts';

/** Standard deviation of each weight kind; names not listed start at 0 (biases) or 1 (LN gains). */
function stdOf(name: string, c: ModelConfig): number | null {
  if (name === 'embed.W_E' || name === 'pos_embed.W_pos') return 0.1;
  if (/\.attn\.W_[QKV]$/.test(name) || name === 'unembed.W_U') return 1 / Math.sqrt(c.d_model);
  if (/\.attn\.W_O$/.test(name)) return 1 / Math.sqrt(c.n_heads * c.d_head);
  return null;
}

/** Deterministic in (config, seed): each tensor draws from its own stream named by its TL key. */
export function initWeights(c: ModelConfig, seed: number): Weights {
  const weights: Weights = new Map();
  for (const [name, shape] of expectedShapes(c)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const std = stdOf(name, c);
    if (std !== null) {
      const rng = stream(seed, `init:${name}`);
      for (let i = 0; i < data.length; i++) data[i] = std * normal(rng);
    } else if (/(^|\.)ln\w*\.w$/.test(name)) {
      data.fill(1);
    }
    weights.set(name, { shape, data });
  }
  return weights;
}
