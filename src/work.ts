/**
 * A checkpoint's scoring work and how it is shared out: its forward batches in one fixed
 * order, parts of that work (the weight scores, a run of consecutive batches) that
 * separate workers can score, and the merge of the parts' values into the checkpoint's
 * scores.
 *
 * Determinism: a batch is computed the same way whichever part holds it, and the merge
 * adds every batch's values in batch order, in float64, exactly as scoring the whole
 * checkpoint in one part does (`scoreCheckpoint` is one part merged the same way). So a
 * checkpoint gets the same bits from one worker or from several.
 *
 * Nothing here loads tfjs: the sweep's main thread splits and merges (pipeline/pool.ts).
 */
import { kvHeads, type ModelConfig } from './model/config.ts';
import { addLossBatch, emptyLossTotals, lossScores, lossTargets, type IclPositions, type LossRequest } from './metrics/loss.ts';
import { metricSpec, metricsOfKind, type MetricName, type MetricOfKind, type PatternMetricName } from './metrics/registry.ts';
import type { PromptSet } from './prompts/types.ts';
import type { CheckpointScores, PromptSetScores } from './score.ts';

/** What the forward pass of each batch produces, from the requested metrics. */
export interface ScoreRequest {
  patterns: PatternMetricName[];
  loss: MetricOfKind<'loss'>[];
  batchSize: number;
  icl: IclPositions;
}

export function scoreRequest(c: Pick<ModelConfig, 'n_layers'>, metrics: readonly MetricName[], batchSize: number, icl: IclPositions): ScoreRequest {
  return {
    // A model without layers has no heads, hence no pattern scores to compute.
    patterns: c.n_layers > 0 ? metricsOfKind(metrics, 'pattern') : [],
    loss: metricsOfKind(metrics, 'loss'),
    batchSize,
    icl,
  };
}

/** Which losses the request reads (metrics/loss.ts). */
export function lossRequest(req: ScoreRequest): LossRequest {
  return { every: req.loss.includes('mean_loss'), icl: req.icl };
}

/** Whether a forward batch has anything to compute. */
export function readsPrompts(req: ScoreRequest): boolean {
  return req.patterns.length > 0 || req.loss.length > 0;
}

/** One forward batch: sequences of one prompt set and one length, by index in the set. */
export interface ForwardBatch {
  set: number;
  sequences: number[];
}

/**
 * A checkpoint's forward batches, in the order their values are merged: prompt sets in
 * order; within a set, sequences grouped by length in order of first appearance (a batch
 * is one rectangular tensor), each group cut into runs of `size` consecutive sequences.
 */
export function forwardBatches(promptSets: readonly PromptSet[], size: number): ForwardBatch[] {
  const out: ForwardBatch[] = [];
  promptSets.forEach((set, s) => {
    const byLength = new Map<number, number[]>();
    set.sequences.forEach((seq, i) => {
      const group = byLength.get(seq.length);
      if (group) group.push(i);
      else byLength.set(seq.length, [i]);
    });
    for (const group of byLength.values()) {
      for (let i = 0; i < group.length; i += size) out.push({ set: s, sequences: group.slice(i, i + size) });
    }
  });
  return out;
}

/** The token ids of a batch's sequences: [batch][pos]. */
export function batchTokens(promptSets: readonly PromptSet[], b: ForwardBatch): Int32Array[] {
  return b.sequences.map((i) => promptSets[b.set].sequences[i]);
}

/** A part of a checkpoint's work: the weight scores or not, and the forward batches [from, to) of `forwardBatches`. */
export interface WorkPart {
  weights: boolean;
  batches: { from: number; to: number };
}

/** All of a checkpoint's work in one part. */
export function wholeWork(promptSets: readonly PromptSet[], batchSize: number): WorkPart {
  return { weights: true, batches: { from: 0, to: forwardBatches(promptSets, batchSize).length } };
}

/** What one forward batch adds to its prompt set's scores, as it came from the device. */
export interface BatchValues {
  /** Index in `forwardBatches`. */
  batch: number;
  /** Per pattern metric (request order), per layer, per head: the pattern summed over the metric's mask. [metric·layer·head] */
  headSums: Float32Array;
  /** Per pattern metric: the (sequence, query) pairs its mean runs over. */
  counts: Int32Array;
  /** With loss metrics: loss[i] at the batch's `lossTargets`, [sequence·target]. */
  losses?: Float64Array;
}

/** The weight scores of a checkpoint (those of `CheckpointScores` not read from prompts). */
export type WeightScores = Omit<CheckpointScores, 'nLayers' | 'nHeads' | 'promptSets' | 'seconds'>;

/** What a worker returns for one part. */
export interface PartScores {
  part: WorkPart;
  /** One per batch of the part, in batch order. */
  batches: BatchValues[];
  /** Present when the part computed the weight scores. */
  weights?: WeightScores;
  /** Seconds of this part's forward batches and weight scores. */
  seconds: { forward: number; weights: number };
}

/** A checkpoint's work in floating-point operations of its matrix products (`workCosts`). */
export interface WorkCosts {
  /** The weight scores. */
  weights: number;
  /** Each forward batch, its unembedding included. */
  batches: number[];
  /** The unembedding's share of each batch (0 without loss metrics). */
  unembed: number[];
}

/**
 * The floating-point operations of a checkpoint's matrix products: the weight scores,
 * and each forward batch. `splitWork` cuts by their ratios, the bench divides them by a
 * measured matMul rate (bench/floor.ts); they follow the products of model/ and
 * metrics/, and leave out what is small beside them.
 */
