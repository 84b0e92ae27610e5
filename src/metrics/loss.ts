/**
 * Loss scores (METRICS.md §6), from `loss[i] = -log softmax(logits[i-1])[t[i]]`, i ≥ 1:
 * - `mean_loss`: mean of loss[i] over every (sequence, i ≥ 1) pair, pooled;
 * - `icl_score` (Olsson et al.): mean over sequences of loss[late] − mean of loss[early].
 *   Negative = the model predicts better late in the context. null when any sequence
 *   is too short to have a loss at `late`.
 *
 * Only the losses a requested score reads are computed: every position's for mean_loss,
 * two per sequence for icl_score alone (`lossTargets`). The unembedding that gives them
 * runs in vocabulary slices (model/unembed.ts); the per-token losses come to the host in
 * float64 and pool there across batches, in batch order.
 *
 * Nothing here loads tfjs: the sweep's main thread pools the losses of a checkpoint whose
 * batches were scored by several workers (work.ts).
 */
import { HeadsweepError } from '../errors.ts';

/** 0-based token positions (BOS at 0) whose losses icl_score compares. */
export interface IclPositions {
  early: number;
  late: number;
}

/** Both positions need a loss (i ≥ 1), and early must come first. */
export function checkIclPositions(icl: IclPositions): void {
  const { early, late } = icl;
  if (!Number.isInteger(early) || !Number.isInteger(late) || early < 1 || late <= early) {
    throw new HeadsweepError(`icl positions early=${early}, late=${late}: need integers with 1 ≤ early < late`, {
      stage: 'config',
      key: 'icl',
    });
  }
}

/** Which losses the requested loss scores read. */
export interface LossRequest {
  /** mean_loss is asked for: every position's loss. */
  every: boolean;
  icl: IclPositions;
}

/**
 * The token positions i whose loss[i] a batch of `pos`-token sequences needs, increasing:
 * 1 … pos-1 for mean_loss, else early and late where the sequences reach them.
 */
export function lossTargets(req: LossRequest, pos: number): Int32Array {
  if (req.every) return Int32Array.from({ length: Math.max(0, pos - 1) }, (_, i) => i + 1);
  return Int32Array.from([req.icl.early, req.icl.late].filter((i) => i < pos));
}

/** Host-side float64 totals over the batches of one prompt set. */
export interface LossTotals {
  lossSum: number;
  lossCount: number;
  earlySum: number;
  lateSum: number;
  sequences: number;
  /** Some sequence has no token at `late`. */
  tooShort: boolean;
}

export function emptyLossTotals(): LossTotals {
  return { lossSum: 0, lossCount: 0, earlySum: 0, lateSum: 0, sequences: 0, tooShort: false };
}

/**
 * Adds one batch's losses: `batch` sequences of `pos` tokens, `losses[b · n + j]` the
 * loss at `targets[j]` of sequence b (n = targets.length, `lossTargets` of the request).
 */
export function addLossBatch(t: LossTotals, req: LossRequest, losses: ArrayLike<number>, batch: number, pos: number): void {
  const targets = lossTargets(req, pos);
  const n = targets.length;
  const early = targets.indexOf(req.icl.early);
  const late = targets.indexOf(req.icl.late);
  for (let b = 0; b < batch; b++) {
    if (req.every) for (let j = 0; j < n; j++) t.lossSum += losses[b * n + j];
    if (early >= 0) t.earlySum += losses[b * n + early];
    if (late >= 0) t.lateSum += losses[b * n + late];
  }
  if (req.every) t.lossCount += batch * n;
  t.sequences += batch;
  if (req.icl.late >= pos) t.tooShort = true;
}

export function lossScores(t: LossTotals): { mean_loss: number; icl_score: number | null } {
  return {
    mean_loss: t.lossSum / t.lossCount,
    icl_score: t.tooShort ? null : (t.lateSum - t.earlySum) / t.sequences,
  };
}
