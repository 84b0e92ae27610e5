/**
 * The unit of work the pipeline calls: every requested score for one checkpoint over
 * all its prompt sets, with weights uploaded once.
 */
import * as tf from '@tensorflow/tfjs-core';
import { nonFiniteError, weightBlock, weightOf, type Checkpoint } from './checkpoint/checkpoint.ts';
import { expectedShapes, type ModelConfig } from './model/config.ts';
import { HeadsweepError, messageOf, quote, shownPath, type Stage } from './errors.ts';
import type { Bigrams } from './metrics/bigrams.ts';
import { addLossBatch, batchLosses, checkIclPositions, emptyLossTotals, lossScores, type IclPositions } from './metrics/loss.ts';
import { maskedHeadSums } from './metrics/pattern.ts';
import {
  METRIC_NAMES, metricSpec, metricsOfKind,
  type HeadWeightsMetric, type MetricName, type MetricOfKind, type MetricWhere, type PatternMetricName,
} from './metrics/registry.ts';
import { disposeParams, forward, uploadParams, type Params } from './model/forward.ts';
import type { PromptSet } from './prompts/types.ts';
import { validatePromptSet } from './prompts/validate.ts';

export { METRIC_NAMES, type MetricName };

export interface ScoreOptions {
  metrics: readonly MetricName[];
  /** Sequences per forward batch. */
  batchSize: number;
  /** 0-based positions for icl_score (METRICS.md §6). */
  icl: IclPositions;
  /** The corpus bigram_kl compares the direct path with; needed only when bigram_kl is asked for. */
  bigrams?: Bigrams;
}

/**
 * One prompt set's scores, a field per metric that reads prompts (metrics/registry.ts):
 * per-head arrays indexed `layer * n_heads + head` for the pattern scores, one number for
 * the loss scores (icl_score is null when the sequences are too short for `late`).
 */
export interface PromptSetScores extends Partial<Record<PatternMetricName, Float64Array>>, Partial<Record<MetricOfKind<'loss'>, number | null>> {
  promptSet: string;
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

/**
 * A checkpoint's scores: its prompt sets', and a field per weight score: per-head arrays
 * [n_layers * n_heads], composition's rows, and one number per corpus score (bigram_kl,
 * in nats).
 */
export interface CheckpointScores
  extends Partial<Record<HeadWeightsMetric, Float64Array>>,
    Partial<Record<MetricWhere<{ per: 'head_pair' }>, CompositionScores>>,
    Partial<Record<MetricOfKind<'corpus'>, number>> {
  nLayers: number;
  nHeads: number;
  /** One entry per prompt set given, in order, holding the pattern and loss metrics asked for (possibly none). */
  promptSets: PromptSetScores[];
  seconds: { forward: number; weights: number };
}

/**
 * Scores one checkpoint. Prompt sets are checked against the model first; then weights
 * are uploaded once, each prompt set runs in batches of up to `batchSize` consecutive
 * sequences of one length, and the weight scores (bigram_kl among them) are computed
 * once. Every tensor it makes is disposed before it returns, also on error.
 */
export async function scoreCheckpoint(ck: Checkpoint, promptSets: readonly PromptSet[], opts: ScoreOptions): Promise<CheckpointScores> {
  const c = ck.config;
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
    throw new HeadsweepError(`batch size ${opts.batchSize} is not a positive integer`, { stage: 'config', key: 'batch_size' });
  }
  const request: ForwardRequest = {
    // A model without layers has no heads, hence no pattern scores to compute.
    patterns: c.n_layers > 0 ? metricsOfKind(opts.metrics, 'pattern') : [],
    loss: metricsOfKind(opts.metrics, 'loss'),
    batchSize: opts.batchSize,
    icl: opts.icl,
  };
  if (request.loss.includes('icl_score')) checkIclPositions(opts.icl);
  const bigrams = opts.bigrams;
  const corpusMetrics = metricsOfKind(opts.metrics, 'corpus');
  const wantsBigramKl = corpusMetrics.length > 0;
  if (wantsBigramKl && bigrams === undefined) {
    throw new HeadsweepError(`${corpusMetrics.join(', ')} needs the bigram counts of a corpus (ScoreOptions.bigrams)`, { stage: 'config', key: 'bigram' });
  }
  for (const set of promptSets) validatePromptSet(set, c);
  // Before any weight reaches the device: a NaN or an infinity would make every score
  // meaningless, and some (the eigenvalues behind copying) might never be computed.
  const nonFinite = nonFiniteError(ck);
  if (nonFinite !== null) throw nonFinite;

