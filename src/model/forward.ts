/**
 * The attention-only transformer forward pass of METRICS.md §2, in TransformerLens
 * semantics (row vectors, `x W`), reading top-down in the order data flows:
 * embed → (norm → attention) per layer → final norm → unembed.
 *
 * It is written in differentiable tfjs ops, so the trainer runs the same code under
 * `tf.variableGrads`. Per-head weights are laid side by side (`[d_model, head·d_head]`)
 * so each projection is one large 2-D matMul, the formulation the wasm backend runs
 * fastest. The scorer passes `inference: true`, which runs the per-(sequence, head)
 * attention products as separate 2-D matrices (pieces.ts) and frees each layer's
 * intermediates as it goes; that path reads tensors back to the host, so it is not
 * differentiable.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from './config.ts';
import type { Weights } from '../checkpoint/checkpoint.ts';
import { stackedMatMul } from './pieces.ts';

/** TL state-dict name → tensor (weights on the active backend, or trainable variables). */
export type Params = Record<string, tf.Tensor>;

export interface ForwardOptions {
  /** Layers whose attention patterns to return. Default: none. */
  patternLayers?: readonly number[];
  /** Compute logits (needs every layer and the unembedding). Default: false. */
  logits?: boolean;
  /**
   * W_E[tokens], [batch, pos, d_model], when the caller looked the embeddings up itself
   * (the scorer does, on the host, so the vocabulary-sized W_E never goes to the device).
   * Default: gathered here from `embed.W_E`.
   */
  tokenEmbeddings?: tf.Tensor3D;
  /**
   * Run the per-(sequence, head) attention products as separate matrices (see
   * pieces.ts): faster on wasm, but not differentiable. Default: false, one batched
   * matMul, which is what training differentiates.
   */
  inference?: boolean;
}

export interface ForwardOutput {
  /** One entry per layer in `patternLayers`, in that order. pattern: [batch, head, qPos, kPos] */
  patterns: tf.Tensor4D[];
  /** logits: [batch, pos, d_vocab], present only when asked for. */
  logits?: tf.Tensor3D;
}

/**
 * Uploads host weights once per checkpoint, those `keep` accepts (default: all); the
 * caller disposes them with `disposeParams`.
 */
export function uploadParams(weights: Weights, keep: (name: string) => boolean = () => true): Params {
  const params: Params = {};
  for (const [name, t] of weights) if (keep(name)) params[name] = tf.tensor(t.data, t.shape, 'float32');
  return params;
}

export function disposeParams(params: Params): void {
  for (const t of Object.values(params)) t.dispose();
}

/**
 * Normalisation before attention or unembedding.
 * x: [batch, pos, d_model] -> [batch, pos, d_model]
 */
function norm(c: ModelConfig, x: tf.Tensor3D, w: tf.Tensor | undefined, b: tf.Tensor | undefined): tf.Tensor3D {
  if (c.normalization_type === null) return x;
  const { mean, variance } = tf.moments(x, -1, true); // biased variance over d_model
  const scaled = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, c.eps))) as tf.Tensor3D; // (B, T, dm) - (B, T, 1) -> (B, T, dm)
  if (c.normalization_type === 'LNPre') return scaled;
  return tf.add(tf.mul(scaled, w!), b!) as tf.Tensor3D; // (B, T, dm) * (dm) + (dm)
}

/** [head, d_model, d_head] -> [d_model, head·d_head] */
function headsSideBySide(w: tf.Tensor): tf.Tensor2D {
  const [nHeads, dModel, dHead] = w.shape;
  return tf.reshape(tf.transpose(w, [1, 0, 2]), [dModel, nHeads * dHead]); // (H, dm, dh) -> (dm, H, dh) -> (dm, H·dh)
}

/**
 * One projection for all heads.
 * x2d: [batch·pos, d_model], W: [head, d_model, d_head], b: [head, d_head] -> [batch, head, pos, d_head]
 */
function project(x2d: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor, batch: number, pos: number): tf.Tensor4D {
  const [nHeads, , dHead] = w.shape;
  const flat = tf.add(tf.matMul(x2d, headsSideBySide(w)), tf.reshape(b, [nHeads * dHead])); // (B·T, dm) x (dm, H·dh)
  return tf.transpose(tf.reshape(flat, [batch, pos, nHeads, dHead]), [0, 2, 1, 3]) as tf.Tensor4D; // (B, T, H, dh) -> (B, H, T, dh)
}

