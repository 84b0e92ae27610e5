/**
 * What a metric declares about itself. Each metric is one spec in its own file under
 * `specs/`, listed once in `registry.ts`; the scorer's dispatch, the tables' columns,
 * the incremental keys, the names classification rules may test, the report and the
 * docs' lists all derive from the specs.
 *
 * Specs load without tfjs, because config parsing and `--help` read the registry and
 * tfjs takes about a second to load: a pattern score is defined by a host-side mask, and
 * a score whose computation needs tfjs imports it when first computed.
 */
import type { Checkpoint } from '../checkpoint/checkpoint.ts';
import type { Params } from '../model/forward.ts';
import type { CompositionScores } from '../score.ts';
import type { Bigrams } from './bigrams.ts';
import type { lossScores } from './loss.ts';
import type { PatternMaskFn } from './mask.ts';

/** What a score reads: attention patterns, the weights alone, logits, or the weights against a corpus's statistics. */
export type MetricKind = 'pattern' | 'weights' | 'loss' | 'corpus';

/**
 * What one value belongs to: a head (`layer`, `head`), a pair of heads, a prompt set of a
 * checkpoint, or a checkpoint. Scores that read prompts (pattern, loss) have one value per
 * prompt set besides; per-head weight scores repeat on every prompt set's rows.
 */
export type MetricPer = 'head' | 'head_pair' | 'prompt_set' | 'checkpoint';

/** Arrow types of table columns (pipeline/tables.ts maps them to apache-arrow's). */
export type ColumnType = 'Utf8' | 'Int32' | 'Int64' | 'Float64' | 'Bool' | 'List<Int32>';

/** One column of an output table, as TABLES.md documents it. */
export interface ColumnSpec {
  name: string;
  type: ColumnType;
  nullable: boolean;
  /** What a value means (TABLES.md). */
  meaning: string;
}

interface Described {
  name: string;
  kind: MetricKind;
  per: MetricPer;
  /** Where the exact definition is: a METRICS.md section, or the module for a score METRICS.md does not define. */
  definedIn: string;
  /** The values the score can take; null when it has no fixed bounds. Report axes span it. */
  range: readonly [number, number] | null;
  /** What the column holds, in a phrase (TABLES.md). */
  summary: string;
  /** When a computed score is null nonetheless, if it can be (TABLES.md). */
  nullWhen?: string;
  /** The definition in one line (README). */
  definition: string;
  /** How to read a value (README). */
  readsAs: string;
}

/** An attention-pattern score: the mean, over the queries its mask counts, of the attention on the keys it marks. */
export interface PatternMetricSpec extends Described {
  kind: 'pattern';
  per: 'head';
  mask: PatternMaskFn;
}

/** The losses of one forward pass with logits, from which every loss score is read. */
export type LossScores = ReturnType<typeof lossScores>;

/** A score read from a prompt set's next-token losses (metrics/loss.ts computes them all in one pass). */
export interface LossMetricSpec extends Described {
  kind: 'loss';
  per: 'prompt_set';
  fromLosses: (losses: LossScores) => number | null;
}

/** What a weight score reads: the uploaded weights, and the checkpoint for what stays in its file (W_E, W_U). */
export interface WeightsInput {
  params: Params;
  checkpoint: Checkpoint;
}

/** A per-head score of the weights alone; -> [n_layers * n_heads], `layer * n_heads + head`. */
export interface HeadWeightsMetricSpec extends Described {
  kind: 'weights';
  per: 'head';
  compute: (input: WeightsInput) => Promise<Float64Array>;
}

/** A score of pairs of heads, with a table of its own whose score columns it lists. */
export interface PairWeightsMetricSpec extends Described {
  kind: 'weights';
  per: 'head_pair';
  columns: readonly ColumnSpec[];
  compute: (input: WeightsInput) => Promise<CompositionScores>;
}

/** A per-checkpoint score of the weights against the bigram counts of the config's corpus. */
export interface CorpusMetricSpec extends Described {
  kind: 'corpus';
  per: 'checkpoint';
  compute: (input: WeightsInput & { bigrams: Bigrams }) => Promise<number>;
}

export type MetricSpec = PatternMetricSpec | LossMetricSpec | HeadWeightsMetricSpec | PairWeightsMetricSpec | CorpusMetricSpec;

/** A spec checked against its kind, keeping its literal name, kind and per for the registry's types. */
export function defineMetric<const S extends MetricSpec>(spec: S): S {
  return spec;
}

/** What differs between the per-head pattern scores of METRICS.md §4 (all range over [0, 1]). */
export type PatternMetricFields = Pick<PatternMetricSpec, 'name' | 'summary' | 'definition' | 'readsAs' | 'mask'>;

/** A per-head attention-pattern score of METRICS.md §4, from what differs: name, mask and docs. */
export function patternMetric<const F extends PatternMetricFields>(fields: F): F & PatternMetricSpec {
  return { kind: 'pattern', per: 'head', definedIn: 'METRICS.md §4', range: [0, 1], ...fields };
}
