/**
 * Adjacent-pair counts of a tokenized corpus, the statistics bigram_kl (bigram-kl.ts)
 * compares a model with. Kept apart from the score, which runs the model, so that a
 * sweep counts a corpus while it plans, without loading tfjs.
 */

/** Adjacent-pair counts of a corpus. counts: [vocab, vocab], row = first token. */
export interface Bigrams {
  vocab: number;
  counts: Float64Array;
  total: number;
}

/** Counts the adjacent pairs within each sequence (never across two of them). */
export function countBigrams(sequences: readonly Int32Array[], vocab: number): Bigrams {
  const counts = new Float64Array(vocab * vocab);
  let total = 0;
  for (const seq of sequences) {
    for (let i = 0; i + 1 < seq.length; i++) {
      counts[seq[i] * vocab + seq[i + 1]]++;
      total++;
    }
  }
  return { vocab, counts, total };
}

/** H(next | previous) = −Σ p(a, b) log p(b|a), in nats: the floor of a bigram model's loss. */
export function bigramEntropy(b: Bigrams): number {
  let h = 0;
  for (let a = 0; a < b.vocab; a++) {
    const row = b.counts.subarray(a * b.vocab, (a + 1) * b.vocab);
    const rowTotal = row.reduce((s, x) => s + x, 0);
    for (const n of row) if (n > 0) h -= (n / b.total) * Math.log(n / rowTotal);
  }
  return h;
}
