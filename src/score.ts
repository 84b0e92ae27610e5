/**
 * The unit of work the pipeline calls: every requested score for one checkpoint over
 * all its prompt sets, or one part of that work (work.ts), with weights uploaded once.
 *
 * How a part runs:
 * - Its forward batches (`forwardBatches`) go through the model with every pattern
 *   reduced to per-head masked sums as soon as its layer made it; with loss metrics the
 *   final residual is kept at the positions a loss score reads (metrics/loss.ts).
 * - The unembedding then runs over those rows a vocabulary slice at a time
 *   (model/unembed.ts), W_U read from the checkpoint a slice at a time.
 * - The weight scores read the weights alone.
 * A model whose layers do not all fit the backend's memory at once (checkpoint/memory.ts)
 * is run a layer at a time: each layer's weights are uploaded, every batch of the part
 * goes through that layer, and they are freed before the next. Each batch is computed
 * by the same operations either way, so both ways give the same scores.
 */
import * as tf from '@tensorflow/tfjs-core';
import { nonFiniteError, weightBlock, weightOf, type Checkpoint } from './checkpoint/checkpoint.ts';
import { backendFit, VOCABULARY_TENSORS } from './checkpoint/memory.ts';
import { expectedShapes, type ModelConfig } from './model/config.ts';
import { HeadsweepError, messageOf, quote, shownPath, type Stage } from './errors.ts';
import type { Bigrams } from './metrics/bigrams.ts';
import { firstNonFinite } from './metrics/finite.ts';
import { checkIclPositions, lossTargets, type IclPositions } from './metrics/loss.ts';
import type { PatternMask } from './metrics/mask.ts';
import { maskedHeadSums } from './metrics/pattern.ts';
import {
  METRIC_NAMES, metricSpec, metricsOfKind,
  type HeadWeightsMetric, type MetricName, type MetricOfKind, type MetricWhere, type PatternMetricName,
} from './metrics/registry.ts';
import { disposeParams, Pass, uploadParams, WeightLayouts, type Params } from './model/forward.ts';
import { unembedLogSumExp, unembedRows, VOCAB_SLICE, type UnembedColumns } from './model/unembed.ts';
import type { PromptSet } from './prompts/types.ts';
import { validatePromptSet } from './prompts/validate.ts';
import {
  batchTokens, forwardBatches, lossRequest, mergeParts, readsPrompts, scoreRequest, wholeWork,
  type BatchValues, type PartScores, type ScoreRequest, type WeightScores, type WorkPart,
} from './work.ts';

export { METRIC_NAMES, type MetricName };

export interface ScoreOptions {
  metrics: readonly MetricName[];
  /** Sequences per forward batch. */
  batchSize: number;
  /** 0-based positions for icl_score (METRICS.md §6). */
  icl: IclPositions;
  /** The corpus bigram_kl compares the direct path with; needed only when bigram_kl is asked for. */
  bigrams?: Bigrams;
  /**
   * Upload and run one layer at a time. Default: only when the model's layers do not all
   * fit the backend's memory at once (checkpoint/memory.ts). The scores are the same.
   */
  layerByLayer?: boolean;
  /** Vocabulary columns per slice of the unembedding (default `VOCAB_SLICE`); the scores do not depend on it beyond float32 rounding. */
  vocabSlice?: number;
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
  /** Seconds spent on the forward batches and on the weight scores (summed over parts). */
  seconds: { forward: number; weights: number };
}

/**
 * Scores one checkpoint: its whole work as one part (see work.ts), merged. Every tensor
 * it makes is disposed before it returns, also on error.
 */
export async function scoreCheckpoint(ck: Checkpoint, promptSets: readonly PromptSet[], opts: ScoreOptions): Promise<CheckpointScores> {
  const part = await scoreCheckpointPart(ck, promptSets, opts, wholeWork(promptSets, opts.batchSize));
  return mergeParts(ck.config, promptSets, scoreRequest(ck.config, opts.metrics, opts.batchSize, opts.icl), [part]);
}

/**
 * Scores one part of a checkpoint's work: the forward batches `part.batches` of
 * `forwardBatches(promptSets, opts.batchSize)`, and the weight scores when `part.weights`.
 * Prompt sets and options are checked first. Every tensor it makes is disposed before it
 * returns, also on error.
 */
