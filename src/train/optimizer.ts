/**
 * AdamW with clipping of the global gradient norm, in tfjs ops.
 *
 * Not `tf.train.adam`: it has no decoupled weight decay (an L2 term added to the loss
 * would be rescaled by Adam's per-weight step size, which is what AdamW avoids) and no
 * global-norm clipping, and its moments are private, so they could not be saved for an
 * exact resume. The update, per weight tensor p with gradient g (Loshchilov & Hutter
 * 2019, as in torch.optim.AdamW):
 *
 *   g ← g · min(1, clip_norm / ‖all gradients‖₂)
 *   m ← β1 m + (1 − β1) g          v ← β2 v + (1 − β2) g²
 *   p ← p − lr_t · ( m / (1 − β1^t) / (√(v / (1 − β2^t)) + ε)  +  λ p )
 *
 * λ applies only to tensors of rank ≥ 2 (embeddings and projection matrices), not to
 * biases or LN gains, as nanoGPT does: decaying a gain towards 0 fights the norm it scales.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { OptimizerConfig } from './config.ts';

/** First and second moments per TL name, and the number of updates already applied. */
export interface AdamState {
  step: number;
  m: Record<string, tf.Variable>;
  v: Record<string, tf.Variable>;
}

/** Learning rate of update number `t` (1-based) out of `total`. */
export function learningRate(o: OptimizerConfig, t: number, total: number): number {
  if (t <= o.warmup_steps) return (o.lr * t) / o.warmup_steps;
  if (o.schedule === 'constant' || total <= o.warmup_steps) return o.lr;
  const progress = Math.min(1, (t - o.warmup_steps) / (total - o.warmup_steps));
  const shape = o.schedule === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return o.min_lr + (o.lr - o.min_lr) * shape;
}

/** A variable holding `init`'s values; `init` itself is disposed (the variable keeps its own reference). */
export function toVariable(init: tf.Tensor, trainable: boolean): tf.Variable {
  const v = tf.variable(init, trainable);
  init.dispose();
  return v;
}

/** Zero moments, or the saved ones (`moments.m`/`.v` per name) for a resume. */
export function createAdamState(
  params: Record<string, tf.Variable>,
  step = 0,
  moments?: { m: Record<string, Float32Array>; v: Record<string, Float32Array> },
): AdamState {
  const make = (which: 'm' | 'v') =>
    Object.fromEntries(
      Object.entries(params).map(([name, p]) => [
        name,
        toVariable(moments ? tf.tensor(moments[which][name], p.shape, 'float32') : tf.zerosLike(p), false),
      ]),
    );
  return { step, m: make('m'), v: make('v') };
}

export function disposeAdamState(s: AdamState): void {
  for (const t of [...Object.values(s.m), ...Object.values(s.v)]) t.dispose();
}

/**
 * Applies one update in place (params, moments, step). `grads` is what `tf.variableGrads`
 * returns (keyed by variable name); the caller disposes it. Returns the global gradient
 * norm before clipping.
 */
export function adamwStep(
  params: Record<string, tf.Variable>,
  grads: tf.NamedTensorMap,
  state: AdamState,
  o: OptimizerConfig,
  lr: number,
): number {
  const t = state.step + 1;
  const [b1, b2] = o.betas;
  const gradOf = (name: string) => grads[params[name].name];
  // A weight the loss does not reach (W_pos of a zero-layer shortformer model) has no
  // gradient and is left alone, moments and decay included, as torch.optim does.
  const trained = Object.keys(params).filter((name) => gradOf(name) != null);
  const norm = tf.tidy(() => tf.sqrt(tf.addN(trained.map((name) => tf.sum(tf.square(gradOf(name)))))));
  const gradNorm = norm.dataSync()[0];
  norm.dispose();
  const scale = o.clip_norm !== null && gradNorm > o.clip_norm ? o.clip_norm / gradNorm : 1;
  const bias1 = 1 - b1 ** t;
  const bias2 = 1 - b2 ** t;
  tf.tidy(() => {
    for (const name of trained) {
      const p = params[name];
      const g = scale === 1 ? gradOf(name) : tf.mul(gradOf(name), scale);
      const m = tf.add(tf.mul(state.m[name], b1), tf.mul(g, 1 - b1));
      const v = tf.add(tf.mul(state.v[name], b2), tf.mul(tf.square(g), 1 - b2));
      let update = tf.div(tf.div(m, bias1), tf.add(tf.sqrt(tf.div(v, bias2)), o.eps));
      if (p.rank >= 2 && o.weight_decay > 0) update = tf.add(update, tf.mul(p, o.weight_decay));
      state.m[name].assign(m);
      state.v[name].assign(v);
      p.assign(tf.sub(p, tf.mul(update, lr)));
    }
  });
  state.step = t;
  return gradNorm;
}
