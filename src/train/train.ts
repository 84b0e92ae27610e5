/**
 * The training loop behind `headsweep train`: transformers, attention-only or with MLPs,
 * trained through the same `forward()` the sweep scores with, so a trained checkpoint is
 * by construction one the sweep reads.
 *
 * Output, in `out_dir`:
 * - `step-NNNNNN.safetensors` at each scheduled step (step 0 = the initial weights):
 *   TransformerLens names, F32, metadata `config` (the resolved TL config as JSON, every
 *   field of METRICS.md §1 spelt out, plus model_name and seed), `step`, `tokens_seen`
 *   and `train_config`.
 * - `state/step-NNNNNN.adam.safetensors` beside the latest checkpoint only: AdamW's
 *   moments (`m.<TL name>`, `v.<TL name>`) and the run's identity. Weights come from the
 *   checkpoint (F32, exact) and batches from (seed, step), so resuming from it replays
 *   the uninterrupted run bit for bit.
 */
import { existsSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend, tf, type BackendChoice, type BackendName } from '../backend.ts';
import { loadCheckpoint, type Weights } from '../checkpoint/checkpoint.ts';
import { expectedShapes, parameterCount, type ModelConfig } from '../model/config.ts';
import { readTensor, withSafetensors, writeSafetensors } from '../checkpoint/containers/safetensors.ts';
import { clock } from '../clock.ts';
import { HeadsweepError } from '../errors.ts';
import { forward, tokenLosses } from '../model/forward.ts';
import { enableTraining } from './autodiff.ts';
import { checkpointSteps, seqLenOf, type LoadedTrainConfig, type TrainConfig } from './config.ts';
import { corpusBatches, syntheticBatches, type BatchSource } from './data.ts';
import { initWeights } from './init.ts';
import { adamwStep, createAdamState, disposeAdamState, learningRate, toVariable, type AdamState } from './optimizer.ts';
import { readCorpus } from './tokenizer.ts';

export interface TrainOptions {
  /** Continue from the latest checkpoint that has optimizer state in `out_dir/state`. */
  resume?: boolean;
  /** Overrides the config's backend. */
  backend?: BackendChoice;
  /** Receives progress lines; default: stderr. */
  log?: (line: string) => void;
}

export interface TrainResult {
  run: string;
  backend: BackendName;
  outDir: string;
  /** Checkpoint files written by this call, in step order. */
  checkpoints: string[];
  /** Step the call started from: 0, or the step it resumed at. */
  startStep: number;
  steps: number;
  /** Mean training loss over the last logging window (NaN when no step ran). */
  finalLoss: number;
  seconds: number;
  tokensPerSecond: number;
}

