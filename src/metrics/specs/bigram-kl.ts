/** `bigram_kl`, defined and computed in ../bigram-kl.ts. */
import { defineMetric } from '../spec.ts';

export const bigramKl = defineMetric({
  name: 'bigram_kl',
  kind: 'corpus',
  per: 'checkpoint',
  definedIn: 'src/metrics/bigram-kl.ts',
  range: null,
  summary: 'Σ_a p(a) · KL(p(·\\|a) ‖ softmax(norm(W_E[a]) W_U + b_U)) in nats against the `bigram` corpus: '
    + 'how far the direct path (no attention, no MLP) is from the corpus\'s bigram statistics',
  definition: '`Σ_a p(a) · KL(p(·\\|a) ‖ softmax(norm_final(W_E[a]) W_U + b_U))` over the bigram counts of the corpus '
    + 'named by the config\'s `bigram: {path, tokenizer}`',
  readsAs: 'how far the direct path (embed → final norm → unembed, the whole of a zero-layer model) is from the corpus bigram statistics '
    + '(Elhage et al. 2021); falls towards 0 as a 0-layer model trains. On models with layers it is still that direct path alone: '
    + 'attention and MLP outputs are left out, so what an MLP adds to the bigram prediction is not counted. Only with a `bigram` corpus',
  compute: async ({ params, checkpoint, bigrams }) => (await import('../bigram-kl.ts')).bigramKl(params, checkpoint.config, bigrams),
});
