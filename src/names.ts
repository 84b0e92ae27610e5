/**
 * Names shared by the library and the config schemas, kept in a module of their own so
 * that parsing a config or printing `--help` does not load tfjs (about a second).
 */

/** tfjs backends in the order `auto` tries them. */
export const BACKENDS = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];
export type BackendChoice = BackendName | 'auto';

/**
 * Every score a sweep can compute (METRICS.md §4–6, and bigram_kl: src/metrics/bigram-kl.ts).
 * bigram_kl also needs a corpus (the sweep config's `bigram` key), so a sweep asks for it
 * by default only when one is configured.
 */
export const METRIC_NAMES = [
  'prefix_matching', 'duplicate_token', 'previous_token',
  'copying', 'composition',
  'mean_loss', 'icl_score',
  'bigram_kl',
] as const;
export type MetricName = (typeof METRIC_NAMES)[number];
