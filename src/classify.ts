/**
 * Head classification: ordered rules that map one head's scores to a single label.
 * A rule matches when all of its conditions hold; the first matching rule in priority
 * order names the head, and a head no rule matches has no label (null).
 *
 * The schema is the one the pipeline's YAML `classify:` section is parsed with, so a rule
 * written there and a rule written here are the same object.
 */
import { z } from 'zod';
import { HEAD_METRICS, headScores, type HeadMetric } from './metrics/registry.ts';
import type { CheckpointScores } from './score.ts';

/** The per-head scores a rule can test: every score with one value per head (metrics/registry.ts). */
export { HEAD_METRICS, type HeadMetric };

export const COMPARISONS = ['>=', '>', '<=', '<'] as const;
export type Comparison = (typeof COMPARISONS)[number];

export const ConditionSchema = z.strictObject({
  metric: z.enum(HEAD_METRICS),
  op: z.enum(COMPARISONS),
  value: z.number(),
});
export type Condition = z.infer<typeof ConditionSchema>;

export const RuleSchema = z.strictObject({
  label: z.string().min(1),
  /** Conditions combined with AND. */
  all: z.array(ConditionSchema).min(1),
});
export type Rule = z.infer<typeof RuleSchema>;

/** Rules in priority order: the first that matches labels the head. */
export const RulesSchema = z.array(RuleSchema);

/**
 * Heuristic defaults, not definitions: thresholds chosen so that a head spending most of
 * its attention on the pattern counts (scores run from 0 to 1; a uniform head over ~100
 * keys scores near 0.01), after Olsson et al. 2022. Induction comes first because an
 * induction head also copies; a plain copying head is the weaker claim. An attention sink
 * comes last: parking attention on the first token is what a head does when no pattern
 * above applies, and a uniform head over ~100 keys already puts ~0.05 there.
 */
export const DEFAULT_RULES: readonly Rule[] = [
  {
    label: 'induction',
    all: [
      { metric: 'prefix_matching', op: '>=', value: 0.4 },
      { metric: 'copying', op: '>=', value: 0.3 },
    ],
  },
  { label: 'previous_token', all: [{ metric: 'previous_token', op: '>=', value: 0.4 }] },
  { label: 'duplicate_token', all: [{ metric: 'duplicate_token', op: '>=', value: 0.4 }] },
  { label: 'copying', all: [{ metric: 'copying', op: '>=', value: 0.5 }] },
  { label: 'first_token', all: [{ metric: 'first_token', op: '>=', value: 0.6 }] },
];

const COMPARE: Record<Comparison, (score: number, value: number) => boolean> = {
  '>=': (s, v) => s >= v,
  '>': (s, v) => s > v,
  '<=': (s, v) => s <= v,
  '<': (s, v) => s < v,
};

/** A condition on a score that is missing or NaN is false: an unmeasured head matches nothing. */
function holds(scores: Partial<Record<HeadMetric, number>>, cond: Condition): boolean {
  const score = scores[cond.metric];
  return score !== undefined && !Number.isNaN(score) && COMPARE[cond.op](score, cond.value);
}

/** The label of the first rule whose conditions all hold, or null. */
export function classifyHead(scores: Partial<Record<HeadMetric, number>>, rules: readonly Rule[] = DEFAULT_RULES): string | null {
  return rules.find((rule) => rule.all.every((cond) => holds(scores, cond)))?.label ?? null;
}

/**
 * Labels every head of a checkpoint once per prompt set, pairing that set's pattern scores
 * with the checkpoint's weight scores.
 * -> [promptSetIndex][layer * n_heads + head], null where no rule matches.
 */
export function labelHeads(scores: CheckpointScores, rules: readonly Rule[] = DEFAULT_RULES): (string | null)[][] {
  const heads = scores.nLayers * scores.nHeads;
  return scores.promptSets.map((_, p) => {
    const values = HEAD_METRICS.map((m) => [m, headScores(scores, p, m)] as const);
    return Array.from({ length: heads }, (_, k) =>
      classifyHead(Object.fromEntries(values.map(([m, v]) => [m, v?.[k]])), rules));
  });
}
