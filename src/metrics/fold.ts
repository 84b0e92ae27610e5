/**
 * Folded reading weights (METRICS.md §5): the weights that read from the residual stream
 * (W_Q, W_K, W_V after a block's ln1; W_U after ln_final) seen through their norm, as
 * TransformerLens `fold_ln` plus centering gives them:
 *
 *   R(W) = C diag(g) W
 *
 * g is the norm's gain (`ln1.w` / `ln_final.w` for LN and RMS, all ones for LNPre and
 * RMSPre); C = I - 11ᵀ/d_model for LN and LNPre, which subtract the mean, and C = I for
 * RMS and RMSPre, which do not; with no norm R(W) = W. Norm biases and the normalising
 * scale are left out on purpose: they shift or rescale a head's input but do not change
 * which directions it reads, which is all the weight-based scores look at.
 *
 * The circuits these weights enter (OV, QK) are TransformerLens's: MLPs, rotary
 * rotations and the attention scale are not part of them. With grouped-query attention
 * every query head is given its key/value head's W_K and W_V (`queryHeadWeight`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { kvHeads, type ModelConfig } from '../model/config.ts';
import type { Params } from '../model/forward.ts';

/** Which norm sits in front of the weight: layer l's `ln1`, or `ln_final` before the unembedding. */
export type NormSite = number | 'final';

/**
 * R(W) for a weight whose second-to-last axis is d_model:
 * w: [..., d_model, n] -> [..., d_model, n]   (W_Q/W_K/W_V: [head, d_model, d_head]; W_U: [d_model, d_vocab])
 *
 * Returns `w` itself when the norm changes nothing it reads (none, RMSPre). Call inside `tf.tidy`.
 */
export function foldReading(params: Params, c: ModelConfig, site: NormSite, w: tf.Tensor): tf.Tensor {
  const kind = c.normalization_type;
  if (kind === null || kind === 'RMSPre') return w;
  let scaled = w;
  if (kind === 'LN' || kind === 'RMS') {
    const gain = params[site === 'final' ? 'ln_final.w' : `blocks.${site}.ln1.w`]; // (dm)
    scaled = tf.mul(w, tf.reshape(gain, [c.d_model, 1])); // diag(g) W: (..., dm, n) * (dm, 1)
  }
  if (kind === 'RMS') return scaled;
  // C·X subtracts from every row the mean over the d_model rows.
  return tf.sub(scaled, tf.mean(scaled, -2, true)); // (..., dm, n) - (..., 1, n)
}

/**
 * Layer l's W_Q, W_K or W_V as each query head reads with it: [head, d_model, d_head].
 * With grouped-query attention K and V are stored per key/value head
 * (`attn._W_K`, [kv_head, d_model, d_head]) and query head h reads head h // group, so
 * each is repeated `group` times; otherwise the parameter itself is returned. Call inside `tf.tidy`.
 */
export function queryHeadWeight(params: Params, c: ModelConfig, l: number, name: 'W_Q' | 'W_K' | 'W_V'): tf.Tensor3D {
  if (name === 'W_Q' || c.n_key_value_heads === null) return params[`blocks.${l}.attn.${name}`] as tf.Tensor3D;
  const w = params[`blocks.${l}.attn._${name}`]; // (kv, dm, dh)
  const kv = kvHeads(c);
  const group = c.n_heads / kv;
  const cells = c.d_model * c.d_head;
  // (kv, 1, dm·dh) tiled to (kv, g, dm·dh): head j·g + i is a copy of kv head j.
  return tf.reshape(tf.tile(tf.reshape(w, [kv, 1, cells]), [1, group, 1]), [c.n_heads, c.d_model, c.d_head]);
}

/** R(W) of layer l's W_Q, W_K or W_V per query head: [head, d_model, d_head]. Call inside `tf.tidy`. */
export function foldedHeadWeight(params: Params, c: ModelConfig, l: number, name: 'W_Q' | 'W_K' | 'W_V'): tf.Tensor3D {
  return foldReading(params, c, l, queryHeadWeight(params, c, l, name)) as tf.Tensor3D;
}
