/**
 * The one source of randomness for prompt sets, chosen so the same seed gives the same
 * tokens on every machine and Node version: pure-rand's xoroshiro128+ (32-bit integer
 * arithmetic only) and its `uniformInt`, which rejects out-of-range draws instead of
 * scaling a float, so every value is exactly equally likely.
 */
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';

export type Rng = RandomGenerator;

/** A fresh generator; `seed` is a 32-bit integer (pure-rand uses `seed | 0`). */
export function seededRng(seed: number): Rng {
  return xoroshiro128plus(seed);
}

/**
 * `k` distinct integers drawn uniformly without replacement from [0, n), in draw order.
 *
 * The first k steps of a Fisher–Yates shuffle of the slots 0..n-1: step i draws
 * j = uniformInt(rng, i, n-1), swaps slots i and j, and emits slot i. Slots never
 * swapped hold their own index, so only swapped ones are stored: O(k) work for any n
 * (a 50k vocabulary costs no more than a 100-token one).
 */
export function sampleDistinct(rng: Rng, n: number, k: number): Int32Array {
  const out = new Int32Array(k);
  const moved = new Map<number, number>();
  for (let i = 0; i < k; i++) {
    const j = uniformInt(rng, i, n - 1);
    const atI = moved.get(i) ?? i;
    out[i] = moved.get(j) ?? j;
    moved.set(j, atI);
  }
  return out;
}
