/**
 * Q-, K- and V-composition scores between heads of earlier and later layers
 * (Elhage et al. 2021; TransformerLens `composition_scores`; METRICS.md §5):
 *
 *   Q: ||OV1 QK2|| / (||OV1|| ||QK2||)     K: ||OV1 QK2ᵀ|| / (||OV1|| ||QK2||)
 *   V: ||OV1 OV2|| / (||OV1|| ||OV2||)
 *
 * with OV = A B (A = R(W_V^h) [d_model, d_head], B = W_O^h [d_head, d_model]) and
 * QK = C Dᵀ (C = R(W_Q^h), D = R(W_K^h)), ||.|| the Frobenius norm. As in TransformerLens,
 * these are weight circuits only: MLPs, rotary rotations and the attention scale are not
 * part of them, and grouped K and V are read per query head (fold.ts).
 *
 * No [d_model, d_model] matrix is ever formed. Every numerator is ||A1 (B1 X2) Y2ᵀ|| for
 * rank-d_head factors (Q: X2 = C2, Y2 = D2; K: X2 = D2, Y2 = C2; V: X2 = A2, Y2 = B2ᵀ),
 * and with Gram matrices A1ᵀA1 = L1 L1ᵀ and Y2ᵀY2 = L2 L2ᵀ,
 *
 *   ||A1 B1 X2 Y2ᵀ||² = tr(X2ᵀB1ᵀ (A1ᵀA1) B1 X2 (Y2ᵀY2)) = ||(L1ᵀ B1)(X2 L2)||²,
 *
 * so each head's side is folded into one d_head-row factor once, and the numerators of
 * every head pair of two layers, all three kinds, are the [d_head, d_head] blocks of a
 * single 2-D product. That product is the whole cost (d_model · (H·d_head)² · 3 per layer
 * pair), and it is the shape the wasm backend runs fastest.
 */
import { CholeskyDecomposition, EigenvalueDecomposition, Matrix } from 'ml-matrix';
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../model/config.ts';
import type { Params } from '../model/forward.ts';
import { stackedMatMul } from '../model/pieces.ts';
import type { CompositionKind, CompositionScores } from '../score.ts';
import { requireFinite } from './finite.ts';
import { foldedHeadWeight } from './fold.ts';

const KINDS: readonly CompositionKind[] = ['Q', 'K', 'V'];

/** One layer's folded factors, each head's side of every product it takes part in. */
type LayerFactors = {
  /** L_Vᵀ W_O per head, heads stacked: [head·d_head, d_model] (this layer as the source). */
  src: tf.Tensor2D;
  /** R(W_Q) L_K, R(W_K) L_Q, R(W_V) L_O, kinds then heads side by side: [d_model, 3·head·d_head] (this layer as the destination). */
  dst: tf.Tensor2D;
  /** ||OV|| and ||QK|| (= ||QKᵀ||) per head. */
  normOV: Float64Array;
  normQK: Float64Array;
};

/** xᵀ per head: [head, r, c] -> [head, c, r] */
function transposeHeads(x: tf.Tensor3D): tf.Tensor3D {
  return tf.transpose(x, [0, 2, 1]);
}

/**
 * A factor L with L Lᵀ = G for a symmetric positive semi-definite G, in float64: the
 * Cholesky factor, or U diag(√λ) from the eigendecomposition when G is singular (a head
 * with a zero or rank-deficient weight), where Cholesky stops.
 */
function gramFactor(g: Matrix): Matrix {
  const cholesky = new CholeskyDecomposition(g);
  if (cholesky.isPositiveDefinite()) return cholesky.lowerTriangularMatrix;
  const evd = new EigenvalueDecomposition(g, { assumeSymmetric: true });
  const roots = evd.realEigenvalues.map((l) => Math.sqrt(Math.max(l, 0))); // rounding can leave a zero slightly negative
  return evd.eigenvectorMatrix.mulRowVector(roots);
}

/** grams: [head, d, d] on the device -> one float64 matrix per head on the host; `what` names them for an overflow */
function hostGrams(grams: tf.Tensor3D, what: string): Matrix[] {
  const [nHeads, d] = grams.shape;
  const data = grams.dataSync();
  requireFinite(data, () => what);
  return Array.from({ length: nHeads }, (_, h) => {
    const g = Matrix.from1DArray(d, d, Array.from(data.subarray(h * d * d, (h + 1) * d * d)));
    // Symmetrise: the float32 product leaves the two triangles a rounding apart.
    return g.add(g.transpose()).mul(0.5);
  });
}

