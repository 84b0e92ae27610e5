/**
 * The masks that define the attention-pattern scores (METRICS.md §4), built on the host
 * from the tokens alone. A score is a 0/1 mask over (sequence, query, key) and the
 * number of (sequence, query) pairs its mean runs over; `pattern.ts` sums a head's
 * attention over the mask's cells on the device. A mask marks a handful of keys per query
 * out of pos, so it is kept as the list of its cells.
 *
 * Nothing here loads tfjs: the metric registry, which config parsing reads, imports it.
 */

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
