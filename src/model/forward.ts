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
import {
  attentionOutput, attentionPattern, causalMask, headsSideBySide, type AttentionContext, type AttentionShared, type AttentionWeights,
} from './attention.ts';
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
   * Free intermediates as the pass goes and run the per-(sequence, head) attention
   * products as separate matrices (see pieces.ts): faster on wasm and much smaller on
   * the device, but not differentiable. Default: false, what training differentiates.
   */
  inference?: boolean;
}

/** How a `Pass` runs: `forward`'s inference flag, and what only a scorer driving passes itself gives. */
export interface PassOptions extends Pick<ForwardOptions, 'inference'> {
  /** Whether the pass runs any layer (a model without layers, or a pass that stops before the first, has no attention to prepare). */
  layers: boolean;
  /** Inference: keeps rearranged weights for the batches that follow (`WeightLayouts`); the caller disposes it. */
  layouts?: WeightLayouts;
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

/**
 * Weights rearranged for the fast matMul, kept for every batch of a checkpoint: attention
 * projections with their heads side by side (`[d_model, head·d_head]`, attention.ts).
 *
 * Why keep them: tfjs-backend-wasm packs a matMul's right operand for XNNPACK once per
 * tensor and reuses the packing while the tensor lives, so a projection weight made anew
 * for every batch is rearranged and packed anew every time (`npx tsx bench/formulations.ts
 * --only unembed`, [808, 768] × [768, 768]: 1.3× the CPU time of the kept weight's
 * product). The scorer makes one per checkpoint (or per layer, scoring a layer at a
 * time) and disposes it with the weights.
 */
export class WeightLayouts {
  private readonly made = new Map<tf.Tensor, tf.Tensor2D>();

  /** `make(w)`, made once per `w` and kept until `dispose`. */
  get(w: tf.Tensor, make: (w: tf.Tensor) => tf.Tensor2D): tf.Tensor2D {
    let t = this.made.get(w);
    if (t === undefined || t.isDisposed) this.made.set(w, (t = tf.keep(make(w))));
    return t;
  }