  const result: CheckpointScores = { nLayers: c.n_layers, nHeads: c.n_heads, promptSets: [], seconds: { forward: 0, weights: 0 } };
  // The vocabulary-sized matrices hold most of a checkpoint's bytes and are uploaded only
  // for what reads them on the device: the unembedding for logits, both for bigram_kl.
  // The forward pass looks embeddings up on the host, and copying streams them in slices.
  const onDevice = new Set(expectedShapes(c).keys());
  if (!wantsBigramKl) onDevice.delete('embed.W_E');
  if (!wantsBigramKl && request.loss.length === 0) for (const key of ['unembed.W_U', 'unembed.b_U']) onDevice.delete(key);
  const params = uploadParams(new Map([...onDevice].map((key) => [key, weightOf(ck, key)])));
  try {
    if (request.patterns.length > 0 || request.loss.length > 0) {
      const start = performance.now();
      for (const set of promptSets) {
        result.promptSets.push(await inStage('forward', ck.path, () => scorePromptSet(params, ck, set, request)));
      }
      result.seconds.forward = (performance.now() - start) / 1000;
    } else {
      result.promptSets = promptSets.map((set) => ({ promptSet: set.name }));
    }
    const start = performance.now();
    const input = { params, checkpoint: ck };
    for (const name of metricsOfKind(opts.metrics, 'weights')) {
      const spec = metricSpec(name);
      // One branch per shape of result, so that each assignment is typed.
      if (spec.per === 'head') result[spec.name] = await inStage('score', ck.path, () => spec.compute(input));
      else result[spec.name] = await inStage('score', ck.path, () => spec.compute(input));
    }
    for (const name of corpusMetrics) {
      const spec = metricSpec(name);
      result[spec.name] = await inStage('score', ck.path, () => spec.compute({ ...input, bigrams: bigrams! }));
    }
    result.seconds.weights = (performance.now() - start) / 1000;
  } finally {
    disposeParams(params);
  }
  return result;
}

/** What the forward pass of each batch must produce. */
interface ForwardRequest {
  patterns: PatternMetricName[];
  loss: MetricOfKind<'loss'>[];
  batchSize: number;
  icl: IclPositions;
}

async function scorePromptSet(params: Params, ck: Checkpoint, set: PromptSet, req: ForwardRequest): Promise<PromptSetScores> {
  const c = ck.config;
  const heads = c.n_layers * c.n_heads;
  const patternLayers = req.patterns.length > 0 ? Array.from({ length: c.n_layers }, (_, l) => l) : [];
  const wantLogits = req.loss.length > 0;
  const sums = req.patterns.map(() => new Float64Array(heads)); // per metric: [layer·head]
  const counts = req.patterns.map(() => 0);
  const loss = emptyLossTotals();

  for (const batch of equalLengthBatches(set.sequences, req.batchSize)) {
    const [nSeq, pos] = [batch.length, batch[0].length];
    const masks = req.patterns.map((m) => metricSpec(m).mask(batch));
    // One download per batch: per metric, per layer, the [head] sums; then the token losses.
    const reduced = tf.tidy(() => {
      const tokens = tf.tensor2d(concat(batch), [nSeq, pos], 'int32'); // (B, T)
      const tokenEmbeddings = tf.tensor3d(embedOnHost(ck, batch), [nSeq, pos, c.d_model]); // (B, T, dm)
      const out = forward(params, c, tokens, { patternLayers, logits: wantLogits, tokenEmbeddings, inference: true });
      const parts: tf.Tensor1D[] = [];
      for (const m of masks) {
        for (const pattern of out.patterns) parts.push(maskedHeadSums(pattern, m)); // (H)
      }
      if (out.logits) parts.push(batchLosses(out.logits, tokens)); // (B·(T-1))
      return tf.concat(parts); // (M·L·H [+ B·(T-1)])
    });
    const values = await reduced.data();
    reduced.dispose();
    checkFinite(ck, set, values, masks.length * heads);

    masks.forEach((m, i) => {
      for (let j = 0; j < heads; j++) sums[i][j] += values[i * heads + j];
      counts[i] += m.count;
    });
    if (wantLogits) addLossBatch(loss, values.subarray(masks.length * heads), nSeq, pos, req.icl);
  }

  const scores: PromptSetScores = { promptSet: set.name };
  req.patterns.forEach((m, i) => {
    // A score no query counts towards is undefined, not 0.
    scores[m] = sums[i].map((s) => (counts[i] === 0 ? NaN : s / counts[i]));
  });
  if (wantLogits) {
    const losses = lossScores(loss);
    for (const m of req.loss) scores[m] = metricSpec(m).fromLosses(losses);
  }
  return scores;
}