export async function scoreCheckpointPart(ck: Checkpoint, promptSets: readonly PromptSet[], opts: ScoreOptions, part: WorkPart): Promise<PartScores> {
  const c = ck.config;
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
    throw new HeadsweepError(`batch size ${opts.batchSize} is not a positive integer`, { stage: 'config', key: 'batch_size' });
  }
  if (opts.vocabSlice !== undefined && !(Number.isInteger(opts.vocabSlice) && opts.vocabSlice >= 1)) {
    throw new HeadsweepError(`vocabulary slice ${opts.vocabSlice} is not a positive integer`, { stage: 'config', key: 'vocabSlice' });
  }
  const req = scoreRequest(c, opts.metrics, opts.batchSize, opts.icl);
  if (req.loss.includes('icl_score')) checkIclPositions(opts.icl);
  const corpusMetrics = metricsOfKind(opts.metrics, 'corpus');
  const wantsBigramKl = corpusMetrics.length > 0;
  if (wantsBigramKl && opts.bigrams === undefined) {
    throw new HeadsweepError(`${corpusMetrics.join(', ')} needs the bigram counts of a corpus (ScoreOptions.bigrams)`, { stage: 'config', key: 'bigram' });
  }
  for (const set of promptSets) validatePromptSet(set, c);
  // Before any weight reaches the device: a NaN or an infinity would make every score
  // meaningless, and some (the eigenvalues behind copying) might never be computed.
  const nonFinite = nonFiniteError(ck);
  if (nonFinite !== null) throw nonFinite;

  const all = forwardBatches(promptSets, opts.batchSize);
  const batches = readsPrompts(req) ? all.slice(part.batches.from, part.batches.to) : [];
  const out: PartScores = { part, batches: [], seconds: { forward: 0, weights: 0 } };
  // Only the part that computes the weight scores runs bigram_kl, which reads the vocabulary matrices whole.
  const vocabularyOnDevice = wantsBigramKl && part.weights;
  const layered = opts.layerByLayer ?? !backendFit(c, tf.getBackend() as Parameters<typeof backendFit>[1], vocabularyOnDevice).whole;

  // The vocabulary-sized matrices hold most of a checkpoint's bytes and are uploaded only
  // for bigram_kl, which reads them whole: the forward pass looks embeddings up on the
  // host, the unembedding and copying read them from the checkpoint a slice at a time.
  const onDevice = [...expectedShapes(c).keys()].filter((key) => vocabularyOnDevice || !VOCABULARY_TENSORS.includes(key));
  // A part without forward batches uploads only what the weight scores read.
  const forHere = layered ? onDevice.filter((key) => !isLayerKey(key)) : batches.length > 0 ? onDevice : readByWeightScores(onDevice);
  const device = new DeviceWeights(ck, forHere);
  try {
    if (batches.length > 0) {
      const start = performance.now();
      const run = () => runBatches(ck, device, req, promptSets, batches, part.batches.from, layered, opts.vocabSlice ?? VOCAB_SLICE);
      out.batches = await inStage('forward', ck.path, run);
      out.seconds.forward = (performance.now() - start) / 1000;
    }
    if (part.weights) {
      const start = performance.now();
      // A layer at a time, the weight scores are given what they read.
      if (layered) device.add(readByWeightScores(onDevice.filter(isLayerKey)));
      out.weights = await weightScores(ck, device.params, opts, corpusMetrics);
      out.seconds.weights = (performance.now() - start) / 1000;
    }
  } finally {
    device.dispose();
  }
  return out;
}

/** The keys the weight scores read: attention weights and norms, never the MLPs. */
function readByWeightScores(keys: readonly string[]): string[] {
  return keys.filter((key) => !/\.(mlp|ln2)\./.test(key));
}

/** Whether a TL key is one layer's weight. */
function isLayerKey(key: string): boolean {
  return key.startsWith('blocks.');
}

/** The weights on the device for a part, uploaded from the checkpoint's host weights by key. */
class DeviceWeights {
  readonly params: Params;

  constructor(private readonly ck: Checkpoint, keys: readonly string[]) {
    this.params = uploadParams(new Map(keys.map((key) => [key, weightOf(ck, key)])));
  }

  add(keys: readonly string[]): void {
    Object.assign(this.params, uploadParams(new Map(keys.map((key) => [key, weightOf(this.ck, key)]))));
  }