/** Σ_ij G1[i,j] G2[i,j] = tr(G1 G2) for symmetric G1, G2: ||X Yᵀ||² from XᵀX and YᵀY. */
function traceOfProduct(g1: Matrix, g2: Matrix): number {
  let sum = 0;
  for (let i = 0; i < g1.rows; i++) for (let j = 0; j < g1.columns; j++) sum += g1.get(i, j) * g2.get(i, j);
  return sum;
}

/** Stacked factors [head, d, d] (transposed first when asked) as a device tensor. */
function uploadFactors(factors: Matrix[], transpose: boolean): tf.Tensor3D {
  const d = factors[0].rows;
  const out = new Float32Array(factors.length * d * d);
  factors.forEach((f, h) => out.set((transpose ? f.transpose() : f).to1DArray(), h * d * d));
  return tf.tensor3d(out, [factors.length, d, d]);
}

function layerFactors(params: Params, c: ModelConfig, l: number): LayerFactors {
  const { n_heads: nHeads, d_model: dModel, d_head: dHead } = c;
  const p = `blocks.${l}.attn`;
  const wO = params[`${p}.W_O`] as tf.Tensor3D; // (H, dh, dm)
  // R(W_Q), R(W_K), R(W_V): (H, dm, dh) each, made once for the Gram matrices and the factors.
  const [rQ, rK, rV] = tf.tidy(() => (['W_Q', 'W_K', 'W_V'] as const).map((w) => foldedHeadWeight(params, c, l, w)));
  try {
    // Gram matrices on the device, factored on the host.
    const grams = tf.tidy(() => ({
      q: stackedMatMul(transposeHeads(rQ), rQ), // CᵀC: (H, dh, dm) x (H, dm, dh) -> (H, dh, dh)
      k: stackedMatMul(transposeHeads(rK), rK), // DᵀD
      v: stackedMatMul(transposeHeads(rV), rV), // AᵀA
      o: stackedMatMul(wO, transposeHeads(wO)), // B Bᵀ
    }));
    let host: Record<'q' | 'k' | 'v' | 'o', Matrix[]>;
    try {
      const of = (w: string) => `the ${w} Gram matrices of layer ${l}`;
      host = { q: hostGrams(grams.q, of('W_Q')), k: hostGrams(grams.k, of('W_K')), v: hostGrams(grams.v, of('W_V')), o: hostGrams(grams.o, of('W_O')) };
    } finally {
      for (const g of Object.values(grams)) g.dispose();
    }
    const normOV = Float64Array.from(host.v, (gv, h) => Math.sqrt(traceOfProduct(gv, host.o[h])));
    const normQK = Float64Array.from(host.q, (gq, h) => Math.sqrt(traceOfProduct(gq, host.k[h])));
    const [lQ, lK, lV, lO] = [host.q, host.k, host.v, host.o].map((g) => g.map(gramFactor));

    const { src, dst } = tf.tidy(() => {
      const src = tf.reshape(stackedMatMul(uploadFactors(lV, true), wO), [nHeads * dHead, dModel]) as tf.Tensor2D; // (H, dh, dh) x (H, dh, dm) -> (H·dh, dm)
      const sideBySide = (x: tf.Tensor3D, l2: Matrix[]) => {
        const folded = stackedMatMul(x, uploadFactors(l2, false)); // (H, dm, dh) x (H, dh, dh) -> (H, dm, dh)
        return tf.reshape(tf.transpose(folded, [1, 0, 2]), [dModel, nHeads * dHead]); // (dm, H·dh)
      };
      const dst = tf.concat([sideBySide(rQ, lK), sideBySide(rK, lQ), sideBySide(rV, lO)], 1) as tf.Tensor2D; // (dm, 3·H·dh): kinds Q, K, V
      return { src, dst };
    });
    return { src, dst, normOV, normQK };
  } finally {
    // With no norm R(W) is W itself, the caller's parameter, which stays.
    for (const r of [rQ, rK, rV]) if (!Object.values(params).includes(r)) r.dispose();
  }
}

