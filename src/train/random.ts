/**
 * Seeded randomness for training. Every draw comes from a stream named by
 * (seed, label, indices): row r of the batch of step s is `stream(seed, 'data', s, r)`,
 * an initial weight `stream(seed, 'init:<TL name>')`. So data is a pure function of
 * (seed, step) and a resumed run needs no saved generator state, and adding a layer
 * does not change the initial values of the others.
 *
 * The generator is the prompt sets' (pure-rand xoroshiro128+, 32-bit integer
 * arithmetic), so the same seed gives the same numbers on every machine.
 */
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { seededRng, type Rng } from '../prompts/rng.ts';

export type { Rng };

/** murmur3's 32-bit finaliser: a bijective avalanche mix. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit seed for the stream (seed, label, ...indices). */
function streamSeed(seed: number, label: string, ...indices: number[]): number {
  let h = fmix32(seed >>> 0);
  for (let i = 0; i < label.length; i++) h = fmix32(h ^ label.charCodeAt(i));
  for (const n of indices) h = fmix32(h ^ fmix32(n >>> 0) ^ 0x9e3779b9);
  return h;
}

export function stream(seed: number, label: string, ...indices: number[]): Rng {
  return seededRng(streamSeed(seed, label, ...indices));
}

/** Uniform in [0, 1). */
export function uniform(rng: Rng): number {
  return uniformFloat64(rng);
}

/** Standard normal by Box–Muller, one value per call (the paired value is dropped, so a call is self-contained). */
export function normal(rng: Rng): number {
  const u = 1 - uniformFloat64(rng); // (0, 1]: log stays finite
  const v = uniformFloat64(rng);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
