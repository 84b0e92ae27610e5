/**
 * The unit of work the pipeline calls: every requested score for one checkpoint over
 * all its prompt sets, with weights uploaded once. (Interface fixed first so the
 * pipeline and the metrics can be built side by side; implementation follows.)
 */
import type { Checkpoint } from './checkpoint/checkpoint.ts';
import type { PromptSet } from './prompts/types.ts';

export const METRIC_NAMES = [
  'prefix_matching', 'duplicate_token', 'previous_token',
  'copying', 'composition',
  'mean_loss', 'icl_score',
] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

export interface ScoreOptions {
  metrics: readonly MetricName[];
  /** Sequences per forward batch. */
  batchSize: number;
  /** 0-based positions for icl_score (METRICS.md §6). */
  icl: { early: number; late: number };
}

/** Per-head scores; arrays are indexed `layer * n_heads + head`. */
export interface PromptSetScores {
  promptSet: string;
  prefix_matching?: Float64Array;
  duplicate_token?: Float64Array;
  previous_token?: Float64Array;
  mean_loss?: number;
  /** null when the sequences are too short for `late`. */
  icl_score?: number | null;
}

export type CompositionKind = 'Q' | 'K' | 'V';

/** One row per (src head, dst head, kind), src_layer < dst_layer. */
export interface CompositionScores {
  src_layer: Int32Array;
  src_head: Int32Array;
  dst_layer: Int32Array;
  dst_head: Int32Array;
  kind: CompositionKind[];
  score: Float64Array;
  /** 1 / sqrt(d_model) */
  baseline: number;
}

export interface CheckpointScores {
  nLayers: number;
  nHeads: number;
  promptSets: PromptSetScores[];
  /** [n_layers * n_heads] */
  copying?: Float64Array;
  composition?: CompositionScores;
  seconds: { forward: number; weights: number };
}
