/**
 * The MLP of a block (METRICS.md §2):
 *
 *   mlp(h) = act(h W_in + b_in) W_out + b_out
 *   gated:   (act(h W_gate) ⊙ (h W_in + b_in)) W_out + b_out
 *
 * Every product is one [batch·pos, ·] × [·, ·] 2-D matMul, the shape the wasm backend
 * hands to XNNPACK. bench/formulations.ts, GPT-2 small's [808, 768] × [768, 3072] (batch
 * 8 × 101 tokens), in CPU time on the shared machine: 273 ms as a 2-D product; 29× that
 * as a batched [batch, pos, d_model] × [batch, d_model, d_mlp] product and 10× with a
 * transposed operand; tf.fused.matMul's bias no faster than a separate add. For gated
 * MLPs, W_gate and W_in as two products (491 ms) beat one product of the two side by side
 * and a split (584 ms).
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

/**
 * The tanh-approximated GELU 0.5 x (1 + tanh(k x (1 + 0.044715 x²))), computed as the
 * identical x · sigmoid(2 k x (1 + 0.044715 x²)) (0.5 (1 + tanh z) = sigmoid(2z)): the
 * wasm backend runs sigmoid vectorised and tanh element by element, so this form takes
 * 18 ms on GPT-2 small's [808, 3072] hidden layer against 78 ms written with tanh
 * (bench/formulations.ts); the two agree to 5e-7.
 */
function geluTanh(k: number): (x: tf.Tensor) => tf.Tensor {
  return (x) => tf.mul(x, tf.sigmoid(tf.mul(x, tf.add(2 * k, tf.mul(tf.square(x), 2 * k * 0.044715)))));
}

/**
 * The activations of METRICS.md §1, elementwise, as TransformerLens defines them.
 * `gelu_new` (= `gelu_pytorch_tanh`) is GPT-2's tanh curve with k = √(2/π); `gelu_fast`
 * the same curve with TL's rounded constant k = 0.7978845608; `gelu` is the exact erf
 * form x Φ(x) (PyTorch's default GELU, used by GPT-NeoX and nanoGPT).
 */
export const ACTIVATIONS: Record<ActFn, (x: tf.Tensor) => tf.Tensor> = {
  gelu_new: geluTanh(SQRT_2_OVER_PI),
  gelu_pytorch_tanh: geluTanh(SQRT_2_OVER_PI),
  gelu_fast: geluTanh(0.7978845608),
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