export function workCosts(c: ModelConfig, promptSets: readonly PromptSet[], metrics: readonly MetricName[], batchSize: number, icl: IclPositions): WorkCosts {
  const req = scoreRequest(c, metrics, batchSize, icl);
  const { d_model: dm, n_heads: H, d_head: dh, d_vocab: V, n_layers: L } = c;
  const kv = kvHeads(c);
  const weightNames = new Set(metrics);
  let weights = 0;
  if (weightNames.has('copying')) weights += 2 * dm * dm * V + L * 2 * H * dh * dm * dm;
  if (weightNames.has('composition')) weights += ((L * (L - 1)) / 2) * 2 * (H * dh) * dm * (3 * H * dh) + L * 16 * H * dm * dh * dh; // pairs; Gram matrices (4) and folds (1 + 3) per layer
  if (weightNames.has('bigram_kl')) weights += 2 * V * V * dm;
  const loss = lossRequest(req);
  const lastLayer = readsPrompts(req) ? L - 1 : -1;
  const unembed: number[] = [];
  const batches = forwardBatches(promptSets, batchSize).map((b) => {
    const pos = promptSets[b.set].sequences[b.sequences[0]].length;
    const n = b.sequences.length;
    const rows = n * pos;
    unembed.push(req.loss.length > 0 ? 2 * n * lossTargets(loss, pos).length * (dm + 1) * V : 0);
    let f = 0;
    for (let l = 0; l <= lastLayer; l++) {
      f += 2 * rows * dm * (H + kv) * dh + 2 * n * H * pos * pos * dh; // q, k; q·kᵀ
      if (l === lastLayer && req.loss.length === 0) continue;
      f += 2 * rows * dm * kv * dh + 2 * n * H * pos * pos * dh + 2 * rows * H * dh * dm; // v; pattern·v; W_O
      if (!c.attn_only) f += 2 * rows * dm * c.d_mlp! * (c.gated_mlp ? 3 : 2);
    }
    return f + unembed[unembed.length - 1];
  });
  return { weights, batches, unembed };
}

/**
 * Cuts a checkpoint's work into at most `parts` parts of about equal cost: the first
 * takes the weight scores, each part a run of consecutive batches. Parts with nothing to
 * do are left out. Which part computes what never changes a score (see the file comment).
 */
export function splitWork(costs: { weights: number; batches: number[] }, parts: number): WorkPart[] {
  const n = costs.batches.length;
  const total = costs.weights + costs.batches.reduce((a, b) => a + b, 0);
  // cumulative[i]: the cost of the weights and batches [0, i).
  const cumulative = [costs.weights];
  for (const b of costs.batches) cumulative.push(cumulative[cumulative.length - 1] + b);
  const out: WorkPart[] = [];
  let from = 0;
  for (let p = 0; p < parts; p++) {
    let to = n;
    if (p < parts - 1) {
      // The cut nearest an equal share of what is left for this part and those after it.
      const done = p === 0 ? 0 : cumulative[from];
      const goal = done + (total - done) / (parts - p);
      to = from;
      while (to < n && Math.abs(cumulative[to + 1] - goal) <= Math.abs(cumulative[to] - goal)) to++;
    }
    const part = { weights: p === 0, batches: { from, to } };
    if (part.weights || to > from) out.push(part);
    from = to;
  }
  return out;
}

/**
 * A checkpoint's scores from the values of its parts, which together hold every batch
 * once and the weight scores once (any split, any order of arrival).
 */
export function mergeParts(
  c: Pick<ModelConfig, 'n_layers' | 'n_heads'>,
  promptSets: readonly PromptSet[],
  req: ScoreRequest,
  parts: readonly PartScores[],
): CheckpointScores {
  const batches = forwardBatches(promptSets, req.batchSize);
  const values: (BatchValues | undefined)[] = new Array(batches.length);
  for (const part of parts) for (const v of part.batches) values[v.batch] = v;
  const weights = parts.find((p) => p.weights !== undefined)?.weights ?? {};
  const scores: CheckpointScores = {
    nLayers: c.n_layers,
    nHeads: c.n_heads,
    ...weights,
    promptSets: [],
    seconds: {
      forward: parts.reduce((s, p) => s + p.seconds.forward, 0),
      weights: parts.reduce((s, p) => s + p.seconds.weights, 0),
    },
  };
  if (!readsPrompts(req)) {
    scores.promptSets = promptSets.map((set) => ({ promptSet: set.name }));
    return scores;
  }
  const heads = c.n_layers * c.n_heads;
  const totals = promptSets.map(() => ({
    sums: req.patterns.map(() => new Float64Array(heads)), // per metric: [layer·head]
    counts: req.patterns.map(() => 0),
    loss: emptyLossTotals(),
  }));
  const loss = lossRequest(req);
  batches.forEach((b, i) => {
    const v = values[i];
    if (v === undefined) throw new Error(`batch ${i} of ${batches.length} is in no part`);
    const t = totals[b.set];
    req.patterns.forEach((_, m) => {
      for (let j = 0; j < heads; j++) t.sums[m][j] += v.headSums[m * heads + j];
      t.counts[m] += v.counts[m];
    });
    if (req.loss.length > 0) {
      const pos = promptSets[b.set].sequences[b.sequences[0]].length;
      addLossBatch(t.loss, loss, v.losses!, b.sequences.length, pos);
    }
  });
  scores.promptSets = promptSets.map((set, s) => {
    const t = totals[s];
    const out: PromptSetScores = { promptSet: set.name };
    // A score no query counts towards is undefined, not 0.
    req.patterns.forEach((m, i) => (out[m] = t.sums[i].map((x) => (t.counts[i] === 0 ? NaN : x / t.counts[i]))));
    if (req.loss.length > 0) {
      const losses = lossScores(t.loss);
      for (const m of req.loss) out[m] = metricSpec(m).fromLosses(losses);
    }
    return out;
  });
  return scores;
}
