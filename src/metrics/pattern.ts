/**
 * What the attention-pattern scores (METRICS.md §4) share. Each score is defined by a 0/1
 * mask over (sequence, query, key) that depends on the tokens alone, and by the number of
 * (sequence, query) pairs its mean runs over. For one head:
 *
 *   score = Σ_{batches} Σ_{b, q, k} pattern[b, head, q, k] · mask[b, q, k]  /  Σ_{batches} count
 *
 * so the masks are built on the host, the masked sums run in tfjs (patterns never leave
 * the device), and the caller pools sums and counts in float64 across batches.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface PatternMask {
  /** mask: [batch, qPos, kPos], row-major; 1 where the score reads the pattern. */
  mask: Float32Array;
  batch: number;
  pos: number;
  /** (sequence, query) pairs the mean runs over. */
  count: number;
}

/** Builds a score's mask for a batch of equal-length sequences. */
export type PatternMaskFn = (tokens: readonly Int32Array[]) => PatternMask;

/**
 * Marks the keys one query reads, in `row` (that query's [kPos] slice of the mask), and
 * says whether the query counts towards the mean. `earlier` is P(q): the positions k < q
 * holding the same token as q, in increasing order.
 */
export type MarkRow = (q: number, earlier: readonly number[], row: Float32Array) => boolean;

/** Runs `mark` for every (sequence, query) of a batch of equal-length sequences. */
export function buildMask(tokens: readonly Int32Array[], mark: MarkRow): PatternMask {
  const batch = tokens.length;
  const pos = tokens[0].length;
  const mask = new Float32Array(batch * pos * pos);
  let count = 0;
  tokens.forEach((seq, b) => {
    const seen = new Map<number, number[]>(); // token id -> its positions so far
    for (let q = 0; q < pos; q++) {
      const earlier = seen.get(seq[q]) ?? [];
      const row = mask.subarray((b * pos + q) * pos, (b * pos + q + 1) * pos);
      if (mark(q, earlier, row)) count++;
      seen.set(seq[q], [...earlier, q]);
    }
  });
  return { mask, batch, pos, count };
}

/**
 * Per-head sum of the pattern where the mask is 1, as one batched matMul so no
 * [batch, head, qPos, kPos] product is ever materialised.
 * pattern: [batch, head, qPos, kPos], mask: [batch, qPos, kPos] -> [head]
 */
export function maskedHeadSums(pattern: tf.Tensor4D, mask: tf.Tensor3D): tf.Tensor1D {
  const [batch, nHeads, pos] = pattern.shape;
  const flat = tf.reshape(pattern, [batch, nHeads, pos * pos]); // (B, H, T·T)
  const column = tf.reshape(mask, [batch, pos * pos, 1]); // (B, T·T, 1)
  const perSequence = tf.matMul(flat, column); // (B, H, T·T) x (B, T·T, 1) -> (B, H, 1)
  return tf.reshape(tf.sum(perSequence, 0), [nHeads]); // (H)
}
