/**
 * The unembedding (METRICS.md §2): logits = xf W_U + b_U, where xf is the residual after
 * the final norm. A tied W_U (GPT-2, nanoGPT) is W_Eᵀ stored again, so nothing here
 * knows about tying.
 */
import * as tf from '@tensorflow/tfjs-core';

/** xf: [batch, pos, d_model], W_U: [d_model, d_vocab], b_U: [d_vocab] -> logits: [batch, pos, d_vocab] */
export function unembed(wU: tf.Tensor, bU: tf.Tensor, xf: tf.Tensor3D): tf.Tensor3D {
  const [batch, pos, dModel] = xf.shape;
  const flat = tf.add(tf.matMul(tf.reshape(xf, [batch * pos, dModel]) as tf.Tensor2D, wU as tf.Tensor2D), bU); // (B·T, dm) x (dm, V) + (V)
  return tf.reshape(flat, [batch, pos, (wU as tf.Tensor2D).shape[1]]) as tf.Tensor3D; // (B·T, V) -> (B, T, V)
}
