/**
 * Causal self-attention (METRICS.md §2), in two halves so that a pass which needs only a
 * layer's pattern stops after the first:
 *
 *   pattern = softmax(q kᵀ / s + causal mask)        q = qk_in W_Q + b_Q, k = qk_in W_K + b_K
 *   out     = (pattern v) W_O + b_O, summed over heads     v = xn W_V + b_V
 *
 * qk_in is the normalised residual, plus W_pos with shortformer positions; q and k are
 * rotated with rotary positions; s = √d_head, times (layer + 1) with
 * scale_attn_by_inverse_layer_idx.
 *
 * Per-head weights are laid side by side (`[d_model, head·d_head]`), so each projection
 * is one 2-D matMul, the formulation the wasm backend runs fastest. The per-(sequence,
 * head) products go through `AttentionContext.matMul3d`, which the forward pass chooses
 * (pieces.ts on wasm inference, the differentiable batched matMul in training).
 *
 * Grouped-query attention: query head h reads key/value head h // group, group =
 * n_heads / n_key_value_heads. With queries laid out [batch, head, pos, d_head], the
 * `group` query heads of one key/value head are adjacent, so reshaping them to
 * [batch·kv_head, group·pos, d_head] stacks them into one operand: each key/value head
 * then takes part in one product per sequence, no key or value is ever repeated, and
 * without grouping (group 1) the shapes are those of plain multi-head attention.
 * bench/formulations.ts, q·kᵀ of 12 query heads on 3 key/value heads (d_model 768,
 * batch 8 × 101 tokens), CPU time: 34 ms grouped, 63 ms repeating the projected keys to
 * every query head, 100 ms repeating W_K before projecting; with the differentiable
 * batched matMul of training 94, 127 and 174 ms.
 */
import * as tf from '@tensorflow/tfjs-core';
import { kvHeads, type ModelConfig } from './config.ts';
import { rotate, type Rotation } from './rotary.ts';

/** One layer's attention weights, TL names; K and V per key/value head (n_heads without grouping). */
export interface AttentionWeights {
  W_Q: tf.Tensor; // [head, d_model, d_head]
  b_Q: tf.Tensor; // [head, d_head]
  W_K: tf.Tensor; // [kv_head, d_model, d_head]
  b_K: tf.Tensor; // [kv_head, d_head]
  W_V: tf.Tensor; // [kv_head, d_model, d_head]
  b_V: tf.Tensor; // [kv_head, d_head]
  W_O: tf.Tensor; // [head, d_head, d_model]
  b_O: tf.Tensor; // [d_model]
}

