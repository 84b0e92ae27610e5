/** `icl_score` (METRICS.md §6), from the losses metrics/loss.ts pools over a prompt set. */
import { defineMetric } from '../spec.ts';

export const iclScore = defineMetric({
  name: 'icl_score',
  kind: 'loss',
  per: 'prompt_set',
  definedIn: 'METRICS.md §6',
  range: null,
  summary: 'loss at position `icl.late` minus loss at `icl.early`; negative = better late in the context',
  nullWhen: 'the sequences are shorter than `icl.late + 1`',
  definition: 'mean loss at position `late` minus mean loss at `early` (config `icl`, 0-based, BOS at 0)',
  readsAs: 'negative: the model predicts better later in the context, in-context learning (Olsson et al. 2022)',
  fromLosses: (losses) => losses.icl_score,
});