  dispose(): void {
    for (const t of this.made.values()) t.dispose();
    this.made.clear();
  }
}

/** The components as one pass calls them: the memory policy and fast paths applied, attention's shared inputs bound. */
interface Components {
  norm: (n: NormWeights, x: tf.Tensor3D) => tf.Tensor3D;
  attentionPattern: (w: AttentionWeights, layer: number, xn: tf.Tensor3D) => tf.Tensor4D;
  attentionOutput: (w: AttentionWeights, pattern: tf.Tensor4D, xn: tf.Tensor3D) => tf.Tensor3D;
  mlp: (w: MlpWeights, x: tf.Tensor3D) => tf.Tensor3D;
  /** Runs a block (or the last layer's pattern) as one step: in inference, what it made and does not return is freed. */
  step: <T extends tf.TensorContainer>(f: () => T) => T;
  /** Frees a tensor that no later step reads; training keeps it, backprop reads it. */
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
 * differentiable; its projection weights are rearranged once per `WeightLayouts`.
 *
 * Training keeps everything (backprop reads it) and multiplies with the batched
 * `tf.matMul` that autodiff differentiates.
 */
function componentsFor(c: ModelConfig, shared: AttentionShared | undefined, inference: boolean, layouts: WeightLayouts | undefined): Components {
  const at: AttentionContext | undefined = shared && {
    ...shared,
    matMul3d: inference ? stackedMatMul : (a, b) => tf.matMul(a, b),
    sideBySide: layouts === undefined ? headsSideBySide : (w) => layouts.get(w, headsSideBySide),
  };
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
 * A forward pass over batches of `pos` tokens, step by step: `forward` drives one through
 * every layer of a batch; a scorer holding one layer's weights at a time drives one per
 * batch through the layer it holds (score.ts). Inference passes own what they make for
 * their layers (the causal mask, the rotary tables) until `dispose`.
 */
export class Pass {
  private readonly k: Components;
  private readonly made: tf.Tensor[] = [];
  private readonly positions: tf.Tensor2D | undefined;

  constructor(params: Params, readonly c: ModelConfig, pos: number, opts: PassOptions) {
    const inference = opts.inference === true;
    // In inference the pass owns what it makes (its steps' intermediates freed at once); training leaves all to its tape.
    const own = <T extends tf.TensorContainer>(make: () => T): T => {
      if (!inference) return make();
      const t = tf.tidy(make);
      for (const x of tensorsOf(t)) this.made.push(tf.keep(x));
      return t;
    };
    const readsPositions = c.positional_embedding_type === 'standard' || (c.positional_embedding_type === 'shortformer' && opts.layers);
    this.positions = readsPositions ? own(() => positionRows(params['pos_embed.W_pos'], c, pos)) : undefined; // (T, dm)
    // What every layer's attention shares: the causal mask, W_pos with shortformer positions, the rotary tables.
    const shared = opts.layers
      ? {
        mask: own(() => causalMask(pos)),
        positions: this.positions,
        rotation: c.positional_embedding_type === 'rotary' ? own(() => ({ ...rotation(c, pos) })) : undefined,
      }
      : undefined;
    this.k = componentsFor(c, shared, inference, opts.layouts);
  }

  /** tokens: [batch, pos] int32 -> resid: [batch, pos, d_model] (`tokenEmbeddings`: W_E[tokens], when the caller looked them up). */
  embed(params: Params, tokens: tf.Tensor2D, tokenEmbeddings?: tf.Tensor3D): tf.Tensor3D {
    return this.k.step(() => embed(this.c, params['embed.W_E'], tokens, this.positions, tokenEmbeddings)); // (B, T, dm)
  }

  /**
   * Layer l on the residual stream entering it, resid: [batch, pos, d_model]. `want`:
   * 'pattern' computes only the layer's pattern [batch, head, qPos, kPos] (nothing reads
   * its output), 'block' only the stream leaving it, 'both' both. `resid` is left to the caller.
   */
  layer(params: Params, l: number, resid: tf.Tensor3D, want: 'pattern' | 'block' | 'both'): { resid?: tf.Tensor3D; pattern?: tf.Tensor4D } {
    const w = blockWeights(params, this.c, l);
    const k = this.k;
    if (want === 'pattern') return { pattern: k.step(() => k.attentionPattern(w.attn, l, k.norm(w.ln1, resid))) }; // (B, H, T, T)
    return k.step(() => {
      const { resid: next, pattern } = block(k, this.c, w, l, resid);
      return want === 'both' ? { resid: next, pattern } : { resid: next };
    });
  }

  /** resid: [batch, pos, d_model] -> the residual after the final norm, what the unembedding reads: [batch, pos, d_model] */
  final(params: Params, resid: tf.Tensor3D): tf.Tensor3D {
    return this.k.norm(normWeights(params, 'ln_final'), resid);
  }

  /** Frees a tensor of the pass that no later step reads (inference only). */
  release(t: tf.Tensor): void {
    this.k.release(t);
  }

  dispose(): void {
    for (const t of this.made) t.dispose();
    this.made.length = 0;
  }
}

function tensorsOf(t: tf.TensorContainer): tf.Tensor[] {
  return t instanceof tf.Tensor ? [t] : Object.values(t as Record<string, tf.Tensor>);
}

/**
 * Runs the model on a batch of token ids.
 * tokens: [batch, pos] int32 -> patterns per requested layer [batch, head, qPos, kPos],
 * and, when asked for, logits [batch, pos, d_vocab]
 *
 * Stops as early as the request allows: without logits, nothing past the last requested
 * pattern is computed (not that layer's values or MLP, not the unembedding); the layers
 * before it run whole, MLPs included, since the pattern reads their output. Call inside
 * `tf.tidy` or dispose the outputs.
 */
export function forward(params: Params, c: ModelConfig, tokens: tf.Tensor2D, opts: ForwardOptions = {}): ForwardOutput {
  const patternLayers = opts.patternLayers ?? [];
  const whole = opts.logits === true;
  const lastLayer = whole ? c.n_layers - 1 : Math.max(-1, ...patternLayers);
  const pass = new Pass(params, c, tokens.shape[1], { inference: opts.inference, layers: lastLayer >= 0 });
  const out: ForwardOutput = { patterns: [] };
  try {
    let resid = pass.embed(params, tokens); // (B, T, dm)
    for (let l = 0; l <= lastLayer; l++) {
      const keep = patternLayers.includes(l);
      // The last layer's output is read only for logits: otherwise its pattern is all there is to compute.
      const step = pass.layer(params, l, resid, l === lastLayer && !whole ? 'pattern' : keep ? 'both' : 'block');
      if (keep) out.patterns.push(step.pattern!);
      if (step.resid === undefined) break;
      pass.release(resid);
      resid = step.resid;
    }
    if (!whole) return out;
    const xf = pass.final(params, resid); // (B, T, dm)
    pass.release(resid);
    out.logits = unembed(params['unembed.W_U'], params['unembed.b_U'], xf); // (B, T, V)
    pass.release(xf);
    return out;
  } finally {
    pass.dispose();
  }
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
