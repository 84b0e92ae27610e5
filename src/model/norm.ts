/**
 * The normalisation in front of attention, the MLP and the unembedding (METRICS.md §2),
 * as TransformerLens defines its five kinds:
 *
 *   LN:     ((x - mean) / sqrt(var + eps)) * w + b     (var: biased, over d_model)
 *   LNPre:  the same without w and b
 *   RMS:    x / sqrt(mean(x²) + eps) * w
 *   RMSPre: the same without w
 *   null:   x
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from './config.ts';

/** A norm's gain `w` and bias `b`, [d_model] each; absent where the kind has none. */
export interface NormWeights {
  w?: tf.Tensor;
  b?: tf.Tensor;
}

/** x: [batch, pos, d_model] -> [batch, pos, d_model] */
export function norm(c: ModelConfig, n: NormWeights, x: tf.Tensor3D): tf.Tensor3D {
  switch (c.normalization_type) {
    case null:
      return x;
    case 'LN':
    case 'LNPre': {
      const { mean, variance } = tf.moments(x, -1, true); // (B, T, 1): biased variance over d_model
      const scaled = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, c.eps))) as tf.Tensor3D; // (B, T, dm) - (B, T, 1) -> (B, T, dm)
      if (c.normalization_type === 'LNPre') return scaled;
      return tf.add(tf.mul(scaled, n.w!), n.b!) as tf.Tensor3D; // (B, T, dm) * (dm) + (dm)
    }
    case 'RMS':
    case 'RMSPre': {
      const scaled = tf.div(x, tf.sqrt(tf.add(tf.mean(tf.square(x), -1, true), c.eps))) as tf.Tensor3D; // (B, T, dm) / (B, T, 1)
      if (c.normalization_type === 'RMSPre') return scaled;
      return tf.mul(scaled, n.w!) as tf.Tensor3D; // (B, T, dm) * (dm)
    }
  }
}
