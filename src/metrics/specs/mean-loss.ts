/** `mean_loss` (METRICS.md §6), from the losses metrics/loss.ts pools over a prompt set. */
import { defineMetric } from '../spec.ts';

export const meanLoss = defineMetric({
  name: 'mean_loss',
  kind: 'loss',
  per: 'prompt_set',
  definedIn: 'METRICS.md §6',
  range: null,
  summary: 'mean next-token loss over the prompt set, in nats',
  definition: 'mean next-token cross-entropy over positions `i ≥ 1`',
  readsAs: 'how well the model predicts the prompt set',
  fromLosses: (losses) => losses.mean_loss,
});
