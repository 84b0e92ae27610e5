/**
 * Stacks of small independent matrix products (one per sequence and head, or per head),
 * computed the way each backend runs them fastest.
 *
 * Why not `tf.matMul` on the stack: tfjs-backend-wasm hands a matMul to XNNPACK only
 * when both operands are single untransposed matrices; anything batched or transposed
 * runs a scalar loop at 1–2 GFLOP/s, against 20–30 GFLOP/s for the single product.
 * Cutting the stack apart on the device does not help either: the wasm slice kernel
 * copies its whole input for every slice, and its gather moves one element at a time.
 * So on wasm the operands are read back once, cut apart on the host, and every piece
 * runs as its own fast matMul (measured on attention shapes, 64 sequences × 8 heads of
 * [101, 64] × [64, 101]: 317 ms batched, 149 ms cut apart). Other backends get the plain
 * batched matMul, which they run well.
 *
 * The pieces come from host copies, so nothing here is differentiable: the trainer's
 * forward pass uses `tf.matMul` itself.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * a: [n, m, k], b: [n, k, p] -> [n, m, p], piece i = a[i] b[i]. Call inside `tf.tidy`.
 */
export function stackedMatMul(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  if (tf.getBackend() !== 'wasm') return tf.matMul(a, b); // (n, m, k) x (n, k, p) -> (n, m, p)
  const [n, m, k] = a.shape;
  const p = b.shape[2];
  if (b.shape[0] !== n || b.shape[1] !== k) {
    throw new Error(`stackedMatMul: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] do not pair up`);
  }
  const aHost = a.dataSync() as Float32Array; // (n·m·k)
  const bHost = b.dataSync() as Float32Array; // (n·k·p)
  // Each product in its own scope: its operands (and XNNPACK's packed copy of b, which
  // lives as long as b) go as soon as the product is made, not when the stack is done.
  const products = Array.from({ length: n }, (_, i) =>
    tf.tidy(() => {
      const ai = tf.tensor3d(aHost.subarray(i * m * k, (i + 1) * m * k), [1, m, k]); // (1, m, k)
      const bi = tf.tensor3d(bHost.subarray(i * k * p, (i + 1) * k * p), [1, k, p]); // (1, k, p)
      return tf.matMul(ai, bi); // (1, m, k) x (1, k, p) -> (1, m, p)
    }),
  );
  const out = tf.concat(products) as tf.Tensor3D; // (n, m, p)
  for (const t of products) t.dispose();
  return out;
}
