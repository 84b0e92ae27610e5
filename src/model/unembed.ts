/**
 * The unembedding (METRICS.md §2): logits = xf W_U + b_U, where xf is the residual after
 * the final norm. A tied W_U (GPT-2, nanoGPT) is W_Eᵀ stored again, so nothing here
 * knows about tying.
 *
 * Two forms. `unembed` makes the whole [batch, pos, d_vocab] tensor (training, which
 * differentiates it, and small models). `unembedLogSumExp` gives what next-token losses
 * need, log Σ_v exp(logit_v) and the target's logit per row, without ever holding more
 * than one vocabulary slice of logits: at d_vocab 50257 the whole tensor of a batch of 8 ×
 * 101 tokens is 160 MB, and its product ~40 GFLOP, most of the work of a loss score.
 */
import * as tf from '@tensorflow/tfjs-core';

/** xf: [batch, pos, d_model], W_U: [d_model, d_vocab], b_U: [d_vocab] -> logits: [batch, pos, d_vocab] */
export function unembed(wU: tf.Tensor, bU: tf.Tensor, xf: tf.Tensor3D): tf.Tensor3D {
  const [batch, pos, dModel] = xf.shape;
  const flat = tf.add(tf.matMul(tf.reshape(xf, [batch * pos, dModel]) as tf.Tensor2D, wU as tf.Tensor2D), bU); // (B·T, dm) x (dm, V) + (V)
  return tf.reshape(flat, [batch, pos, (wU as tf.Tensor2D).shape[1]]) as tf.Tensor3D; // (B·T, V) -> (B, T, V)
}

/**
 * Vocabulary columns per slice of `unembedLogSumExp`: slices of 512 and 2048 run at the same
 * rate, 8192 1.2× and the whole product 1.5× slower (`npx tsx bench/formulations.ts --only
 * unembed`), and a slice's logits stay small ([808, 2048] floats, 6.6 MB).
 */
export const VOCAB_SLICE = 2048;

/** W_U and b_U a vocabulary slice at a time, from wherever they are kept (the scorer reads them from the checkpoint file). */
export interface UnembedColumns {
  d_model: number;
  d_vocab: number;
  /** W_U[:, from : from+n] row-major, then b_U[from : from+n] as one more row: into [(d_model + 1)·n]. */
  read(from: number, n: number, into: Float32Array): void;
}

/** Per row: log Σ_v exp(logit_v), and the logit of the row's target token. */
export interface RowLogits {
  logSumExp: Float64Array;
  target: Float64Array;
}

/**
 * The rows the unembedding reads: xf at the query positions `at` of every sequence, with
 * a column of ones appended, which multiplies the b_U row of each slice (so the bias is
 * part of the one 2-D product).
 * xf: [batch, pos, d_model], at: [n] increasing -> [batch·n, d_model + 1], row b·n + j = xf[b, at[j]]
 */
export function unembedRows(xf: tf.Tensor3D, at: Int32Array): tf.Tensor2D {
  const [batch, , dModel] = xf.shape;
  const n = at.length;
  const prefix = at.every((p, j) => p === j); // every position from 0: a slice, not a gather
  const picked = prefix ? tf.slice(xf, [0, 0, 0], [batch, n, dModel]) : tf.gather(xf, tf.tensor1d(at, 'int32'), 1); // (B, n, dm)
  const flat = tf.reshape(picked, [batch * n, dModel]); // (B·n, dm)
  return tf.concat([flat, tf.ones([batch * n, 1])], 1) as tf.Tensor2D; // (B·n, dm + 1)
}

/**
 * log Σ exp over each row of one slice of logits, z: [rows, n] -> [rows].
 *
 * As m − log max_v softmax(z)_v with m = max_v z_v (max softmax = exp(m − lse)): the wasm
 * backend's softmax computes its exponentials vectorised, its tf.exp one at a time, so
 * this takes ~9 ms of CPU on a [808, 2048] slice against ~33 ms for tf.logSumExp
 * (bench/formulations.ts). max softmax ≥ 1/n, so its log loses nothing.
 */
function sliceLogSumExp(z: tf.Tensor2D): tf.Tensor1D {
  return tf.sub(tf.max(z, 1), tf.log(tf.max(tf.softmax(z), 1))) as tf.Tensor1D; // (rows)
}

/** log(eᵃ + eᵇ) in float64. */
function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log1p(Math.exp(-Math.abs(a - b)));
}

/**
 * Per row of every batch, log Σ_v exp(logit_v) and the target's logit, the unembedding
 * computed a vocabulary slice at a time: each slice of W_U and b_U is read and uploaded
 * once and multiplies every batch's rows (one untransposed 2-D product, the fast path on
 * wasm), its log-sum-exp and the targets' logits come back to the host, and the slices'
 * log-sum-exps are combined there in float64, in slice order.
 *
 * rows: per batch [rows, d_model + 1] (`unembedRows`); targets: per batch, the token id
 * each row predicts, [rows]. Every tensor made here is freed before it returns.
 */
export function unembedLogSumExp(columns: UnembedColumns, rows: readonly tf.Tensor2D[], targets: readonly Int32Array[], slice = VOCAB_SLICE): RowLogits[] {
  const { d_model: dModel, d_vocab: vocab } = columns;
  const out = targets.map((t) => ({ logSumExp: new Float64Array(t.length).fill(-Infinity), target: new Float64Array(t.length) }));
  const host = new Float32Array((dModel + 1) * Math.min(slice, vocab)); // reused per slice
  for (let from = 0; from < vocab; from += slice) {
    const n = Math.min(slice, vocab - from);
    columns.read(from, n, host.subarray(0, (dModel + 1) * n));
    // One tensor per slice, so the wasm backend packs it for XNNPACK once for all batches.
    const w = tf.tensor2d(host.subarray(0, (dModel + 1) * n), [dModel + 1, n]); // (dm + 1, n): W_U[:, s] over b_U[s]
    try {
      rows.forEach((x, i) => {
        const want = targets[i];
        // Rows whose target falls in this slice, and where its logit sits in the slice's [rows, n] logits.
        const hit: number[] = [];
        const cell: number[] = [];
        want.forEach((t, r) => {
          if (t >= from && t < from + n) {
            hit.push(r);
            cell.push(r * n + (t - from));
          }
        });
        const values = tf.tidy(() => {
          const z = tf.matMul(x, w) as tf.Tensor2D; // (rows, dm + 1) x (dm + 1, n) -> (rows, n): logits of the slice
          const lse = sliceLogSumExp(z); // (rows)
          if (cell.length === 0) return lse.dataSync();
          return tf.concat([lse, tf.gather(tf.reshape(z, [-1]), tf.tensor1d(cell, 'int32'))]).dataSync(); // (rows + hits)
        });
        const o = out[i];
        for (let r = 0; r < want.length; r++) o.logSumExp[r] = logAddExp(o.logSumExp[r], values[r]);
        hit.forEach((r, j) => (o.target[r] = values[want.length + j]));
      });
    } finally {
      w.dispose();
    }
  }
  return out;
}
