/**
 * Loss scores (METRICS.md §6), from `loss[i] = -log softmax(logits[i-1])[t[i]]`, i ≥ 1:
 * - `mean_loss`: mean of loss[i] over every (sequence, i ≥ 1) pair, pooled;
 * - `icl_score` (Olsson et al.): mean over sequences of loss[late] − mean of loss[early].
 *   Negative = the model predicts better late in the context. null when any sequence
 *   is too short to have a loss at `late`.
 * Batches reduce to three sums in tfjs; the totals pool on the host in float64.
 */
import * as tf from '@tensorflow/tfjs-core';
import { HeadsweepError } from '../errors.ts';
import { tokenLosses } from '../model/forward.ts';

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

/** Number of values `batchLossSums` returns. */
export const LOSS_SUM_COUNT = 3;

/**
 * logits: [batch, pos, d_vocab], tokens: [batch, pos] -> [3]:
 * Σ loss[i≥1], Σ_b loss[early], Σ_b loss[late] (a position the sequences do not reach sums to 0).
 */
export function batchLossSums(logits: tf.Tensor3D, tokens: tf.Tensor2D, icl: IclPositions): tf.Tensor1D {
  const [batch, pos] = tokens.shape;
  const loss = tokenLosses(logits, tokens); // (B, T-1); column i-1 holds loss[i]
  const columnSum = (i: number): tf.Tensor => (i < pos ? tf.sum(tf.slice(loss, [0, i - 1], [batch, 1])) : tf.scalar(0));
  return tf.stack([tf.sum(loss), columnSum(icl.early), columnSum(icl.late)]) as tf.Tensor1D; // (3)
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

/** Adds one batch's `batchLossSums` values (of `batch` sequences of `pos` tokens). */
export function addLossBatch(t: LossTotals, sums: ArrayLike<number>, batch: number, pos: number, icl: IclPositions): void {
  t.lossSum += sums[0];
  t.lossCount += batch * (pos - 1);
  t.earlySum += sums[1];
  t.lateSum += sums[2];
  t.sequences += batch;
  if (icl.late >= pos) t.tooShort = true;
}

export function lossScores(t: LossTotals): { mean_loss: number; icl_score: number | null } {
  return {
    mean_loss: t.lossSum / t.lossCount,
    icl_score: t.tooShort ? null : (t.lateSum - t.earlySum) / t.sequences,
  };
}