  /** Uploads layer l's weights for `use`, then frees them and what `layouts` made from them. */
  withLayer<T>(l: number, keys: readonly string[], layouts: WeightLayouts, use: (params: Params) => T): T {
    const prefix = `blocks.${l}.`;
    const layer = uploadParams(new Map(keys.filter((k) => k.startsWith(prefix)).map((key) => [key, weightOf(this.ck, key)])));
    try {
      return use({ ...this.params, ...layer });
    } finally {
      layouts.dispose();
      disposeParams(layer);
    }
  }

  dispose(): void {
    disposeParams(this.params);
  }
}

/** One batch on its way through the layers. */
interface BatchInFlight {
  index: number;
  tokens: Int32Array[];
  masks: PatternMask[];
  pass: Pass;
  /** The residual stream entering the next layer: [batch, pos, d_model]. */
  resid: tf.Tensor3D;
  /** Per layer done: the per-metric per-head masked sums, [metric·head]. */
  sums: Float32Array[];
  /** With loss metrics, after the last layer: the rows the unembedding reads, [batch·target, d_model + 1]. */
  rows?: tf.Tensor2D;
}

/**
 * Runs `batches` (indices `first`, `first + 1`, … in `forwardBatches`) through the model:
 * with every layer on the device, each batch through all layers in turn; a layer at a
 * time, every batch through each layer. Then the unembedding, when losses are asked for.
 */
function runBatches(
  ck: Checkpoint, device: DeviceWeights, req: ScoreRequest, promptSets: readonly PromptSet[],
  batches: ReturnType<typeof forwardBatches>, first: number, layered: boolean, vocabSlice: number,
): BatchValues[] {
  const c = ck.config;
  const wantLoss = req.loss.length > 0;
  const lastLayer = c.n_layers - 1;
  const layerKeys = [...expectedShapes(c).keys()].filter(isLayerKey);
  const inFlight: BatchInFlight[] = [];
  // Rearranged weights, kept for every batch: for the part, or a layer at a time for that layer.
  const layouts = new WeightLayouts();

  const start = (i: number): BatchInFlight => {
    const tokens = batchTokens(promptSets, batches[i]);
    const [n, pos] = [tokens.length, tokens[0].length];
    const pass = new Pass(device.params, c, pos, { inference: true, layouts, layers: c.n_layers > 0 });
    const resid = tf.tidy(() => {
      const ids = tf.tensor2d(concat(tokens), [n, pos], 'int32'); // (B, T)
      return pass.embed(device.params, ids, tf.tensor3d(embedOnHost(ck, tokens), [n, pos, c.d_model])); // (B, T, dm)
    });
    return { index: first + i, tokens, masks: req.patterns.map((m) => metricSpec(m).mask(tokens)), pass, resid, sums: [] };
  };
  // Layer l of one batch: its pattern reduced to sums at once, the stream carried on.
  const advance = (b: BatchInFlight, params: Params, l: number) => {
    const needPattern = req.patterns.length > 0;
    const want = l === lastLayer && !wantLoss ? 'pattern' : needPattern ? 'both' : 'block';
    const step = b.pass.layer(params, l, b.resid, want);
    if (step.pattern !== undefined) {
      const pattern = step.pattern;
      b.sums.push(tf.tidy(() => tf.concat(b.masks.map((m) => maskedHeadSums(pattern, m))).dataSync() as Float32Array)); // (M·H)
      pattern.dispose();
    }
    if (step.resid !== undefined) {
      b.resid.dispose();
      b.resid = step.resid;
    }
  };
  // After the last layer: the final residual at the positions the losses read.
  const finish = (b: BatchInFlight) => {
    if (wantLoss) {
      const pos = b.tokens[0].length;
      const queries = lossTargets(lossRequest(req), pos).map((i) => i - 1);
      b.rows = tf.tidy(() => unembedRows(b.pass.final(device.params, b.resid), queries)); // (B·n, dm + 1)
    }
    b.resid.dispose();
    b.pass.dispose();
  };

  try {
    if (!layered) {
      for (let i = 0; i < batches.length; i++) {
        const b = start(i);
        inFlight.push(b);
        for (let l = 0; l <= lastLayer; l++) advance(b, device.params, l);
        finish(b);
      }
    } else {
      for (let i = 0; i < batches.length; i++) inFlight.push(start(i));
      for (let l = 0; l <= lastLayer; l++) {
        device.withLayer(l, layerKeys, layouts, (params) => {
          for (const b of inFlight) advance(b, params, l);
        });
      }
      inFlight.forEach(finish);
    }

    const losses = wantLoss ? batchLosses(ck, req, inFlight, vocabSlice) : undefined;
    return inFlight.map((b, i) => {
      const values = {
        batch: b.index,
        headSums: metricMajor(b.sums, req.patterns.length, c.n_heads),
        counts: Int32Array.from(b.masks, (m) => m.count),
        losses: losses?.[i],
      };
      checkFinite(ck, promptSets[batches[i].set], values);
      return values;
    });
  } finally {
    layouts.dispose();
    for (const b of inFlight) {
      if (!b.resid.isDisposed) b.resid.dispose();
      b.rows?.dispose();
      b.pass.dispose();
    }
  }
}

