/**
 * What the attention-pattern scores (METRICS.md §4) share. Each score is defined by a 0/1
 * mask over (sequence, query, key) that depends on the tokens alone, and by the number of
 * (sequence, query) pairs its mean runs over. For one head:
 *
 *   score = Σ_{batches} Σ_{b, q, k} pattern[b, head, q, k] · mask[b, q, k]  /  Σ_{batches} count
 *
 * so the masks are built on the host, the masked sums run in tfjs (patterns never leave
 * the device), and the caller pools sums and counts in float64 across batches. A mask
 * marks a handful of keys per query out of pos, so it is kept as the list of its cells.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface PatternMask {
  /** The cells where the mask is 1, as flat indices (b·pos + q)·pos + k of [batch, qPos, kPos], increasing. */
  cells: Int32Array;
  batch: number;
  pos: number;
  /** (sequence, query) pairs the mean runs over. */
  count: number;
}

/** Builds a score's mask for a batch of equal-length sequences. */
export type PatternMaskFn = (tokens: readonly Int32Array[]) => PatternMask;

/**
 * Marks the keys one query reads by setting them to 1 in `row` (a zeroed [kPos] row; any
 * non-zero entry counts as 1, the masks being 0/1), and says whether the query counts
 * towards the mean. `earlier` is P(q): the positions k < q holding the same token as q,
 * in increasing order.
 */
export type MarkRow = (q: number, earlier: readonly number[], row: Float32Array) => boolean;

/** Runs `mark` for every (sequence, query) of a batch of equal-length sequences. */
export function buildMask(tokens: readonly Int32Array[], mark: MarkRow): PatternMask {
  const batch = tokens.length;
  const pos = tokens[0].length;
  const cells: number[] = [];
  const row = new Float32Array(pos);
  let count = 0;
  tokens.forEach((seq, b) => {
    const seen = new Map<number, number[]>(); // token id -> its positions so far
    for (let q = 0; q < pos; q++) {
      const earlier = seen.get(seq[q]) ?? [];
      row.fill(0);
      if (mark(q, earlier, row)) count++;
      for (let k = 0; k < pos; k++) if (row[k] !== 0) cells.push((b * pos + q) * pos + k);
      seen.set(seq[q], [...earlier, q]);
    }
  });
  return { cells: Int32Array.from(cells), batch, pos, count };
}

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
