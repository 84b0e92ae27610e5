/**
 * Loss scores (METRICS.md §6), from `loss[i] = -log softmax(logits[i-1])[t[i]]`, i ≥ 1:
 * - `mean_loss`: mean of loss[i] over every (sequence, i ≥ 1) pair, pooled;
 * - `icl_score` (Olsson et al.): mean over sequences of loss[late] − mean of loss[early].
 *   Negative = the model predicts better late in the context. null when any sequence
 *   is too short to have a loss at `late`.
 * Per-token losses come to the host and pool in float64 across batches.
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

/**
 * The per-token losses of a batch, flat, for the host to sum in float64. They are few
 * (batch·(pos-1) values, one per token), and summing them in float32 on the device
 * would make mean_loss drift with the batch size (~1e-6 at 600 tokens of loss ~5).
 * logits: [batch, pos, d_vocab], tokens: [batch, pos] -> [batch·(pos-1)], entry b·(pos-1) + i-1 = loss[i] of sequence b
 */
export function batchLosses(logits: tf.Tensor3D, tokens: tf.Tensor2D): tf.Tensor1D {
  return tf.reshape(tokenLosses(logits, tokens), [-1]); // (B, T-1) -> (B·(T-1))
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

/** Adds one batch's `batchLosses` values (`batch` sequences of `pos` tokens). */
export function addLossBatch(t: LossTotals, losses: ArrayLike<number>, batch: number, pos: number, icl: IclPositions): void {
  for (let b = 0; b < batch; b++) {
    const row = b * (pos - 1);
    for (let i = 1; i < pos; i++) t.lossSum += losses[row + i - 1];
    if (icl.early < pos) t.earlySum += losses[row + icl.early - 1];
    if (icl.late < pos) t.lateSum += losses[row + icl.late - 1];
  }
  t.lossCount += batch * (pos - 1);
  t.sequences += batch;
  if (icl.late >= pos) t.tooShort = true;
}

export function lossScores(t: LossTotals): { mean_loss: number; icl_score: number | null } {
  return {
    mean_loss: t.lossSum / t.lossCount,
    icl_score: t.tooShort ? null : (t.lateSum - t.earlySum) / t.sequences,
  };
}
