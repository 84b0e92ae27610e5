/**
 * Copying score (Elhage et al. 2021; METRICS.md §5): how much a head's full OV circuit
 * M = W_E R(W_V^h) W_O^h R_final(W_U)   [d_vocab, d_vocab]
 * raises the logit of the token it attends to. With λ its eigenvalues,
 * copying = Σ Re(λ) / Σ |λ|  in [-1, 1].
 *
 * M has the same non-zero eigenvalues as the cyclically rotated
 * W_O^h R_final(W_U) W_E R(W_V^h)   [d_head, d_head],
 * so the vocabulary-sized product is formed once per checkpoint as the
 * [d_model, d_model] matrix G = R_final(W_U) W_E and every head only costs
 * [d_head, d_model]·[d_model, d_model]·[d_model, d_head].
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../checkpoint/config.ts';
import type { Params } from '../model/forward.ts';
import { foldReading } from './fold.ts';

/**
 * The per-head [d_head, d_head] circuits W_O^h G R(W_V^h), all layers.
 * -> [layer, head, d_head, d_head]. Caller disposes.
 */
function rotatedOvCircuits(params: Params, c: ModelConfig): tf.Tensor4D {
  const { n_layers: nLayers, n_heads: nHeads, d_model: dModel, d_head: dHead } = c;
  return tf.tidy(() => {
    // C diag(g) acts on W_U's d_model rows, so folding the product equals the product of the fold.
    const unembedEmbed = tf.matMul(params['unembed.W_U'], params['embed.W_E']); // (dm, V) x (V, dm) -> (dm, dm)
    const g = foldReading(params, c, 'final', unembedEmbed); // G = R_final(W_U) W_E: (dm, dm)
    const perLayer: tf.Tensor3D[] = [];
    for (let l = 0; l < nLayers; l++) {
      const wO = tf.reshape(params[`blocks.${l}.attn.W_O`], [nHeads * dHead, dModel]); // (H·dh, dm)
      const oG = tf.reshape(tf.matMul(wO, g), [nHeads, dHead, dModel]); // (H·dh, dm) x (dm, dm) -> (H, dh, dm)
      const rV = foldReading(params, c, l, params[`blocks.${l}.attn.W_V`]); // (H, dm, dh)
      perLayer.push(tf.matMul(oG, rV) as tf.Tensor3D); // (H, dh, dm) x (H, dm, dh) -> (H, dh, dh)
    }
    return tf.stack(perLayer) as tf.Tensor4D; // (L, H, dh, dh)
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

/** copying per head: [n_layers * n_heads], index `layer * n_heads + head`. */
export function copyingScores(params: Params, c: ModelConfig): Float64Array {
  const nHeadsTotal = c.n_layers * c.n_heads;
  const scores = new Float64Array(nHeadsTotal);
  if (nHeadsTotal === 0) return scores;
  const circuits = rotatedOvCircuits(params, c);
  let data: Float32Array;
  try {
    data = circuits.dataSync() as Float32Array; // (L, H, dh, dh)
  } finally {
    circuits.dispose();
  }
  const size = c.d_head * c.d_head;
  for (let i = 0; i < nHeadsTotal; i++) {
    scores[i] = eigenvalueRealShare(Matrix.from1DArray(c.d_head, c.d_head, data.subarray(i * size, (i + 1) * size)));
  }
  return scores;
}
