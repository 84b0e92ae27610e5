/**
 * Folded reading weights (METRICS.md §5): the weights that read from the residual stream
 * (W_Q, W_K, W_V after a block's ln1; W_U after ln_final) seen through their norm, as
 * TransformerLens `fold_ln` plus centering gives them:
 *
 *   R(W) = C diag(g) W,   C = I - 11ᵀ/d_model
 *
 * g is the norm's gain (`ln1.w` / `ln_final.w` for LN, all ones for LNPre); with no norm
 * R(W) = W. Norm biases and the normalising scale are left out on purpose: they shift or
 * rescale a head's input but do not change which directions it reads, which is all the
 * weight-based scores look at.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../model/config.ts';
import type { Params } from '../model/forward.ts';

/** Which norm sits in front of the weight: layer l's `ln1`, or `ln_final` before the unembedding. */
export type NormSite = number | 'final';

/**
 * R(W) for a weight whose second-to-last axis is d_model:
 * w: [..., d_model, n] -> [..., d_model, n]   (W_Q/W_K/W_V: [head, d_model, d_head]; W_U: [d_model, d_vocab])
 *
 * Returns `w` itself when the model has no norm. Call inside `tf.tidy`.
 */
export function foldReading(params: Params, c: ModelConfig, site: NormSite, w: tf.Tensor): tf.Tensor {
  if (c.normalization_type === null) return w;
  let scaled = w;
  if (c.normalization_type === 'LN') {
    const gain = params[site === 'final' ? 'ln_final.w' : `blocks.${site}.ln1.w`]; // (dm)
    scaled = tf.mul(w, tf.reshape(gain, [c.d_model, 1])); // diag(g) W: (..., dm, n) * (dm, 1)
  }
  // C·X subtracts from every row the mean over the d_model rows.
  return tf.sub(scaled, tf.mean(scaled, -2, true)); // (..., dm, n) - (..., 1, n)
}
