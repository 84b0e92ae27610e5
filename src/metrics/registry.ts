/**
 * Every metric and the kind of input it reads: attention patterns, weights alone,
 * logits, or weights against the statistics of a corpus. The scorer looks metrics up
 * here, so adding one is a line in each table.
 */
import type { MetricName } from '../score.ts';
import { duplicateTokenMask } from './duplicate-token.ts';
import type { PatternMaskFn } from './pattern.ts';
import { prefixMatchingMask } from './prefix-matching.ts';
import { previousTokenMask } from './previous-token.ts';

export type MetricKind = 'pattern' | 'weights' | 'loss' | 'corpus';

export const METRIC_KIND = {
  prefix_matching: 'pattern',
  duplicate_token: 'pattern',
  previous_token: 'pattern',
  copying: 'weights',
  composition: 'weights',
  mean_loss: 'loss',
  icl_score: 'loss',
  bigram_kl: 'corpus',
} as const satisfies Record<MetricName, MetricKind>;

/** The metric names of one kind, as a type: `MetricOfKind<'pattern'>` = 'prefix_matching' | ... */
export type MetricOfKind<K extends MetricKind> = {
  [M in MetricName]: (typeof METRIC_KIND)[M] extends K ? M : never;
}[MetricName];

export type PatternMetricName = MetricOfKind<'pattern'>;

/** The mask that defines each attention-pattern score. */
export const PATTERN_MASKS: Record<PatternMetricName, PatternMaskFn> = {
  prefix_matching: prefixMatchingMask,
  duplicate_token: duplicateTokenMask,
  previous_token: previousTokenMask,
};

/** The requested metrics of one kind, without repeats, in the order given. */
export function metricsOfKind<K extends MetricKind>(metrics: readonly MetricName[], kind: K): MetricOfKind<K>[] {
  return [...new Set(metrics)].filter((m): m is MetricOfKind<K> => METRIC_KIND[m] === kind);
}