/**
 * Refuses a batch whose pattern sums or token losses are not finite. The weights are
 * (scoreCheckpoint checked them), so the float32 arithmetic overflowed: a score from it
 * would be a null nobody can explain, or an infinite loss.
 * values: [metric·layer·head pattern sums (the first `patternValues`), then token losses]
 */
function checkFinite(ck: Checkpoint, set: PromptSet, values: ArrayLike<number>, patternValues: number): void {
  for (let i = 0; i < values.length; i++) {
    if (values[i] - values[i] === 0) continue;
    const c = ck.config;
    const what = i < patternValues ? `attention patterns in layer ${Math.floor((i % (c.n_layers * c.n_heads)) / c.n_heads)}` : 'token losses';
    throw new HeadsweepError(
      `${shownPath(ck.path)}: the forward pass on prompt set ${quote(set.name)} gives non-finite ${what} although every weight is finite: the weights are too large for float32 arithmetic`,
      { stage: 'forward', file: ck.path },
    );
  }
}

/**
 * Splits sequences into forward batches: grouped by length (a batch is one rectangular
 * tensor), in order of first appearance, each group cut into runs of `size` consecutive
 * sequences.
 */
function* equalLengthBatches(sequences: readonly Int32Array[], size: number): Generator<Int32Array[]> {
  const byLength = new Map<number, Int32Array[]>();
  for (const seq of sequences) {
    const group = byLength.get(seq.length);
    if (group) group.push(seq);
    else byLength.set(seq.length, [seq]);
  }
  for (const group of byLength.values()) {
    for (let i = 0; i < group.length; i += size) yield group.slice(i, i + size);
  }
}

/** W_E[tokens] looked up on the host, each distinct token's row read once: [batch][pos] -> [batch·pos·d_model], row-major */
function embedOnHost(ck: Checkpoint, batch: readonly Int32Array[]): Float32Array {
  const dm = ck.config.d_model;
  const rows = new Map<number, Float32Array>();
  const out = new Float32Array(batch.length * batch[0].length * dm);
  let at = 0;
  for (const seq of batch) {
    for (const t of seq) {
      let row = rows.get(t);
      if (row === undefined) rows.set(t, (row = weightBlock(ck, 'embed.W_E', t, 1, 0, dm))); // (dm)
      out.set(row, at);
      at += dm;
    }
  }
  return out;
}

/** [batch][pos] -> [batch·pos], row-major */
function concat(batch: readonly Int32Array[]): Int32Array {
  const out = new Int32Array(batch.length * batch[0].length);
  batch.forEach((seq, b) => out.set(seq, b * seq.length));
  return out;
}

/** Runs `work`, turning a failure that is not already a HeadsweepError into one for `stage` and `file`. */
async function inStage<T>(stage: Stage, file: string, work: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof HeadsweepError && err.file !== undefined) throw err;
    // An error that names no file (a metric's own check) gets the checkpoint's path, so
    // its row in `errors` says which checkpoint it was.
    if (err instanceof HeadsweepError) throw new HeadsweepError(`${file}: ${err.message}`, { stage: err.stage, file, key: err.key, cause: err });
    throw new HeadsweepError(`${file}: ${stage} failed: ${messageOf(err)}`, { stage, file, cause: err });
  }
}
