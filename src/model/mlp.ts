/**
 * The MLP of a block (METRICS.md §2):
 *
 *   mlp(h) = act(h W_in + b_in) W_out + b_out
 *   gated:   (act(h W_gate) ⊙ (h W_in + b_in)) W_out + b_out
 *
 * Every product is one [batch·pos, ·] × [·, ·] 2-D matMul, the shape the wasm backend
 * hands to XNNPACK; bench/formulations.ts measured the alternatives (batched or
 * transposed operands, a fused bias, one concatenated gate-and-input product), see the
 * note at `mlp`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ActFn, ModelConfig } from './config.ts';

/** One layer's MLP weights, TL names. */
export interface MlpWeights {
  W_in: tf.Tensor; // [d_model, d_mlp]
  b_in: tf.Tensor; // [d_mlp]
  /** [d_model, d_mlp], gated MLPs only. */
  W_gate?: tf.Tensor;
  W_out: tf.Tensor; // [d_mlp, d_model]
  b_out: tf.Tensor; // [d_model]
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GPT-2's tanh approximation: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))). */
function geluTanh(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.square(x), x), 0.044715)), SQRT_2_OVER_PI);
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
}

/**
 * The activations of METRICS.md §1, elementwise, as TransformerLens writes them.
 * `gelu` is the exact erf form (PyTorch's default GELU, used by GPT-NeoX and nanoGPT);
 * `gelu_fast` is the same tanh curve as `gelu_new` with its constants folded
 * (0.5 x (1 + tanh(0.7978845608 x (1 + 0.044715 x²)))), `gelu_pytorch_tanh` is `gelu_new`.
 */
export const ACTIVATIONS: Record<ActFn, (x: tf.Tensor) => tf.Tensor> = {
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  gelu_fast: (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(tf.mul(x, 0.7978845608), tf.add(1, tf.mul(tf.square(x), 0.044715)))))),
  gelu: (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))),
  relu: (x) => tf.relu(x),
  silu: (x) => tf.mul(x, tf.sigmoid(x)),
};

/** x: [batch, pos, d_model] (the normalised residual) -> [batch, pos, d_model] */
export function mlp(w: MlpWeights, c: ModelConfig, x: tf.Tensor3D): tf.Tensor3D {
  const [batch, pos, dModel] = x.shape;
  const act = ACTIVATIONS[c.act_fn!];
  const x2d = tf.reshape(x, [batch * pos, dModel]) as tf.Tensor2D;
  const pre = tf.add(tf.matMul(x2d, w.W_in as tf.Tensor2D), w.b_in); // (B·T, dm) x (dm, d_mlp) + (d_mlp)
  const hidden = c.gated_mlp ? tf.mul(act(tf.matMul(x2d, w.W_gate as tf.Tensor2D)), pre) : act(pre); // (B·T, d_mlp)
  const out = tf.add(tf.matMul(hidden as tf.Tensor2D, w.W_out as tf.Tensor2D), w.b_out); // (B·T, d_mlp) x (d_mlp, dm) + (dm)
  return tf.reshape(out, [batch, pos, dModel]) as tf.Tensor3D; // (B, T, dm)
}
