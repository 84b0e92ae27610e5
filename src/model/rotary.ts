/**
 * Rotary positions (Su et al. 2021; METRICS.md §2): queries and keys are rotated, per
 * head and position p, in pairs of dimensions by the angles
 *
 *   θ_i = p · rotary_base^(-2i / rotary_dim),   i < n = rotary_dim / 2
 *   y[a] = x[a] cos θ_i - x[b] sin θ_i,   y[b] = x[b] cos θ_i + x[a] sin θ_i
 *
 * with the pairs (a, b) = (i, i + n) (GPT-NeoX's and TransformerLens's rotate-half) or
 * (2i, 2i + 1) (`rotary_adjacent_pairs`, GPT-J's rotate-every-two); dimensions from
 * rotary_dim on pass through unchanged.
 *
 * Formulation: y = x ⊙ cos + (x R) ⊙ sin, where cos and sin are laid out over all d_head
 * dimensions (1 and 0 past rotary_dim) and R is the fixed signed pair swap,
 * (x R)[a] = -x[b], (x R)[b] = x[a]. Both pair layouts and a partial rotary_dim are then
 * the same three ops, and x R is one untransposed 2-D matMul, the product the wasm backend
 * runs fast. bench/formulations.ts, on Pythia-160M's queries (batch 8 × 101 tokens, 12
 * heads × 64, rotary_dim 16), CPU time: 6.2 ms this way, 12.7 ms slicing the halves
 * apart and concatenating them back (how TransformerLens and HuggingFace write it), 48 ms
 * folding R into the projection (x (W R) is a second full projection); with the whole
 * head rotating 5.7, 10.5 and 44 ms. Whether cos and sin broadcast over [batch, head,
 * pos, d_head] after the heads are split out or over [batch, pos, head, d_head] before,
 * or are tiled to full size, made no difference.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from './config.ts';

/** What rotating a pass's queries and keys needs, made once per pass. */
export interface Rotation {
  /** cos θ and sin θ per position and dimension: [pos, d_head] (1 and 0 past rotary_dim). */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /** R: [d_head, d_head], the signed pair swap. */
  swap: tf.Tensor2D;
}

/** The rotated pairs (a, b) of one head's dimensions, i < rotary_dim / 2. */
function pairs(c: ModelConfig): [number, number][] {
  const n = c.rotary_dim! / 2;
  return Array.from({ length: n }, (_, i) => (c.rotary_adjacent_pairs ? [2 * i, 2 * i + 1] : [i, i + n]));
}

/** The angles in float64 on the host (as TransformerLens computes them), stored as float32. */
export function rotation(c: ModelConfig, pos: number): Rotation {
  const d = c.d_head;
  const cos = new Float32Array(pos * d).fill(1);
  const sin = new Float32Array(pos * d);
  const swap = new Float32Array(d * d);
  pairs(c).forEach(([a, b], i) => {
    const frequency = c.rotary_base ** (-(2 * i) / c.rotary_dim!);
    for (let p = 0; p < pos; p++) {
      const theta = p * frequency;
      cos[p * d + a] = cos[p * d + b] = Math.cos(theta);
      sin[p * d + a] = sin[p * d + b] = Math.sin(theta);
    }
    swap[b * d + a] = -1; // column a of x R reads -x[b]
    swap[a * d + b] = 1; // column b reads x[a]
  });
  return { cos: tf.tensor2d(cos, [pos, d]), sin: tf.tensor2d(sin, [pos, d]), swap: tf.tensor2d(swap, [d, d]) };
}

/** x: [batch, head, pos, d_head] -> [batch, head, pos, d_head] */
export function rotate(r: Rotation, x: tf.Tensor4D): tf.Tensor4D {
  const [batch, heads, pos, d] = x.shape;
  const swapped = tf.reshape(tf.matMul(tf.reshape(x, [batch * heads * pos, d]), r.swap), x.shape); // (B·H·T, dh) x (dh, dh)
  return tf.add(tf.mul(x, r.cos), tf.mul(swapped, r.sin)) as tf.Tensor4D; // (B, H, T, dh) ⊙ (T, dh)
}
