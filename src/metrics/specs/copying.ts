/**
 * `copying` (METRICS.md §5), computed in ../copying.ts. It reads the weights alone, so
 * its per-head values repeat on every prompt set's heads rows.
 */
import { defineMetric } from '../spec.ts';

export const copying = defineMetric({
  name: 'copying',
  kind: 'weights',
  per: 'head',
  definedIn: 'METRICS.md §5',
  range: [-1, 1],
  summary: 'OV-circuit eigenvalue score Σ Re λ / Σ |λ|',
  definition: '`Σ Re λ / Σ |λ|` over the eigenvalues of the head\'s OV circuit `W_E R(W_V) W_O R(W_U)` '
    + '(computed through the equivalent `d_head × d_head` matrix)',
  readsAs: '+1: the head raises the logit of the token it attends to (Elhage et al. 2021)',
  // Imported here, not at the top: the registry must load without tfjs (see spec.ts).
  compute: async ({ params, checkpoint }) => (await import('../copying.ts')).copyingScores(params, checkpoint),
});