const STATE_DIR = 'state';
const CHECKPOINT_RE = /^step-(\d+)\.safetensors$/;
const STATE_RE = /^step-(\d+)\.adam\.safetensors$/;

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, '0')}.safetensors`;
}

function stateName(step: number): string {
  return `step-${String(step).padStart(6, '0')}.adam.safetensors`;
}

/** The TransformerLens config written into every checkpoint's metadata. */
function tlConfig(c: TrainConfig): ModelConfig & { model_name: string; seed: number } {
  return { ...c.model, model_name: c.run, seed: c.seed };
}

/**
 * What must not change between a run and its resume. `steps` may grow under a constant
 * schedule (the learning rate of a step does not depend on the total), and the
 * checkpoint schedule, logging and backend may change freely.
 */
function identityOf(c: TrainConfig): string {
  return JSON.stringify({
    seed: c.seed,
    model: c.model,
    data: c.data,
    batch_size: c.batch_size,
    seq_len: seqLenOf(c),
    optimizer: c.optimizer,
    steps: c.optimizer.schedule === 'constant' ? undefined : c.steps,
  });
}

function trainError(message: string, file?: string, key?: string): HeadsweepError {
  return new HeadsweepError(message, { stage: 'train', file, key });
}

function stepsIn(dir: string, re: RegExp): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => re.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

function batchSourceFor(loaded: LoadedTrainConfig): BatchSource {
  const c = loaded.config;
  const shape = { batchSize: c.batch_size, seqLen: seqLenOf(c) };
  if (c.data.kind === 'synthetic') return syntheticBatches(c.data, c.model.d_vocab, c.model.bos_token_id!, c.seed, shape);
  const file = loaded.dataFile!;
  return corpusBatches(c.data, readCorpus(file, c.data.tokenizer), c.seed, shape, file);
}

interface StartPoint {
  step: number;
  weights: Weights;
  moments?: { m: Record<string, Float32Array>; v: Record<string, Float32Array> };
}

/** The latest checkpoint with optimizer state, checked against this config; null when none. */
function findResumePoint(loaded: LoadedTrainConfig): StartPoint | null {
  const stateDir = join(loaded.outDir, STATE_DIR);
  const states = stepsIn(stateDir, STATE_RE);
  if (states.length === 0) return null;
  const step = states[states.length - 1];
  const stateFile = join(stateDir, stateName(step));
  const ckptFile = join(loaded.outDir, checkpointName(step));
  if (!existsSync(ckptFile)) throw trainError(`${stateFile}: its checkpoint ${ckptFile} is missing, so the run cannot resume`, stateFile);
  const c = loaded.config;
  const names = [...expectedShapes(c.model).keys()];
  const moments = withSafetensors(stateFile, (fd, header) => {
    if (header.metadata.identity !== identityOf(c)) {
      throw trainError(
        `${stateFile}: was written by a run with another seed, model, data, batch or optimizer than ${loaded.file}; ` +
          'resume with the config that started the run, or train into a new out_dir',
        stateFile,
        'identity',
      );
    }
    const read = (which: 'm' | 'v') => Object.fromEntries(names.map((n) => [n, readTensor(fd, stateFile, header, `${which}.${n}`).data]));
    return { m: read('m'), v: read('v') };
  });
  return { step, weights: loadCheckpoint(ckptFile).weights, moments };
}

function hostWeights(params: Record<string, tf.Variable>): Record<string, { shape: number[]; data: Float32Array }> {
  return Object.fromEntries(Object.entries(params).map(([n, p]) => [n, { shape: p.shape, data: p.dataSync() as Float32Array }]));
}

/** Writes the checkpoint of `step`, then its optimizer state, then drops older state. */
function save(loaded: LoadedTrainConfig, step: number, params: Record<string, tf.Variable>, adam: AdamState): string {
  const c = loaded.config;
  const file = join(loaded.outDir, checkpointName(step));
  writeSafetensors(file, hostWeights(params), {
    config: JSON.stringify(tlConfig(c)),
    step: String(step),
    tokens_seen: String(step * c.batch_size * seqLenOf(c)),
    train_config: JSON.stringify(c),
  });
  const stateDir = join(loaded.outDir, STATE_DIR);
  mkdirSync(stateDir, { recursive: true });
  const moments: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [n, p] of Object.entries(params)) {
    moments[`m.${n}`] = { shape: p.shape, data: adam.m[n].dataSync() as Float32Array };
    moments[`v.${n}`] = { shape: p.shape, data: adam.v[n].dataSync() as Float32Array };
  }
  writeSafetensors(join(stateDir, stateName(step)), moments, { step: String(step), checkpoint: checkpointName(step), identity: identityOf(c) });
  for (const old of stepsIn(stateDir, STATE_RE)) if (old < step) unlinkSync(join(stateDir, stateName(old)));
  return file;
}

/** Trains the run a loaded config describes. Progress goes to `opts.log`, one line per `log_every` steps. */
export async function train(loaded: LoadedTrainConfig, opts: TrainOptions = {}): Promise<TrainResult> {
  const c = loaded.config;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const backend = await initBackend(opts.backend ?? c.backend);
  await enableTraining();

  const existing = stepsIn(loaded.outDir, CHECKPOINT_RE);
  const resumed = opts.resume ? findResumePoint(loaded) : null;
  if (!resumed && existing.length > 0) {
    throw trainError(
      opts.resume
        ? `${loaded.outDir}: holds checkpoints but no optimizer state in ${STATE_DIR}/, so the run cannot resume; train into a new out_dir`
        : `${loaded.outDir}: already holds ${existing.length} checkpoint(s); pass --resume to continue that run, or train into a new out_dir`,
      loaded.outDir,
      'out_dir',
    );
  }
  mkdirSync(loaded.outDir, { recursive: true });
  const start: StartPoint = resumed ?? { step: 0, weights: initWeights(c.model, c.seed) };

  const schedule = new Set(checkpointSteps(c));
  const [batchSize, seqLen] = [c.batch_size, seqLenOf(c)];
  const params: Record<string, tf.Variable> = {};
  for (const name of expectedShapes(c.model).keys()) {
    const w = start.weights.get(name)!;
    params[name] = toVariable(tf.tensor(w.data, w.shape, 'float32'), true);
  }
  const adam = createAdamState(params, start.step, start.moments);
  const nextBatch = batchSourceFor(loaded);
  const written: string[] = [];

  log(
    `${c.run}: ${parameterCount(c.model)} parameters on ${backend}, ` +
      (resumed ? `resuming at step ${start.step}, ` : '') +
      `${c.steps} steps of ${batchSize}×${seqLen} tokens, ${schedule.size} checkpoints → ${loaded.outDir}`,
  );
  const began = performance.now();
  let windowStart = began;
  let windowLoss = 0;
  let windowSteps = 0;
  let finalLoss = NaN;
  try {
    if (!resumed && schedule.has(0)) written.push(save(loaded, 0, params, adam));
    for (let step = start.step + 1; step <= c.steps; step++) {
      const tokens = tf.tensor2d(nextBatch(step), [batchSize, seqLen], 'int32'); // (B, T)
      const { value, grads } = tf.variableGrads(() => {
        const { logits } = forward(params, c.model, tokens, { logits: true }); // (B, T, V)
        return tf.mean(tokenLosses(logits!, tokens)) as tf.Scalar;
      });
      const lr = learningRate(c.optimizer, step, c.steps);
      const gradNorm = adamwStep(params, grads, adam, c.optimizer, lr);
      windowLoss += value.dataSync()[0];
      windowSteps++;
      tf.dispose([tokens, value, ...Object.values(grads)]);

      if (!Number.isFinite(windowLoss)) throw trainError(`${c.run}: loss is ${windowLoss} at step ${step}; lower optimizer.lr or check the data`, loaded.file, 'optimizer.lr');
      if (step % c.log_every === 0 || step === c.steps) {
        const now = performance.now();
        const seconds = (now - windowStart) / 1000;
        finalLoss = windowLoss / windowSteps;
        // Time left at the pace of this session's steps (a resumed run's earlier steps took no time here).
        const elapsed = (now - began) / 1000;
        const eta = (elapsed / (step - start.step)) * (c.steps - step);
        log(
          `${c.run} step ${step}/${c.steps}  loss ${finalLoss.toFixed(4)}  lr ${lr.toExponential(2)}  grad_norm ${gradNorm.toFixed(3)}  ` +
            `${Math.round((windowSteps * batchSize * seqLen) / seconds)} tokens/s  ${(seconds / windowSteps).toFixed(3)} s/step  ` +
            `elapsed ${clock(elapsed)}  ETA ${clock(eta)}`,
        );
        [windowStart, windowLoss, windowSteps] = [now, 0, 0];
      }
      if (schedule.has(step)) written.push(save(loaded, step, params, adam));
    }
  } finally {
    disposeAdamState(adam);
    for (const p of Object.values(params)) p.dispose();
  }
  const seconds = (performance.now() - began) / 1000;
  const trained = c.steps - start.step;
  return {
    run: c.run,
    backend,
    outDir: loaded.outDir,
    checkpoints: written,
    startStep: start.step,
    steps: c.steps,
    finalLoss,
    seconds,
    tokensPerSecond: trained > 0 ? (trained * batchSize * seqLen) / seconds : 0,
  };
}
