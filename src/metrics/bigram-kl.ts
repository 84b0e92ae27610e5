/**
 * `bigram_kl`: how far the model's direct path (embed → final norm → unembed, no
 * attention) is from the bigram statistics of a corpus. A zero-layer transformer is
 * only that path, so the best it can do is the corpus bigram table (Elhage et al. 2021,
 * "zero-layer transformers model bigram statistics"), and this score falls towards 0 as
 * it trains.
 *
 *   bigram_kl = Σ_a p(a) · KL( p(·|a) ‖ q(·|a) )      in nats, ≥ 0
 *   q(·|a)    = softmax( norm_final(W_E[a]) W_U + b_U )
 *
 * p(a, b) is the share of adjacent pairs (a, b) in the corpus, p(a) = Σ_b p(a, b) the
 * share of pairs whose first token is a (so p weights each row by how often the model
 * must predict after a), p(b|a) = p(a, b) / p(a). Rows with p(a) = 0 do not count.
 *
 * Choices, and why:
 * - norm_final is applied to W_E[a] alone (LN with ln_final.w and .b, LNPre without,
 *   nothing with no norm): for a zero-layer model that is exactly what the forward pass
 *   computes, since the residual stream at the unembedding is the embedding.
 * - Positional embeddings are left out: bigram statistics do not depend on position.
 *   For a zero-layer model with shortformer positions (W_pos only reaches Q and K) the
 *   direct path is then the whole model, and bigram_kl = (its mean next-token loss on
 *   the corpus pairs) − H(next | previous), the corpus's own bigram entropy. With
 *   standard positions it scores the token part of the path only.
 * - For models with layers it scores the direct path in isolation, as TransformerLens's
 *   direct logit attribution does: attention and MLP outputs are ignored, so on a model
 *   with MLPs it is still embed → final norm → unembed; what an MLP adds to the
 *   bigram prediction is not counted. Rotary models have no positional embedding to
 *   leave out.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../model/config.ts';
import { HeadsweepError } from '../errors.ts';
import { forward, type Params } from '../model/forward.ts';
import type { Bigrams } from './bigrams.ts';

/**
 * log q(b|a) for every pair, through forward() itself run as a zero-layer model with
 * shortformer positions on one-token sequences: that is the direct path of METRICS.md §2
 * (no layer runs, so neither W_pos nor any block weight is read).
 * -> [d_vocab, d_vocab], row a
 */
function directPathLogProbs(params: Params, c: ModelConfig): Float32Array {
  const direct: ModelConfig = { ...c, n_layers: 0, positional_embedding_type: 'shortformer' };
  return tf.tidy(() => {
    const tokens = tf.reshape(tf.range(0, c.d_vocab, 1, 'int32'), [c.d_vocab, 1]) as tf.Tensor2D; // (V, 1): every token once
    const { logits } = forward(params, direct, tokens, { logits: true }); // (V, 1, V)
    return tf.logSoftmax(tf.reshape(logits!, [c.d_vocab, c.d_vocab])).dataSync() as Float32Array; // (V, V)
  });
}

/** bigram_kl of a model against corpus bigrams (see the module comment), in nats. */
export function bigramKl(params: Params, c: ModelConfig, b: Bigrams): number {
  if (b.vocab > c.d_vocab) {
    throw new HeadsweepError(`bigram_kl: the corpus has ${b.vocab} token ids but the model's d_vocab is ${c.d_vocab}`, { stage: 'score', key: 'bigram_kl' });
  }
  if (b.total === 0) throw new HeadsweepError('bigram_kl: the corpus has no adjacent token pairs', { stage: 'score', key: 'bigram_kl' });
  const logQ = directPathLogProbs(params, c);
  let kl = 0;
  for (let a = 0; a < b.vocab; a++) {
    const row = b.counts.subarray(a * b.vocab, (a + 1) * b.vocab);
    const rowTotal = row.reduce((s, x) => s + x, 0);
    for (let next = 0; next < b.vocab; next++) {
      const n = row[next];
      if (n > 0) kl += (n / b.total) * (Math.log(n / rowTotal) - logQ[a * c.d_vocab + next]);
    }
  }
  return kl;
}
