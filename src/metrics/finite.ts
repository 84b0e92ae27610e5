/**
 * A guard in front of the host-side decompositions (ml-matrix's eigenvalue and Cholesky
 * decompositions, behind copying and composition): on a matrix holding a NaN or an
 * infinity the eigenvalue iteration never converges, and never returns (a 16 × 16 one did
 * not return in a minute). Checkpoints with non-finite weights are refused before scoring
 * (score.ts); what this catches is finite weights whose float32 products overflowed.
 */
import { HeadsweepError } from '../errors.ts';

/** The index of the first NaN or infinity in `values`, or -1 when every value is finite. */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) if (values[i] - values[i] !== 0) return i;
  return -1;
}

/** Throws a `score`-stage error naming `what()` when a value is NaN or infinite. */
export function requireFinite(values: ArrayLike<number>, what: () => string): void {
  if (firstNonFinite(values) >= 0) {
    throw new HeadsweepError(`${what()} has non-finite entries although every weight is finite: the weights are too large for float32 arithmetic`, { stage: 'score' });
  }
}
