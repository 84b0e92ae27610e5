/**
 * Training batches. A batch is a pure function of (seed, step): row r of step s draws
 * only from the stream (seed, 'data', s, r), so a resumed run regenerates exactly the
 * batches an uninterrupted run would have seen, with no generator state to save.
 */
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { HeadsweepError } from '../errors.ts';
import type { CorpusData, SyntheticData } from './config.ts';
import { stream, uniform, type Rng } from './random.ts';
import { TOKENIZERS } from './tokenizer.ts';

/** Row-major token ids of one batch. tokens: [batch, pos] */
export type BatchSource = (step: number) => Int32Array;

export interface BatchShape {
  batchSize: number;
  seqLen: number;
}

/**
 * Sampler of p(rank r) ∝ r^-s over ranks 1..n, by inverse CDF. Returns a 0-based rank.
 */
function zipfSampler(n: number, s: number): (rng: Rng) => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let r = 1; r <= n; r++) cdf[r - 1] = total += r ** -s;
  for (let i = 0; i < n; i++) cdf[i] /= total;
  return (rng) => {
    const u = uniform(rng);
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
}

/**
 * Row r is a repeated-block row when the running count of repeated rows steps up at r,
 * so a batch holds round(fraction · batch) of them, spread evenly.
 */
function isRepeatedRow(row: number, fraction: number): boolean {
  return Math.floor((row + 1) * fraction + 1e-9) > Math.floor(row * fraction + 1e-9);
}

/**
 * The synthetic data of TRAINING-NOTES (see SyntheticDataSchema). Non-BOS ids are the
 * vocabulary without `bos` in increasing order; Zipf rank 1 is the smallest of them.
 */
export function syntheticBatches(spec: SyntheticData, vocab: number, bos: number, seed: number, shape: BatchShape): BatchSource {
  const ids = Int32Array.from({ length: vocab }, (_, i) => i).filter((id) => id !== bos);
  const zipf = zipfSampler(ids.length, spec.zipf_exponent);
  const { batchSize, seqLen } = shape;

  const repeatedRow = (rng: Rng, seq: Int32Array): void => {
    const length = uniformInt(rng, spec.block_length[0], spec.block_length[1]);
    const block = Int32Array.from({ length }, () => ids[uniformInt(rng, 0, ids.length - 1)]);
    for (let i = 1; i < seqLen; i++) seq[i] = block[(i - 1) % length];
  };

  const noiseRow = (rng: Rng, seq: Int32Array): void => {
    let i = 1;
    while (i < seqLen) {
      // A copy needs at least one earlier non-BOS token to copy from.
      if (i >= 2 && uniform(rng) < spec.copy_probability) {
        const length = uniformInt(rng, spec.copy_length[0], spec.copy_length[1]);
        const from = uniformInt(rng, 1, i - 1);
        for (let j = 0; j < length && i < seqLen; j++) seq[i++] = seq[from + j];
      } else {
        seq[i++] = ids[zipf(rng)];
      }
    }
  };

  return (step) => {
    const tokens = new Int32Array(batchSize * seqLen);
    for (let r = 0; r < batchSize; r++) {
      const rng = stream(seed, 'data', step, r);
      const seq = tokens.subarray(r * seqLen, (r + 1) * seqLen);
      seq[0] = bos;
      if (isRepeatedRow(r, spec.repeated_fraction)) repeatedRow(rng, seq);
      else noiseRow(rng, seq);
    }
    return tokens;
  };
}

/** Windows of seqLen-1 consecutive corpus tokens at uniform offsets, each after BOS. */
export function corpusBatches(spec: CorpusData, corpus: Int32Array, seed: number, shape: BatchShape, file: string): BatchSource {
  const { batchSize, seqLen } = shape;
  const span = seqLen - 1;
  if (corpus.length < span) {
    throw new HeadsweepError(`${file}: corpus has ${corpus.length} tokens, fewer than the ${span} a sequence needs`, { stage: 'train', file, key: 'data.file' });
  }
  const bos = TOKENIZERS[spec.tokenizer].bos;
  return (step) => {
    const tokens = new Int32Array(batchSize * seqLen);
    for (let r = 0; r < batchSize; r++) {
      const offset = uniformInt(stream(seed, 'data', step, r), 0, corpus.length - span);
      tokens[r * seqLen] = bos;
      tokens.set(corpus.subarray(offset, offset + span), r * seqLen + 1);
    }
    return tokens;
  };
}
