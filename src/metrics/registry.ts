/**
 * Every metric, one spec each (specs/, the fields in spec.ts), in the order of the tables'
 * columns and the docs' lists. Everything else derives its metric lists from here: the
 * config schema's metric names, the scorer's dispatch (score.ts), the names classification
 * rules may test (classify.ts), the tables' score columns (pipeline/tables.ts), the
 * incremental keys (pipeline/incremental.ts), the report and the docs (`npm run docs`).
 *
 * Adding a score is its spec file and one line in METRICS; then its definition in
 * docs/METRICS.md, `npm run docs` for the generated lists, and, as it adds a column,
 * TABLES_VERSION in pipeline/tables.ts raised. Nothing here loads tfjs.
 */
import type { CheckpointScores } from '../score.ts';
import type { MetricKind, MetricSpec } from './spec.ts';
import { bigramKl } from './specs/bigram-kl.ts';
import { composition } from './specs/composition.ts';
import { copying } from './specs/copying.ts';
import { duplicateToken } from './specs/duplicate-token.ts';
import { firstToken } from './specs/first-token.ts';
import { iclScore } from './specs/icl-score.ts';
import { meanLoss } from './specs/mean-loss.ts';
import { prefixMatching } from './specs/prefix-matching.ts';
import { previousToken } from './specs/previous-token.ts';

export type { MetricKind, MetricPer, MetricSpec } from './spec.ts';

export const METRICS = [
  prefixMatching,
  duplicateToken,
  previousToken,
  firstToken,
  copying,
  composition,
  meanLoss,
  iclScore,
  bigramKl,
] as const satisfies readonly MetricSpec[];

type Registered = (typeof METRICS)[number];
export type MetricName = Registered['name'];
/** The spec of one metric, by name, with its literal kind and per. */
export type SpecOf<N extends MetricName> = Extract<Registered, { name: N }>;
/** The names of the metrics whose spec has the fields of F: `MetricWhere<{ kind: 'loss' }>` = 'mean_loss' | 'icl_score'. */
export type MetricWhere<F> = Extract<Registered, F>['name'];
export type MetricOfKind<K extends MetricKind> = MetricWhere<{ kind: K }>;
export type PatternMetricName = MetricOfKind<'pattern'>;
/** Scores with one value per head: the columns of `heads`, and what classification rules test. */
export type HeadMetric = MetricWhere<{ per: 'head' }>;
/** Per-head scores of the weights alone: one array per checkpoint, the same for every prompt set. */
export type HeadWeightsMetric = MetricWhere<{ kind: 'weights'; per: 'head' }>;
/** Scores with one value per prompt set of a checkpoint, or per checkpoint: the columns of `checkpoint_scores`. */
export type CheckpointMetric = MetricWhere<{ per: 'prompt_set' }> | MetricWhere<{ per: 'checkpoint' }>;

export const METRIC_NAMES: readonly MetricName[] = METRICS.map((m) => m.name);

const BY_NAME = new Map<string, Registered>(METRICS.map((m) => [m.name, m]));

export function metricSpec<N extends MetricName>(name: N): SpecOf<N> {
  return BY_NAME.get(name) as SpecOf<N>;
}

export function isMetricName(name: string): name is MetricName {
  return BY_NAME.has(name);
}

/** The names of the registered metrics whose spec passes `test`, in registry order. */
function namesWhere<N extends MetricName>(test: (m: Registered) => boolean): readonly N[] {
  return METRICS.filter(test).map((m) => m.name as N);
}

export const HEAD_METRICS = namesWhere<HeadMetric>((m) => m.per === 'head');
export const CHECKPOINT_METRICS = namesWhere<CheckpointMetric>((m) => m.per === 'prompt_set' || m.per === 'checkpoint');

/** The requested metrics of one kind, without repeats, in the order given. */
export function metricsOfKind<K extends MetricKind>(metrics: readonly MetricName[], kind: K): MetricOfKind<K>[] {
  return [...new Set(metrics)].filter((m): m is MetricOfKind<K> => metricSpec(m).kind === kind);
}

/**
 * A per-head score's values on prompt set `set` of a checkpoint: the set's own for a
 * pattern score, the checkpoint's for a weight score (the same on every set).
 * -> [n_layers * n_heads], `layer * n_heads + head`; undefined when not computed.
 */
export function headScores(scores: CheckpointScores, set: number, metric: HeadMetric): Float64Array | undefined {
  const spec = metricSpec(metric);
  return spec.kind === 'pattern' ? scores.promptSets[set]?.[spec.name] : scores[spec.name];
}
