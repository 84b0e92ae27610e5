/**
 * Copying score (Elhage et al. 2021; METRICS.md §5): how much a head's full OV circuit
 * M = W_E R(W_V^h) W_O^h R_final(W_U)   [d_vocab, d_vocab]
 * raises the logit of the token it attends to. With λ its eigenvalues,
 * copying = Σ Re(λ) / Σ |λ|  in [-1, 1].
 * As TransformerLens's `OV`, the circuit is the direct path through the head alone: MLPs
 * are not in it; with grouped-query attention W_V^h is its key/value head's (fold.ts).
 *
 * M has the same non-zero eigenvalues as the cyclically rotated
 * W_O^h R_final(W_U) W_E R(W_V^h)   [d_head, d_head],
 * so the vocabulary-sized product is formed once per checkpoint as the
 * [d_model, d_model] matrix G = R_final(W_U) W_E and every head only costs
 * [d_head, d_model]·[d_model, d_model]·[d_model, d_head].
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import * as tf from '@tensorflow/tfjs-core';
import { weightBlock, type Checkpoint } from '../checkpoint/checkpoint.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Params } from '../model/forward.ts';
import { stackedMatMul } from '../model/pieces.ts';
import { requireFinite } from './finite.ts';
import { foldedHeadWeight, foldReading } from './fold.ts';

/** Vocabulary rows per slice of the W_U·W_E product (see `unembedEmbed`). */
const VOCAB_SLICE = 2048;

/**
 * W_U W_E from the host weights, as a sum over vocabulary slices:
 * Σ_s W_U[:, s] W_E[s, :]  -> [d_model, d_model]. Call inside `tf.tidy`.
 *
 * Why slices: the product reads two vocabulary-sized matrices to make a small one. Done
 * whole, the wasm backend first repacks all of W_E and then streams the full vocabulary
 * per output tile (measured: 12–15 GFLOP/s for d_model 768, d_vocab 50257); in slices of
 * 2048 tokens both operands stay in cache (~30 GFLOP/s), and neither matrix is ever
 * uploaded whole. Returns a tensor of its own even inside a tidy (earlier sums are freed
 * as it goes).
 */
function unembedEmbed(ck: Checkpoint, c: ModelConfig): tf.Tensor2D {
  const { d_model: dm, d_vocab: vocab } = c;
  const slice = Math.min(VOCAB_SLICE, vocab);
  const [columns, rows] = [new Float32Array(dm * slice), new Float32Array(slice * dm)]; // W_U[:, s] and W_E[s, :], reused per slice
  let sum: tf.Tensor2D | undefined;
  for (let from = 0; from < vocab; from += VOCAB_SLICE) {
    const n = Math.min(VOCAB_SLICE, vocab - from);
    const wU = weightBlock(ck, 'unembed.W_U', 0, dm, from, n, columns.subarray(0, dm * n)); // (dm, s)
    const wE = weightBlock(ck, 'embed.W_E', from, n, 0, dm, rows.subarray(0, n * dm)); // (s, dm)
    const previous = sum;
    // A scope per slice: the slices and XNNPACK's packed copy of each go before the next.
    sum = tf.tidy(() => {
      const part: tf.Tensor2D = tf.matMul(tf.tensor2d(wU, [dm, n]), tf.tensor2d(wE, [n, dm])); // (dm, s) x (s, dm) -> (dm, dm)
      return previous === undefined ? part : (tf.add(previous, part) as tf.Tensor2D);
    });
    previous?.dispose();
  }
  return sum ?? (tf.zeros([dm, dm]) as tf.Tensor2D);
}

/**
 * The per-head [d_head, d_head] circuits W_O^h G R(W_V^h), all layers.
 * -> [layer·head, d_head, d_head]. Caller disposes.
 */
function rotatedOvCircuits(params: Params, ck: Checkpoint, c: ModelConfig): tf.Tensor3D {
  const { n_layers: nLayers, n_heads: nHeads, d_model: dModel, d_head: dHead } = c;
  return tf.tidy(() => {
    // C diag(g) acts on W_U's d_model rows, so folding the product equals the product of the fold.
    const g = foldReading(params, c, 'final', unembedEmbed(ck, c)) as tf.Tensor2D; // G = R_final(W_U) W_E: (dm, dm)
    const wO: tf.Tensor[] = [];
    const gRv: tf.Tensor[] = [];
    for (let l = 0; l < nLayers; l++) {
      wO.push(params[`blocks.${l}.attn.W_O`]); // (H, dh, dm)
      const rV = foldedHeadWeight(params, c, l, 'W_V'); // (H, dm, dh)
      const rVSide = tf.reshape(tf.transpose(rV, [1, 0, 2]), [dModel, nHeads * dHead]) as tf.Tensor2D; // (dm, H·dh)
      const product = tf.reshape(tf.matMul(g, rVSide), [dModel, nHeads, dHead]); // (dm, dm) x (dm, H·dh) -> (dm, H, dh)
      gRv.push(tf.transpose(product, [1, 0, 2])); // (H, dm, dh)
    }
    const o = tf.reshape(tf.concat(wO), [nLayers * nHeads, dHead, dModel]) as tf.Tensor3D; // (L·H, dh, dm)
    const v = tf.reshape(tf.concat(gRv), [nLayers * nHeads, dModel, dHead]) as tf.Tensor3D; // (L·H, dm, dh)
    return stackedMatMul(o, v); // (L·H, dh, dm) x (L·H, dm, dh) -> (L·H, dh, dh)
  });
}

/**
 * Σ Re(λ) / Σ |λ| of a square matrix, eigenvalues in float64.
 * NaN when every eigenvalue is 0 (a head that writes nothing has no copying direction).
 */
function eigenvalueRealShare(square: Matrix): number {
  const evd = new EigenvalueDecomposition(square);
  let re = 0;
  let abs = 0;
  evd.realEigenvalues.forEach((r, i) => {
    re += r;
    abs += Math.hypot(r, evd.imaginaryEigenvalues[i]);
  });
  return re / abs;
}

/**
 * copying per head: [n_layers * n_heads], index `layer * n_heads + head`. W_E and W_U
 * are read from the checkpoint a slice at a time; `params` are the uploaded weights.
 */
export function copyingScores(params: Params, ck: Checkpoint): Float64Array {
  const c = ck.config;
  const nHeadsTotal = c.n_layers * c.n_heads;
  const scores = new Float64Array(nHeadsTotal);
  if (nHeadsTotal === 0) return scores;
  const circuits = rotatedOvCircuits(params, ck, c);
  let data: Float32Array;
  try {
    data = circuits.dataSync() as Float32Array; // (L·H, dh, dh)
  } finally {
    circuits.dispose();
  }
  const size = c.d_head * c.d_head;
  for (let i = 0; i < nHeadsTotal; i++) {
    const circuit = data.subarray(i * size, (i + 1) * size);
    requireFinite(circuit, () => `the OV circuit of head L${Math.floor(i / c.n_heads)}H${i % c.n_heads}`);
    scores[i] = eigenvalueRealShare(Matrix.from1DArray(c.d_head, c.d_head, circuit));
  }
  return scores;
}
