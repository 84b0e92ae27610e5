/**
 * Q-, K- and V-composition scores between heads of earlier and later layers
 * (Elhage et al. 2021; TransformerLens `composition_scores`; METRICS.md §5):
 *
 *   Q: ||OV1 QK2|| / (||OV1|| ||QK2||)     K: ||OV1 QK2ᵀ|| / (||OV1|| ||QK2||)
 *   V: ||OV1 OV2|| / (||OV1|| ||OV2||)
 *
 * with OV = A B (A = R(W_V^h) [d_model, d_head], B = W_O^h [d_head, d_model]) and
 * QK = C Dᵀ (C = R(W_Q^h), D = R(W_K^h)), ||.|| the Frobenius norm.
 *
 * No [d_model, d_model] matrix is ever formed: for a product X M Yᵀ of rank-d_head factors,
 * ||X M Yᵀ||² = tr(Mᵀ (XᵀX) M (YᵀY)), so every norm is a sum over d_head × d_head Gram
 * matrices, and the cross terms M for all head pairs of two layers come from one matMul.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../checkpoint/config.ts';
import type { Params } from '../model/forward.ts';
import type { CompositionKind, CompositionScores } from '../score.ts';
import { foldReading } from './fold.ts';

const KINDS: readonly CompositionKind[] = ['Q', 'K', 'V'];

/** One layer's factors and their Gram matrices. */
// A type alias, not an interface, so tf.tidy can return it (aliases get an implicit index signature).
type LayerFactors = {
  /** W_O: [head, d_head, d_model] */
  wO: tf.Tensor3D;
  /** R(W_Q), R(W_K), R(W_V): [head, d_model, d_head] */
  rQ: tf.Tensor3D;
  rK: tf.Tensor3D;
  rV: tf.Tensor3D;
  /** AᵀA = R(W_V)ᵀR(W_V), B Bᵀ = W_O W_Oᵀ, CᵀC, DᵀD: [head, d_head, d_head] */
  gramV: tf.Tensor3D;
  gramO: tf.Tensor3D;
  gramQ: tf.Tensor3D;
  gramK: tf.Tensor3D;
  /** ||OV|| and ||QK|| (= ||QKᵀ||): [head] */
  normOV: tf.Tensor1D;
  normQK: tf.Tensor1D;
};

function layerFactors(params: Params, c: ModelConfig, l: number): LayerFactors {
  const p = `blocks.${l}.attn`;
  const wO = params[`${p}.W_O`] as tf.Tensor3D; // (H, dh, dm)
  const rQ = foldReading(params, c, l, params[`${p}.W_Q`]) as tf.Tensor3D; // (H, dm, dh)
  const rK = foldReading(params, c, l, params[`${p}.W_K`]) as tf.Tensor3D; // (H, dm, dh)
  const rV = foldReading(params, c, l, params[`${p}.W_V`]) as tf.Tensor3D; // (H, dm, dh)
  const gramV: tf.Tensor3D = tf.matMul(rV, rV, true, false); // (H, dh, dm) x (H, dm, dh) -> (H, dh, dh)
  const gramO: tf.Tensor3D = tf.matMul(wO, wO, false, true); // (H, dh, dm) x (H, dm, dh) -> (H, dh, dh)
  const gramQ: tf.Tensor3D = tf.matMul(rQ, rQ, true, false); // (H, dh, dh)
  const gramK: tf.Tensor3D = tf.matMul(rK, rK, true, false); // (H, dh, dh)
  // ||X Yᵀ||² = tr((XᵀX)(YᵀY)) = Σ (XᵀX) ∘ (YᵀY), both Gram matrices being symmetric.
  const normOV = tf.sqrt(tf.sum(tf.mul(gramV, gramO), [1, 2])) as tf.Tensor1D; // (H)
  const normQK = tf.sqrt(tf.sum(tf.mul(gramQ, gramK), [1, 2])) as tf.Tensor1D; // (H)
  return { wO, rQ, rK, rV, gramV, gramO, gramQ, gramK, normOV, normQK };
}

/**
 * ||A1 (B1 X2) Y2ᵀ||² for every head pair of two layers, where A1ᵀA1 = gramLeft and
 * Y2ᵀY2 = gramRight: Σ (gramLeft M) ∘ (M gramRight) with M = B1^h1 X2^h2.
 * b1: [H1, d_head, d_model], x2: [H2, d_model, d_head], gramLeft: [H1, d_head, d_head],
 * gramRight: [H2, d_head, d_head] -> [H1, H2]
 */