/** a: [n, m, k], b: [n, k, p] -> [n, m, p], piece i = a[i] b[i] */
export type MatMul3d = (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;

/** What every layer's attention shares within one pass. */
export interface AttentionShared {
  /** Additive causal mask: [qPos, kPos]. */
  mask: tf.Tensor2D;
  /** W_pos[0:pos], [pos, d_model], with shortformer positions. */
  positions?: tf.Tensor2D;
  /** With rotary positions. */
  rotation?: Rotation;
}

/** The shared inputs, and how the pass multiplies: the forward pass chooses (forward.ts). */
export interface AttentionContext extends AttentionShared {
  matMul3d: MatMul3d;
  /** `headsSideBySide`, or a copy of its result kept for the batches that follow (inference). */
  sideBySide: (w: tf.Tensor) => tf.Tensor2D;
}

/** Additive causal mask: 0 on and below the diagonal, -1e9 above. [qPos, kPos] */
export function causalMask(pos: number): tf.Tensor2D {
  const lower = tf.linalg.bandPart(tf.ones([pos, pos]), -1, 0); // (T, T): 1 where kPos ≤ qPos
  return tf.mul(tf.sub(1, lower), -1e9) as tf.Tensor2D; // (T, T)
}

/** [head, d_model, d_head] -> [d_model, head·d_head] */
export function headsSideBySide(w: tf.Tensor): tf.Tensor2D {
  const [nHeads, dModel, dHead] = w.shape;
  return tf.reshape(tf.transpose(w, [1, 0, 2]), [dModel, nHeads * dHead]); // (H, dm, dh) -> (dm, H, dh) -> (dm, H·dh)
}

/**
 * One projection for all heads.
 * x2d: [batch·pos, d_model], W: [head, d_model, d_head], b: [head, d_head] -> [batch, head, pos, d_head]
 */
function project(at: AttentionContext, x2d: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor, batch: number, pos: number): tf.Tensor4D {
  const [nHeads, , dHead] = w.shape;
  const flat = tf.add(tf.matMul(x2d, at.sideBySide(w)), tf.reshape(b, [nHeads * dHead])); // (B·T, dm) x (dm, H·dh)
  return tf.transpose(tf.reshape(flat, [batch, pos, nHeads, dHead]), [0, 2, 1, 3]) as tf.Tensor4D; // (B, T, H, dh) -> (B, H, T, dh)
}

/** The attention scale s of layer l. */
function scaleOf(c: ModelConfig, layer: number): number {
  return Math.sqrt(c.d_head) * (c.scale_attn_by_inverse_layer_idx ? layer + 1 : 1);
}

/**
 * xn: [batch, pos, d_model] (the normalised residual) -> pattern: [batch, head, qPos, kPos]
 */
export function attentionPattern(w: AttentionWeights, c: ModelConfig, at: AttentionContext, layer: number, xn: tf.Tensor3D): tf.Tensor4D {
  const [batch, pos] = xn.shape;
  const { n_heads: nHeads, d_head: dHead } = c;
  const kv = kvHeads(c);
  const group = nHeads / kv;
  const qkIn = c.positional_embedding_type === 'shortformer' ? tf.add(xn, at.positions!) : xn; // (B, T, dm) + (T, dm)
  const qkIn2d = tf.reshape(qkIn, [batch * pos, c.d_model]) as tf.Tensor2D;
  const withPositions = (x: tf.Tensor4D) => (at.rotation ? rotate(at.rotation, x) : x);
  const q = tf.reshape(withPositions(project(at, qkIn2d, w.W_Q, w.b_Q, batch, pos)), [batch * kv, group * pos, dHead]) as tf.Tensor3D; // (B, H, T, dh) -> (B·kv, g·T, dh)
  const k = withPositions(project(at, qkIn2d, w.W_K, w.b_K, batch, pos)); // (B, kv, T, dh)
  const kT = tf.reshape(tf.transpose(k, [0, 1, 3, 2]), [batch * kv, dHead, pos]) as tf.Tensor3D; // (B·kv, dh, T)
  const qk = at.matMul3d(q, kT); // (B·kv, g·T, dh) x (B·kv, dh, T) -> (B·kv, g·T, T)
  const scores = tf.add(tf.div(tf.reshape(qk, [batch, nHeads, pos, pos]), scaleOf(c, layer)), at.mask); // (B, H, T, T) + (T, T)
  return tf.softmax(scores) as tf.Tensor4D; // (B, H, T, T)
}

/**
 * The heads' output, summed: pattern: [batch, head, qPos, kPos], xn: [batch, pos, d_model] -> [batch, pos, d_model]
 */
export function attentionOutput(w: AttentionWeights, c: ModelConfig, at: AttentionContext, pattern: tf.Tensor4D, xn: tf.Tensor3D): tf.Tensor3D {
  const [batch, pos] = xn.shape;
  const { n_heads: nHeads, d_head: dHead } = c;
  const kv = kvHeads(c);
  const group = nHeads / kv;
  const xn2d = tf.reshape(xn, [batch * pos, c.d_model]) as tf.Tensor2D;
  const v = project(at, xn2d, w.W_V, w.b_V, batch, pos); // (B, kv, T, dh)
  const z = at.matMul3d(
    tf.reshape(pattern, [batch * kv, group * pos, pos]) as tf.Tensor3D, // (B, H, T, T) -> (B·kv, g·T, T)
    tf.reshape(v, [batch * kv, pos, dHead]) as tf.Tensor3D, // (B·kv, T, dh)
  ); // -> (B·kv, g·T, dh)
  const zFlat = tf.reshape(tf.transpose(tf.reshape(z, [batch, nHeads, pos, dHead]), [0, 2, 1, 3]), [batch * pos, nHeads * dHead]); // (B, H, T, dh) -> (B, T, H, dh) -> (B·T, H·dh)
  const wO = tf.reshape(w.W_O, [nHeads * dHead, c.d_model]); // (H·dh, dm): sums over heads
  const out = tf.add(tf.matMul(zFlat, wO), w.b_O); // (B·T, H·dh) x (H·dh, dm) + (dm)
  return tf.reshape(out, [batch, pos, c.d_model]) as tf.Tensor3D; // (B, T, dm)
}