/** Additive causal mask: 0 on and below the diagonal, -1e9 above. [qPos, kPos] */
function causalMask(pos: number): tf.Tensor2D {
  const lower = tf.linalg.bandPart(tf.ones([pos, pos]), -1, 0); // (T, T): 1 where kPos ≤ qPos
  return tf.mul(tf.sub(1, lower), -1e9) as tf.Tensor2D; // (T, T)
}

/**
 * Runs the model on a batch of token ids.
 * tokens: [batch, pos] int32 -> patterns per requested layer [batch, head, qPos, kPos], logits [batch, pos, d_vocab]
 *
 * Stops as early as the request allows: without logits, nothing past the last requested
 * pattern is computed (not that layer's values, not the unembedding). Call inside
 * `tf.tidy` or dispose the outputs.
 */
export function forward(params: Params, c: ModelConfig, tokens: tf.Tensor2D, opts: ForwardOptions = {}): ForwardOutput {
  const [batch, pos] = tokens.shape;
  const { n_heads: nHeads, d_head: dHead } = c;
  // Interim guard while the full-transformer forward pass is built (issue: MLPs, RMS,
  // rotary, GQA): the config layer already describes these models.
  if (!c.attn_only || c.positional_embedding_type === 'rotary' || c.n_key_value_heads !== null || c.normalization_type === 'RMS' || c.normalization_type === 'RMSPre' || c.scale_attn_by_inverse_layer_idx) {
    throw new Error('forward: models with MLPs, RMS norms, rotary positions, grouped-query attention or per-layer scaling are not implemented yet');
  }
  const patternLayers = opts.patternLayers ?? [];
  const lastLayer = opts.logits ? c.n_layers - 1 : Math.max(-1, ...patternLayers);
  const patterns: tf.Tensor4D[] = [];

  const posEmbed = tf.slice(params['pos_embed.W_pos'], [0, 0], [pos, c.d_model]); // (T, dm)
  let x = opts.tokenEmbeddings ?? (tf.gather(params['embed.W_E'], tokens) as tf.Tensor3D); // (B, T, dm)
  const bmm = opts.inference ? stackedMatMul : (a: tf.Tensor3D, b: tf.Tensor3D) => tf.matMul(a, b);
  if (c.positional_embedding_type === 'standard') x = tf.add(x, posEmbed);
  const mask = lastLayer >= 0 ? causalMask(pos) : undefined;

  // Inference frees intermediates as soon as the step that made them is done, so besides
  // the patterns asked for the device holds a few [batch, pos, ·] tensors at a time
  // (growing the wasm heap is costly here, ~6 ms per MB, and a 12-layer model would
  // otherwise keep all twelve layers' until the caller's tidy ends). Training keeps
  // them: backprop reads them.
  const scope = opts.inference ? <T extends tf.TensorContainer>(f: () => T) => tf.tidy(f) : <T>(f: () => T) => f();
  for (let l = 0; l <= lastLayer; l++) {
    const p = `blocks.${l}`;
    const withValues = l < lastLayer || opts.logits === true;
    const resid = x;
    const out = scope(() => {
      const xn = scope(() => norm(c, resid, params[`${p}.ln1.w`], params[`${p}.ln1.b`])); // (B, T, dm)
      const pattern = scope(() => {
        const qkIn = c.positional_embedding_type === 'shortformer' ? tf.add(xn, posEmbed) : xn;
        const qkIn2d = tf.reshape(qkIn, [batch * pos, c.d_model]) as tf.Tensor2D;
        const q = scope(() => tf.reshape(project(qkIn2d, params[`${p}.attn.W_Q`], params[`${p}.attn.b_Q`], batch, pos), [batch * nHeads, pos, dHead])) as tf.Tensor3D; // (B·H, T, dh)
        const kT = scope(() => {
          const k = project(qkIn2d, params[`${p}.attn.W_K`], params[`${p}.attn.b_K`], batch, pos); // (B, H, T, dh)
          return tf.reshape(tf.transpose(k, [0, 1, 3, 2]), [batch * nHeads, dHead, pos]) as tf.Tensor3D; // (B·H, dh, T)
        });
        const qk = bmm(q, kT); // (B·H, T, dh) x (B·H, dh, T) -> (B·H, T, T)
        const scores = tf.add(tf.div(tf.reshape(qk, [batch, nHeads, pos, pos]), Math.sqrt(dHead)), mask!); // (B, H, T, T) + (T, T)
        return tf.softmax(scores) as tf.Tensor4D; // (B, H, T, T)
      });
      if (!withValues) return { pattern };

      const z = scope(() => {
        const xn2d = tf.reshape(xn, [batch * pos, c.d_model]) as tf.Tensor2D;
        const v = project(xn2d, params[`${p}.attn.W_V`], params[`${p}.attn.b_V`], batch, pos); // (B, H, T, dh)
        return bmm(tf.reshape(pattern, [batch * nHeads, pos, pos]) as tf.Tensor3D, tf.reshape(v, [batch * nHeads, pos, dHead]) as tf.Tensor3D); // (B·H, T, T) x (B·H, T, dh) -> (B·H, T, dh)
      });
      const zFlat = tf.reshape(tf.transpose(tf.reshape(z, [batch, nHeads, pos, dHead]), [0, 2, 1, 3]), [batch * pos, nHeads * dHead]); // (B, T, H, dh) -> (B·T, H·dh)
      const wO = tf.reshape(params[`${p}.attn.W_O`], [nHeads * dHead, c.d_model]); // (H·dh, dm): sums over heads
      const attnOut = tf.add(tf.matMul(zFlat, wO), params[`${p}.attn.b_O`]); // (B·T, dm)
      return { pattern, x: tf.add(resid, tf.reshape(attnOut, [batch, pos, c.d_model])) as tf.Tensor3D }; // (B, T, dm)
    });
    if (patternLayers.includes(l)) patterns.push(out.pattern);
    else if (opts.inference) out.pattern.dispose();
    if (out.x === undefined) break;
    // The caller's embeddings are the caller's to free.
    if (opts.inference && x !== opts.tokenEmbeddings) x.dispose();
    x = out.x;
  }

  if (!opts.logits) return { patterns };
  const logits = scope(() => {
    const xf = norm(c, x, params['ln_final.w'], params['ln_final.b']); // (B, T, dm)
    const flat = tf.add(
      tf.matMul(tf.reshape(xf, [batch * pos, c.d_model]), params['unembed.W_U']), // (B·T, dm) x (dm, V)
      params['unembed.b_U'],
    );
    return tf.reshape(flat, [batch, pos, c.d_vocab]) as tf.Tensor3D; // (B·T, V) -> (B, T, V)
  });
  return { patterns, logits };
}