function pairNormsSquared(b1: tf.Tensor3D, x2: tf.Tensor3D, gramLeft: tf.Tensor3D, gramRight: tf.Tensor3D): tf.Tensor2D {
  const [h1, dHead, dModel] = b1.shape;
  const h2 = x2.shape[0];
  const x2Side = tf.reshape(tf.transpose(x2, [1, 0, 2]), [dModel, h2 * dHead]); // (dm, H2·dh)
  const m = tf.matMul(tf.reshape(b1, [h1 * dHead, dModel]), x2Side); // (H1·dh, dm) x (dm, H2·dh) -> (H1·dh, H2·dh)
  const left = tf.matMul(gramLeft, tf.reshape(m, [h1, dHead, h2 * dHead])); // (H1, dh, dh) x (H1, dh, H2·dh) -> (H1, dh, H2·dh)
  const mByDst = tf.transpose(tf.reshape(m, [h1 * dHead, h2, dHead]), [1, 0, 2]); // (H2, H1·dh, dh)
  const right = tf.matMul(mByDst, gramRight); // (H2, H1·dh, dh) x (H2, dh, dh) -> (H2, H1·dh, dh)
  const rightBySrc = tf.reshape(tf.transpose(right, [1, 0, 2]), [h1, dHead, h2 * dHead]); // (H1, dh, H2·dh)
  const product = tf.reshape(tf.mul(left, rightBySrc), [h1, dHead, h2, dHead]); // (H1, dh, H2, dh)
  return tf.sum(product, [1, 3]) as tf.Tensor2D; // (H1, H2)
}

/**
 * Q, K, V scores of every head of layer 1 (src) into every head of layer 2 (dst).
 * -> [kind Q/K/V, src_head, dst_head]
 */
function layerPairScores(src: LayerFactors, dst: LayerFactors): tf.Tensor3D {
  const ratio = (normSq: tf.Tensor2D, dstNorm: tf.Tensor1D): tf.Tensor2D => {
    // Rounding can leave a true zero slightly negative; the norm of a zero product is 0.
    const norm = tf.sqrt(tf.relu(normSq)); // (H1, H2)
    return tf.div(norm, tf.outerProduct(src.normOV, dstNorm)) as tf.Tensor2D; // (H1, H2) / (H1, H2)
  };
  const q = ratio(pairNormsSquared(src.wO, dst.rQ, src.gramV, dst.gramK), dst.normQK); // OV1 C2 D2ᵀ
  const k = ratio(pairNormsSquared(src.wO, dst.rK, src.gramV, dst.gramQ), dst.normQK); // OV1 D2 C2ᵀ
  const v = ratio(pairNormsSquared(src.wO, dst.rV, src.gramV, dst.gramO), dst.normOV); // OV1 A2 B2
  return tf.stack([q, k, v]) as tf.Tensor3D; // (3, H1, H2)
}

/**
 * Composition scores for every (src head, dst head, kind) with src_layer < dst_layer, rows
 * ordered by src_layer, src_head, dst_layer, dst_head, kind (Q, K, V).
 */
export function compositionScores(params: Params, c: ModelConfig): CompositionScores {
  const { n_layers: nLayers, n_heads: nHeads } = c;
  const layerPairs: [number, number][] = [];
  for (let l1 = 0; l1 < nLayers; l1++) for (let l2 = l1 + 1; l2 < nLayers; l2++) layerPairs.push([l1, l2]);

  // (layer pair, kind, H1, H2). Each layer pair is reduced and downloaded in its own tidy:
  // a pair's intermediates are (H·d_head)² floats per kind, and keeping those of all 66
  // pairs of a 12-layer model alive at once would not fit the wasm heap.
  const pairSize = KINDS.length * nHeads * nHeads;
  const scores = new Float32Array(layerPairs.length * pairSize);
  if (layerPairs.length > 0) {
    const factors = Array.from({ length: nLayers }, (_, l) => tf.tidy(() => layerFactors(params, c, l)));
    try {
      layerPairs.forEach(([l1, l2], i) => {
        const pair = tf.tidy(() => layerPairScores(factors[l1], factors[l2])); // (3, H1, H2)
        try {
          scores.set(pair.dataSync(), i * pairSize);
        } finally {
          pair.dispose();
        }
      });
    } finally {
      // W_O is the caller's parameter tensor, passed through; everything else was made here.
      for (const f of factors) for (const [name, t] of Object.entries(f)) if (name !== 'wO') t.dispose();
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
        const base = pairIndex(l1, l2) * KINDS.length * nHeads * nHeads;
        for (let h2 = 0; h2 < nHeads; h2++) {
          KINDS.forEach((kind, k) => {
            out.src_layer[r] = l1;
            out.src_head[r] = h1;
            out.dst_layer[r] = l2;
            out.dst_head[r] = h2;
            out.kind[r] = kind;
            out.score[r] = scores[base + (k * nHeads + h1) * nHeads + h2];
            r++;
          });
        }
      }
    }
  }
  return out;
}
