/**
 * The transformer forward pass of METRICS.md §2, in TransformerLens semantics (row
 * vectors, `x W`), reading top-down in the order data flows:
 *
 *   embed → per layer: block (norm → attention [→ norm → MLP]) → final norm → unembed
 *
 * from the components in this folder (embed.ts, norm.ts, attention.ts, rotary.ts,
 * mlp.ts, unembed.ts), each plain differentiable tfjs ops. The trainer runs the same
 * code under `tf.variableGrads`; the scorer passes `inference: true`, and how that pass
 * frees memory and which matMul it uses are decided in one place, `componentsFor`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from './config.ts';
import type { Weights } from '../checkpoint/checkpoint.ts';
import { attentionOutput, attentionPattern, causalMask, type AttentionContext, type AttentionWeights } from './attention.ts';
import { embed, positionRows } from './embed.ts';
import { mlp, type MlpWeights } from './mlp.ts';
import { norm, type NormWeights } from './norm.ts';
import { stackedMatMul } from './pieces.ts';
import { rotation } from './rotary.ts';
import { unembed } from './unembed.ts';

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
   * Free intermediates as the pass goes and run the per-(sequence, head) attention
   * products as separate matrices (see pieces.ts): faster on wasm and much smaller on
   * the device, but not differentiable. Default: false, what training differentiates.
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

/** One block's weights, as TL names them. */
interface BlockWeights {
  ln1: NormWeights;
  attn: AttentionWeights;
  ln2: NormWeights;
  /** Absent in attention-only models. */
  mlp?: MlpWeights;
}

function normWeights(p: Params, prefix: string): NormWeights {
  return { w: p[`${prefix}.w`], b: p[`${prefix}.b`] };
}

function blockWeights(p: Params, c: ModelConfig, l: number): BlockWeights {
  const at = `blocks.${l}`;
  // Grouped K and V are stored once per key/value head, under TL's underscored names.
  const kv = c.n_key_value_heads === null ? '' : '_';
  return {
    ln1: normWeights(p, `${at}.ln1`),
    attn: {
      W_Q: p[`${at}.attn.W_Q`], b_Q: p[`${at}.attn.b_Q`],
      W_K: p[`${at}.attn.${kv}W_K`], b_K: p[`${at}.attn.${kv}b_K`],
      W_V: p[`${at}.attn.${kv}W_V`], b_V: p[`${at}.attn.${kv}b_V`],
      W_O: p[`${at}.attn.W_O`], b_O: p[`${at}.attn.b_O`],
    },
    ln2: normWeights(p, `${at}.ln2`),
    mlp: c.attn_only
      ? undefined
      : { W_in: p[`${at}.mlp.W_in`], b_in: p[`${at}.mlp.b_in`], W_gate: p[`${at}.mlp.W_gate`], W_out: p[`${at}.mlp.W_out`], b_out: p[`${at}.mlp.b_out`] },
  };
}

/** The components as one pass calls them: the memory policy and fast paths applied, attention's shared inputs bound. */
interface Components {
  norm: (n: NormWeights, x: tf.Tensor3D) => tf.Tensor3D;
  attentionPattern: (w: AttentionWeights, layer: number, xn: tf.Tensor3D) => tf.Tensor4D;
  attentionOutput: (w: AttentionWeights, pattern: tf.Tensor4D, xn: tf.Tensor3D) => tf.Tensor3D;
  mlp: (w: MlpWeights, x: tf.Tensor3D) => tf.Tensor3D;
  /** Runs a block (or the last layer's pattern) as one step: in inference, what it made and does not return is freed. */
  step: <T extends tf.TensorContainer>(f: () => T) => T;
  /** Frees a residual stream that no later step reads; training keeps it, backprop reads it. */
  release: (t: tf.Tensor) => void;
}

/**
 * The one place that decides how a pass runs.
 *
 * Inference runs every component call in its own `tf.tidy`, so what it makes on the way
 * goes as soon as it returns, and frees each layer's residual stream once the next one
 * exists: besides the patterns asked for, the device holds a few [batch, pos, ·] tensors
 * at a time (growing the wasm heap is costly here, ~6 ms per MB, and a 12-layer model
 * would otherwise keep all twelve layers' intermediates until the caller's tidy ends).
 * Its per-(sequence, head) products run as separate 2-D matMuls (`stackedMatMul`, the
 * fast path on wasm), which reads tensors back to the host, so inference is not
 * differentiable.
 *
 * Training keeps everything (backprop reads it) and multiplies with the batched
 * `tf.matMul` that autodiff differentiates.
 */