/**
 * Refuses a batch whose pattern sums or token losses are not finite. The weights are
 * (scoreCheckpointPart checked them), so the float32 arithmetic overflowed: a score from
 * it would be a null nobody can explain, or an infinite loss.
 */
function checkFinite(ck: Checkpoint, set: PromptSet, values: BatchValues): void {
  const c = ck.config;
  const refuse = (what: string): never => {
    throw new HeadsweepError(
      `${shownPath(ck.path)}: the forward pass on prompt set ${quote(set.name)} gives non-finite ${what} although every weight is finite: the weights are too large for float32 arithmetic`,
      { stage: 'forward', file: ck.path },
    );
  };
  // headSums: [metric·layer·head]
  const at = firstNonFinite(values.headSums);
  if (at >= 0) refuse(`attention patterns in layer ${Math.floor((at % (c.n_layers * c.n_heads)) / c.n_heads)}`);
  if (values.losses !== undefined && firstNonFinite(values.losses) >= 0) refuse('token losses');
}

/** Per layer [metric·head] -> [metric·layer·head], the order work.ts merges. */
function metricMajor(perLayer: readonly Float32Array[], metrics: number, heads: number): Float32Array {
  const out = new Float32Array(metrics * perLayer.length * heads);
  perLayer.forEach((sums, l) => {
    for (let m = 0; m < metrics; m++) out.set(sums.subarray(m * heads, (m + 1) * heads), (m * perLayer.length + l) * heads);
  });
  return out;
}

/** loss[i] = logΣexp − the target's logit at every batch's loss targets, [sequence·target] per batch. */
function batchLosses(ck: Checkpoint, req: ScoreRequest, batches: readonly BatchInFlight[], vocabSlice: number): Float64Array[] {
  const loss = lossRequest(req);
  const targets = batches.map((b) => {
    const at = lossTargets(loss, b.tokens[0].length);
    const out = new Int32Array(b.tokens.length * at.length);
    b.tokens.forEach((seq, s) => at.forEach((i, j) => (out[s * at.length + j] = seq[i])));
    return out;
  });
  const logits = unembedLogSumExp(unembedColumns(ck), batches.map((b) => b.rows!), targets, vocabSlice);
  return logits.map((r) => r.logSumExp.map((lse, j) => lse - r.target[j]));
}

/** W_U and b_U of the checkpoint a vocabulary slice at a time (W_U stays in the file, see pipeline/worker.ts). */
function unembedColumns(ck: Checkpoint): UnembedColumns {
  const { d_model: dModel, d_vocab: vocab } = ck.config;
  const bias = weightOf(ck, 'unembed.b_U').data; // (V)
  return {
    d_model: dModel,
    d_vocab: vocab,
    read: (from, n, into) => {
      weightBlock(ck, 'unembed.W_U', 0, dModel, from, n, into.subarray(0, dModel * n)); // (dm, n)
      into.set(bias.subarray(from, from + n), dModel * n); // (n)
    },
  };
}

/** The weight and corpus scores asked for. */
async function weightScores(ck: Checkpoint, params: Params, opts: ScoreOptions, corpusMetrics: MetricOfKind<'corpus'>[]): Promise<WeightScores> {
  const result: WeightScores = {};
  const input = { params, checkpoint: ck };
  for (const name of metricsOfKind(opts.metrics, 'weights')) {
    const spec = metricSpec(name);
    // One branch per shape of result, so that each assignment is typed.
    if (spec.per === 'head') result[spec.name] = await inStage('score', ck.path, () => spec.compute(input));
    else result[spec.name] = await inStage('score', ck.path, () => spec.compute(input));
  }
  for (const name of corpusMetrics) {
    const spec = metricSpec(name);
    result[spec.name] = await inStage('score', ck.path, () => spec.compute({ ...input, bigrams: opts.bigrams! }));
  }
  return result;
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