/**
 * Next-token loss at every position after the first.
 * logits: [batch, pos, d_vocab], tokens: [batch, pos] -> loss: [batch, pos-1], loss[:, i-1] = -log p(t[i] | t[<i])
 */
export function tokenLosses(logits: tf.Tensor3D, tokens: tf.Tensor2D): tf.Tensor2D {
  const [batch, pos, vocab] = logits.shape;
  const n = batch * (pos - 1);
  const pred = tf.reshape(tf.slice(logits, [0, 0, 0], [batch, pos - 1, vocab]), [n, vocab]) as tf.Tensor2D; // (B·(T-1), V)
  const targets = tf.reshape(tf.slice(tokens, [0, 1], [batch, pos - 1]), [n]); // (B·(T-1))
  const lse = tf.logSumExp(pred, -1); // (B·(T-1))
  // Gather the target logit by flat index rather than a one-hot product: a one-hot of a
  // 50k vocabulary would cost batch·pos·d_vocab floats.
  const flatIdx = tf.add(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(vocab, 'int32')), tf.cast(targets, 'int32')); // (B·(T-1)): row·V + target
  const picked = tf.gather(tf.reshape(pred, [n * vocab]), flatIdx); // (B·(T-1)·V) -> (B·(T-1))
  return tf.reshape(tf.sub(lse, picked), [batch, pos - 1]) as tf.Tensor2D; // (B, T-1)
}
