/**
 * Names shared by the library and the config schemas, kept in modules that do not load
 * tfjs, so that parsing a config or printing `--help` does not pay for it (about a second).
 */

/** tfjs backends in the order `auto` tries them. */
export const BACKENDS = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];
export type BackendChoice = BackendName | 'auto';

/**
 * Every score a sweep can compute, from the metric registry (src/metrics/registry.ts).
 * bigram_kl also needs a corpus (the sweep config's `bigram` key), so a sweep asks for it
 * by default only when one is configured.
 */
export { METRIC_NAMES, type MetricName } from './metrics/registry.ts';