function componentsFor(c: ModelConfig, shared: Omit<AttentionContext, 'matMul3d'> | undefined, inference: boolean): Components {
  const at: AttentionContext | undefined = shared && { ...shared, matMul3d: inference ? stackedMatMul : (a, b) => tf.matMul(a, b) };
  const scoped = inference
    ? <A extends unknown[], R extends tf.TensorContainer>(f: (...args: A) => R) => (...args: A): R => tf.tidy(() => f(...args))
    : <A extends unknown[], R>(f: (...args: A) => R) => f;
  return {
    norm: scoped((n: NormWeights, x: tf.Tensor3D) => norm(c, n, x)),
    attentionPattern: scoped((w: AttentionWeights, layer: number, xn: tf.Tensor3D) => attentionPattern(w, c, at!, layer, xn)),
    attentionOutput: scoped((w: AttentionWeights, pattern: tf.Tensor4D, xn: tf.Tensor3D) => attentionOutput(w, c, at!, pattern, xn)),
    mlp: scoped((w: MlpWeights, x: tf.Tensor3D) => mlp(w, c, x)),
    step: inference ? (f) => tf.tidy(f) : (f) => f(),
    release: inference ? (t) => t.dispose() : () => {},
  };
}

/**
 * One transformer block. x: [batch, pos, d_model] -> resid: [batch, pos, d_model], and
 * the block's attention pattern: [batch, head, qPos, kPos]
 */
function block(k: Components, c: ModelConfig, w: BlockWeights, layer: number, x: tf.Tensor3D): { resid: tf.Tensor3D; pattern: tf.Tensor4D } {
  const xn = k.norm(w.ln1, x);
  const pattern = k.attentionPattern(w.attn, layer, xn);
  const a = k.attentionOutput(w.attn, pattern, xn);
  if (c.attn_only) return { pattern, resid: tf.add(x, a) };
  if (c.parallel_attn_mlp) return { pattern, resid: tf.addN([x, a, k.mlp(w.mlp!, k.norm(w.ln2, x))]) };
  const mid = tf.add(x, a) as tf.Tensor3D;
  return { pattern, resid: tf.add(mid, k.mlp(w.mlp!, k.norm(w.ln2, mid))) };
}

/**
 * Runs the model on a batch of token ids.
 * tokens: [batch, pos] int32 -> patterns per requested layer [batch, head, qPos, kPos], logits [batch, pos, d_vocab]
 *
 * Stops as early as the request allows: without logits, nothing past the last requested
 * pattern is computed (not that layer's values or MLP, not the unembedding); the layers
 * before it run whole, MLPs included, since the pattern reads their output. Call inside
 * `tf.tidy` or dispose the outputs.
 */
export function forward(params: Params, c: ModelConfig, tokens: tf.Tensor2D, opts: ForwardOptions = {}): ForwardOutput {
  const pos = tokens.shape[1];
  const patternLayers = opts.patternLayers ?? [];
  const lastLayer = opts.logits ? c.n_layers - 1 : Math.max(-1, ...patternLayers);
  const readsPositions = c.positional_embedding_type === 'standard' || (c.positional_embedding_type === 'shortformer' && lastLayer >= 0);
  const positions = readsPositions ? positionRows(params['pos_embed.W_pos'], c, pos) : undefined; // (T, dm)
  let resid = embed(c, params['embed.W_E'], tokens, positions, opts.tokenEmbeddings); // (B, T, dm)

  // What every layer's attention shares: the causal mask, W_pos with shortformer positions, the rotary tables.
  const shared = lastLayer < 0 ? undefined : { mask: causalMask(pos), positions, rotation: c.positional_embedding_type === 'rotary' ? rotation(c, pos) : undefined };
  const k = componentsFor(c, shared, opts.inference === true);
  const patterns: tf.Tensor4D[] = [];
  for (let l = 0; l <= lastLayer; l++) {
    const w = blockWeights(params, c, l);
    if (l === lastLayer && !opts.logits) {
      // Nothing reads this layer's output: its pattern is all there is to compute.
      patterns.push(k.step(() => k.attentionPattern(w.attn, l, k.norm(w.ln1, resid)))); // (B, H, T, T)
      break;
    }
    const keep = patternLayers.includes(l);
    const out = k.step(() => {
      const { resid: next, pattern } = block(k, c, w, l, resid);
      return keep ? { resid: next, pattern } : { resid: next };
    });
    if (keep) patterns.push(out.pattern!);
    // The caller's embeddings are the caller's to free.
    if (resid !== opts.tokenEmbeddings) k.release(resid);
    resid = out.resid;
  }

  if (!opts.logits) return { patterns };
  const logits = k.step(() => unembed(params['unembed.W_U'], params['unembed.b_U'], k.norm(normWeights(params, 'ln_final'), resid))); // (B, T, V)
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
