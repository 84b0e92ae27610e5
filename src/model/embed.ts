/**
 * The residual stream's start (METRICS.md §2): token embeddings, plus the learned
 * positional embeddings when positions are `standard`. Shortformer positions reach only
 * attention's queries and keys (attention.ts), rotary positions rotate them (rotary.ts),
 * so neither adds anything here.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from './config.ts';

/** W_pos[0:pos]: [pos, d_model]. Only standard and shortformer models have W_pos. */
export function positionRows(wPos: tf.Tensor, c: ModelConfig, pos: number): tf.Tensor2D {
  return tf.slice(wPos, [0, 0], [pos, c.d_model]) as tf.Tensor2D; // (n_ctx, dm) -> (T, dm)
}

/**
 * tokens: [batch, pos] int32 -> resid: [batch, pos, d_model]
 *
 * `tokenEmbeddings` is W_E[tokens] when the caller looked it up itself (then `wE` is not
 * read); `positions` is W_pos[0:pos], read with standard positions only.
 */
export function embed(
  c: ModelConfig,
  wE: tf.Tensor | undefined,
  tokens: tf.Tensor2D,
  positions: tf.Tensor2D | undefined,
  tokenEmbeddings?: tf.Tensor3D,
): tf.Tensor3D {
  const x = tokenEmbeddings ?? (tf.gather(wE!, tokens) as tf.Tensor3D); // (V, dm)[(B, T)] -> (B, T, dm)
  if (c.positional_embedding_type !== 'standard') return x;
  return tf.add(x, positions!) as tf.Tensor3D; // (B, T, dm) + (T, dm)
}
