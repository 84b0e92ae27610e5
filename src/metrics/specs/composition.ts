/**
 * Q-, K- and V-composition between heads of different layers (METRICS.md §5), computed in
 * ../composition.ts: one row per (earlier head, later head, kind) in a table of its own.
 */
import { defineMetric } from '../spec.ts';

export const composition = defineMetric({
  name: 'composition',
  kind: 'weights',
  per: 'head_pair',
  definedIn: 'METRICS.md §5',
  range: [0, 1],
  summary: 'how much a later head reads what an earlier head writes',
  definition: '`‖OV₁·QK₂‖/(‖OV₁‖‖QK₂‖)`, with `QK₂ᵀ` for K and `OV₂` for V (Frobenius norms)',
  readsAs: 'how much the later head reads what the earlier head writes; compare with `baseline = 1/√d_model`, '
    + 'the score of a random pair',
  columns: [
    { name: 'src_layer', type: 'Int32', nullable: false, meaning: 'layer of the earlier head, whose OV output is read' },
    { name: 'src_head', type: 'Int32', nullable: false, meaning: 'the earlier head within its layer' },
    { name: 'dst_layer', type: 'Int32', nullable: false, meaning: 'layer of the later head, reading it' },
    { name: 'dst_head', type: 'Int32', nullable: false, meaning: 'the later head within its layer' },
    { name: 'kind', type: 'Utf8', nullable: false, meaning: '`Q`, `K` or `V`: which input of the later head reads the earlier head\'s output' },
    { name: 'score', type: 'Float64', nullable: false, meaning: 'the composition score (METRICS.md §5), in [0, 1]' },
    { name: 'baseline', type: 'Float64', nullable: false, meaning: '1 / sqrt(d_model): what a random pair of heads scores; compare `score / baseline`' },
  ],
  compute: async ({ params, checkpoint }) => (await import('../composition.ts')).compositionScores(params, checkpoint.config),
});
