/**
 * The code each pool thread runs (see pool.ts for the message types). A thread starts its
 * tfjs backend once and keeps it for every checkpoint it is given. Results go back as
 * transferable typed arrays: the buffers move to the main thread instead of being copied.
 *
 * A HeadsweepError is a verdict on the checkpoint and goes back as an outcome. Anything
 * else thrown while scoring is a fault of this thread: tensors and kernels may be left
 * half-built, so the thread tells the pool why and ends itself, and the pool retries the
 * checkpoint on a fresh one. Ending the thread while it still holds the task means the
 * pool cannot hand this thread another checkpoint in between.
 */
import { parentPort } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { initBackend, type BackendChoice, type BackendName } from '../src/backend.ts';
import { closeCheckpoint, loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { VOCABULARY_MATRICES } from '../src/checkpoint/memory.ts';
import { ReadBuffer } from '../src/checkpoint/read.ts';
import { HeadsweepError, messageOf, type Stage } from '../src/errors.ts';
import { scoreCheckpointPart } from '../src/score.ts';
import type { PartScores } from '../src/work.ts';
import type { CheckpointRequest, InitOutcome, InitRequest, PartOutcome, WorkerNote, WorkerRequest } from './pool.ts';

/**
 * This thread's checkpoints are read into one reused buffer (see ReadBuffer): a thread
 * scores one checkpoint at a time and is done with its host weights before the next.
 */
const readBuffer = new ReadBuffer();

/**
 * Left in the file and read a slice at a time while scoring (see LoadOptions): they are
 * most of a checkpoint's bytes and scoring never needs them whole.
 */

let started: { choice: BackendChoice; name: Promise<BackendName> } | null = null;

/** The backend of this thread, started on first use. A thread serves one sweep, hence one choice. */
function backend(choice: BackendChoice): Promise<BackendName> {
  if (started === null || started.choice !== choice) started = { choice, name: initBackend(choice) };
  return started.name;
}

/** The exit code of a thread that ended itself after a fault (EX_SOFTWARE). */
const FAULT_EXIT_CODE = 70;

/** Something thrown while scoring that is not a verdict on the checkpoint, with the step that threw it. */
class ThreadFault extends Error {
  constructor(readonly stage: Stage, readonly thrown: unknown) {
    super(messageOf(thrown));
  }
}

/** A HeadsweepError becomes the checkpoint's failure, in its own stage; anything else is a fault of this thread. */
function failure(err: unknown, stage: Stage, backendName: BackendName | null, sha256: string | null): PartOutcome {
  if (!(err instanceof HeadsweepError)) throw new ThreadFault(stage, err);
  return { ok: false, backend: backendName, sha256, stage: err.stage, message: err.message };
}

function note(message: WorkerNote): void {
  parentPort?.postMessage(message);
}

/** Tells the pool why, then ends this thread, which still holds the task (see the top of this file). */
function abandon(token: number, err: unknown): never {
  const thrown = err instanceof ThreadFault ? err.thrown : err;
  const what = thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown);
  note({ kind: 'fault', token, stage: err instanceof ThreadFault ? err.stage : 'worker', message: what });
  process.exit(FAULT_EXIT_CODE);
}

/** Every distinct buffer behind the score arrays, for the transfer list. */
function buffersOf(scores: PartScores): ArrayBuffer[] {
  const arrays: (ArrayBufferView | undefined)[] = [];
  for (const b of scores.batches) arrays.push(b.headSums, b.counts, b.losses);
  // The weight scores: per-head arrays, and composition's columns.
  for (const v of Object.values(scores.weights ?? {})) {
    if (ArrayBuffer.isView(v)) arrays.push(v);
    else if (typeof v === 'object') arrays.push(v.src_layer, v.src_head, v.dst_layer, v.dst_head, v.score);
  }
  const buffers = new Set<ArrayBuffer>();
  for (const a of arrays) if (a !== undefined && a.buffer instanceof ArrayBuffer) buffers.add(a.buffer);
  return [...buffers];
}

/** Scores one part of a checkpoint; its score arrays move to the main thread. Throws what is not a verdict on the checkpoint. */
export async function scoreTask(req: CheckpointRequest): Promise<PartOutcome> {
  let backendName: BackendName;
  try {
    backendName = await backend(req.backend);
  } catch (err) {
    return failure(err, 'config', null, null);
  }

  const loadStart = performance.now();
  let checkpoint;
  try {
    // Loading hashes the file in the same pass; W_E and W_U stay in it, read in slices later.
    // A model the backend cannot hold is refused before any weight is read.
    const vocabularyOnDevice = req.part.weights && req.score.metrics.includes('bigram_kl'); // only the weights' part runs bigram_kl
    checkpoint = loadCheckpoint(req.file, { family: req.family, readBuffer, leaveInFile: VOCABULARY_MATRICES, backend: backendName, vocabularyOnDevice });
  } catch (err) {
    return failure(err, 'load', backendName, null);
  }
  const sha256 = checkpoint.sha256;
  const loadSeconds = (performance.now() - loadStart) / 1000;

  let scores: PartScores;
  try {
    scores = await scoreCheckpointPart(checkpoint, req.promptSets, req.score, req.part);
  } catch (err) {
    return failure(err, 'score', backendName, sha256);
  } finally {
    closeCheckpoint(checkpoint);
  }
  const outcome: PartOutcome = { ok: true, backend: backendName, sha256, config: checkpoint.config, scores, loadSeconds };
  // piscina moves an object that carries its transfer list under these two symbols.
  return move({ [transferableSymbol]: buffersOf(scores), [valueSymbol]: outcome }) as unknown as PartOutcome;
}

async function initTask(req: InitRequest): Promise<InitOutcome> {
  try {
    return { ok: true, backend: await backend(req.backend) };
  } catch (err) {
    return { ok: false, stage: err instanceof HeadsweepError ? err.stage : 'config', message: messageOf(err) };
  }
}

/**
 * A thread's task handler around `score`: it notes when an attempt begins (the pool's
 * timeout counts from there) and turns a throw into the end of the thread. Fault-injection
 * fixtures (test/fixtures/workers) wrap `scoreTask` with it as the real entry does.
 */
export function taskHandler(score: (req: CheckpointRequest) => Promise<PartOutcome>) {
  return async (req: WorkerRequest): Promise<InitOutcome | PartOutcome> => {
    if (req.kind === 'init') return initTask(req);
    // The timeout is the checkpoint's own time: a fresh thread starts its backend first.
    // A backend that cannot start is reported by `score`, which awaits the same promise.
    await backend(req.backend).catch(() => null);
    note({ kind: 'started', token: req.token });
    try {
      return await score(req);
    } catch (err) {
      abandon(req.token, err);
    }
  };
}

export default taskHandler(scoreTask);