/**
 * Squared numerators of every (src head, kind, dst head) of one layer pair: the
 * [d_head, d_head] blocks of src·dst, each reduced to its sum of squares.
 * -> [src_head, kind, dst_head]
 */
function pairNormsSquared(src: LayerFactors, dst: LayerFactors, nHeads: number, dHead: number): Float32Array {
  const sums = tf.tidy(() => {
    const product = tf.matMul(src.src, dst.dst); // (H1·dh, dm) x (dm, 3·H2·dh) -> (H1·dh, 3·H2·dh)
    const blocks = tf.reshape(tf.square(product), [nHeads, dHead, KINDS.length * nHeads, dHead]); // (H1, dh, 3·H2, dh)
    return tf.sum(blocks, [1, 3]); // (H1, 3·H2)
  });
  try {
    return sums.dataSync() as Float32Array;
  } finally {
    sums.dispose();
  }
}

/**
 * Composition scores for every (src head, dst head, kind) with src_layer < dst_layer, rows
 * ordered by src_layer, src_head, dst_layer, dst_head, kind (Q, K, V).
 */
export function compositionScores(params: Params, c: ModelConfig): CompositionScores {
  const { n_layers: nLayers, n_heads: nHeads, d_head: dHead } = c;
  const layerPairs: [number, number][] = [];
  for (let l1 = 0; l1 < nLayers; l1++) for (let l2 = l1 + 1; l2 < nLayers; l2++) layerPairs.push([l1, l2]);

  // (layer pair, src head, kind, dst head); each pair reduced and downloaded on its own,
  // so only one pair's product is ever on the device.
  const pairSize = KINDS.length * nHeads * nHeads;
  const scores = new Float64Array(layerPairs.length * pairSize);
  if (layerPairs.length > 0) {
    const factors: LayerFactors[] = [];
    try {
      for (let l = 0; l < nLayers; l++) factors.push(layerFactors(params, c, l));
      layerPairs.forEach(([l1, l2], i) => {
        const normSq = pairNormsSquared(factors[l1], factors[l2], nHeads, dHead);
        for (let h1 = 0; h1 < nHeads; h1++) {
          KINDS.forEach((kind, k) => {
            for (let h2 = 0; h2 < nHeads; h2++) {
              const j = (h1 * KINDS.length + k) * nHeads + h2;
              const dstNorm = kind === 'V' ? factors[l2].normOV[h2] : factors[l2].normQK[h2];
              const norms = factors[l1].normOV[h1] * dstNorm;
              // A head whose circuit is zero composes with nothing: its product with any
              // other is zero too, and the score is 0 (METRICS.md §5), not 0/0.
              // Rounding can leave a true zero slightly negative; the norm of a zero product is 0.
              scores[i * pairSize + j] = norms === 0 ? 0 : Math.sqrt(Math.max(normSq[j], 0)) / norms;
            }
          });
        }
      });
    } finally {
      for (const f of factors) {
        f.src.dispose();
        f.dst.dispose();
      }
    }
  }

  const rows = layerPairs.length * nHeads * nHeads * KINDS.length;
  const out: CompositionScores = {
    src_layer: new Int32Array(rows),
    src_head: new Int32Array(rows),
    dst_layer: new Int32Array(rows),
    dst_head: new Int32Array(rows),
    kind: new Array<CompositionKind>(rows),
    score: new Float64Array(rows),
    baseline: 1 / Math.sqrt(c.d_model),
  };
  const pairIndex = (l1: number, l2: number) => layerPairs.findIndex(([a, b]) => a === l1 && b === l2);
  let r = 0;
  for (let l1 = 0; l1 < nLayers; l1++) {
    for (let h1 = 0; h1 < nHeads; h1++) {
      for (let l2 = l1 + 1; l2 < nLayers; l2++) {
        const base = pairIndex(l1, l2) * pairSize;
        for (let h2 = 0; h2 < nHeads; h2++) {
          KINDS.forEach((kind, k) => {
            out.src_layer[r] = l1;
            out.src_head[r] = h1;
            out.dst_layer[r] = l2;
            out.dst_head[r] = h2;
            out.kind[r] = kind;
            out.score[r] = scores[base + (h1 * KINDS.length + k) * nHeads + h2];
            r++;
          });
        }
      }
    }
  }
  return out;
}
