/**
 * Initial weights, as in TRAINING-NOTES (the recipe seen to form an induction head):
 *
 *   W_E, W_pos                  ~ N(0, 0.1²)
 *   W_Q, W_K, W_V (_W_K, _W_V)  ~ N(0, 1/d_model)
 *   W_O                         ~ N(0, 1/(n_heads·d_head))
 *   W_in, W_gate                ~ N(0, 1/d_model)
 *   W_out                       ~ N(0, 1/d_mlp)
 *   W_U                         ~ N(0, 1/d_model)
 *   biases 0, norm gains 1
 *
 * Every matrix has variance 1/fan_in, so each projection starts with unit-scale outputs
 * from unit-scale (normalised) inputs; the embeddings start small, so the residual
 * stream is at first dominated by what the layers write.
 */
import type { Weights } from '../checkpoint/checkpoint.ts';
import { expectedShapes, type ModelConfig } from '../model/config.ts';
import { normal, stream } from './random.ts';

/** How one tensor starts: drawn from N(0, std²), or filled with a constant. */
type Init = { std: number } | { fill: number };

function initOf(name: string, c: ModelConfig): Init {
  if (name === 'embed.W_E' || name === 'pos_embed.W_pos') return { std: 0.1 };
  if (/\.attn\._?W_[QKV]$/.test(name) || /\.mlp\.W_(in|gate)$/.test(name) || name === 'unembed.W_U') return { std: 1 / Math.sqrt(c.d_model) };
  if (/\.attn\.W_O$/.test(name)) return { std: 1 / Math.sqrt(c.n_heads * c.d_head) };
  if (/\.mlp\.W_out$/.test(name)) return { std: 1 / Math.sqrt(c.d_mlp!) };
  if (/(^|\.)ln\w*\.w$/.test(name)) return { fill: 1 };
  if (/(^|\.)ln\w*\.b$/.test(name) || /\._?b_\w+$/.test(name)) return { fill: 0 };
  // A weight matrix left at a constant would train as a degenerate model, not fail.
  throw new Error(`no initialisation rule for tensor ${name}`);
}

/** Deterministic in (config, seed): each tensor draws from its own stream named by its TL key. */
export function initWeights(c: ModelConfig, seed: number): Weights {
  const weights: Weights = new Map();
  for (const [name, shape] of expectedShapes(c)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const init = initOf(name, c);
    if ('std' in init) {
      const rng = stream(seed, `init:${name}`);
      for (let i = 0; i < data.length; i++) data[i] = init.std * normal(rng);
    } else if (init.fill !== 0) {
      data.fill(init.fill);
    }
    weights.set(name, { shape, data });
  }
  return weights;
}
