/**
 * The floor under a sweep's time: the work of its matrix products, counted from the model
 * config and the prompt set, divided by the fastest rate this backend multiplies at here.
 *
 * Nearly all of a checkpoint's arithmetic is in 2-D matrix products, and on the wasm
 * backend every one of them runs in the same XNNPACK kernel, so however the products are
 * arranged, a checkpoint costs at least (its product GFLOP) / (that kernel's rate) on one
 * thread, and that over the workers when every worker has a checkpoint. The bench prints
 * this beside the measured time and the target, so that a target below the floor reads
 * as what it is. Elementwise work (norms, activations, softmax), the eigenvalues, reading
 * the file and writing tables all come on top.
 *
 * Counted per checkpoint, 2·m·k·n per [m, k] × [k, n] product, as src/ computes them:
 * - forward (src/model/): per layer the Q, K, V and O projections (K and V per key/value
 *   head), q·kᵀ and pattern·v per sequence and head, the MLP's input product(s) and output
 *   product; the pass stops after the last layer's pattern (its Q and K, q·kᵀ) unless a
 *   loss score reads the final residual;
 * - unembedding (src/model/unembed.ts): [rows, d_model] × [d_model, d_vocab] over the rows
 *   the loss scores read (every position but the first for mean_loss, two for icl_score);
 * - copying (src/metrics/copying.ts): W_U·W_E once, then per layer G·R(W_V) and per head
 *   W_O^h (G R(W_V^h));
 * - composition (src/metrics/composition.ts): per pair of layers one
 *   [H·d_head, d_model] × [d_model, 3·H·d_head] product.
 */
import { initBackend, tf } from '../src/backend.ts';
import { kvHeads, type ModelConfig } from '../src/model/config.ts';
import type { BackendChoice } from '../src/names.ts';

/** A sweep's prompts: sequences per checkpoint and tokens per sequence. */
export interface PromptShape {
  sequences: number;
  tokens: number;
}

export interface ProductWork {
  forward: number;
  unembed: number;
  weights: number;
}

const mm = (m: number, k: number, n: number) => 2 * m * k * n;

/** GFLOP of the matrix products of one checkpoint, by stage. */
export function productGflop(c: ModelConfig, metrics: readonly string[], prompts: PromptShape): ProductWork {
  const { n_layers: L, n_heads: H, d_head: dh, d_model: dm, d_vocab: V } = c;
  const kv = kvHeads(c);
  const { sequences: S, tokens: T } = prompts;
  const N = S * T;
  const patterns = metrics.some((m) => ['prefix_matching', 'duplicate_token', 'previous_token', 'first_token'].includes(m));
  const loss = metrics.includes('mean_loss') || metrics.includes('icl_score');
  const lossRows = metrics.includes('mean_loss') ? S * (T - 1) : metrics.includes('icl_score') ? 2 * S : 0;

  const scores = mm(T, dh, T) * S * H; // q·kᵀ per sequence and head
  const patternOnly = mm(N, dm, (H + kv) * dh) + scores;
  const mlp = c.attn_only || c.d_mlp === null ? 0 : mm(N, dm, c.d_mlp) * (c.gated_mlp ? 2 : 1) + mm(N, c.d_mlp, dm);
  const block = mm(N, dm, (H + 2 * kv) * dh) + 2 * scores + mm(N, H * dh, dm) + mlp;
  const forward = !patterns && !loss ? 0 : loss ? L * block : (L - 1) * block + patternOnly;

  let weights = 0;
  if (metrics.includes('copying')) weights += mm(dm, V, dm) + L * mm(dm, dm, H * dh) + L * H * mm(dh, dm, dh);
  if (metrics.includes('composition')) weights += ((L * (L - 1)) / 2) * mm(H * dh, dm, 3 * H * dh);
  return { forward: forward / 1e9, unembed: mm(lossRows, dm, V) / 1e9 * (loss ? 1 : 0), weights: weights / 1e9 };
}

/**
 * The fastest GFLOP/s of one thread's 2-D matMul on `backend` here: the best of several
 * calls on three shapes the sweeps run most (an MLP input product, a Q/K/V projection,
 * and one vocabulary slice of W_U·W_E), each operand uploaded once as the sweep does.
 */
export async function matMulRate(backend: BackendChoice): Promise<{ backend: string; gflops: number }> {
  const name = await initBackend(backend);
  let best = 0;
  for (const [m, k, n] of [[808, 768, 3072], [808, 768, 2304], [768, 2048, 768]]) {
    const a = tf.randomNormal([m, k], 0, 0.05, 'float32', 1) as tf.Tensor2D;
    const b = tf.randomNormal([k, n], 0, 0.05, 'float32', 2) as tf.Tensor2D;
    for (let i = 0; i < 12; i++) {
      const start = performance.now();
      tf.tidy(() => tf.sum(tf.matMul(a, b)).dataSync());
      const seconds = (performance.now() - start) / 1000;
      if (i >= 2) best = Math.max(best, mm(m, k, n) / 1e9 / seconds);
    }
    a.dispose();
    b.dispose();
  }
  return { backend: name, gflops: best };
}
