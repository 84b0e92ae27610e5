/**
 * The device half of the attention-pattern scores (METRICS.md §4): for one head,
 *
 *   score = Σ_{batches} Σ_{b, q, k} pattern[b, head, q, k] · mask[b, q, k]  /  Σ_{batches} count
 *
 * The masks are built on the host (mask.ts), the masked sums run in tfjs (patterns never
 * leave the device), and the caller pools sums and counts in float64 across batches.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { PatternMask } from './mask.ts';

export type { PatternMask, PatternMaskFn } from './mask.ts';

/**
 * Per-head sum of the pattern over the mask's cells, gathered on the device so no
 * [batch, head, qPos, kPos] product is ever formed and the pattern is never read back.
 * pattern: [batch, head, qPos, kPos] -> [head]
 */
export function maskedHeadSums(pattern: tf.Tensor4D, mask: PatternMask): tf.Tensor1D {
  const [batch, nHeads, pos] = pattern.shape;
  const plane = pos * pos;
  const cells = mask.cells;
  // A batch where no query counts (no repeated token) adds exactly nothing. Not a sum over
  // an empty axis: the wasm backend returns uninitialised memory for that.
  if (cells.length === 0) return tf.zeros([nHeads]);
  // Cell (b, q, k) of head h sits at ((b·H + h)·pos + q)·pos + k = cell + (b·(H-1) + h)·pos².
  const index = new Int32Array(nHeads * cells.length);
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < cells.length; i++) {
      const b = Math.floor(cells[i] / plane);
      index[h * cells.length + i] = cells[i] + (b * (nHeads - 1) + h) * plane;
    }
  }
  const flat = tf.reshape(pattern, [batch * nHeads * plane]); // (B·H·T·T)
  const picked = tf.reshape(tf.gather(flat, tf.tensor1d(index, 'int32')), [nHeads, cells.length]); // (H, cells)
  return tf.sum(picked, 1) as tf.Tensor1D; // (H)
}
