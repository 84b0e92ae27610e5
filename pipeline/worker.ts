/**
 * The code each pool thread runs (see pool.ts for the message types). A thread starts its
 * tfjs backend once and keeps it for every checkpoint it is given. Results go back as
 * transferable typed arrays: the buffers move to the main thread instead of being copied.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { initBackend, type BackendChoice, type BackendName } from '../src/backend.ts';
import { loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { labelHeads } from '../src/classify.ts';
import { HeadsweepError, messageOf, type Stage } from '../src/errors.ts';
import { scoreCheckpoint, type CheckpointScores } from '../src/score.ts';
import type { CheckpointOutcome, CheckpointRequest, InitOutcome, WorkerRequest } from './pool.ts';

let started: { choice: BackendChoice; name: Promise<BackendName> } | null = null;

/** The backend of this thread, started on first use. A thread serves one sweep, hence one choice. */
function backend(choice: BackendChoice): Promise<BackendName> {
  if (started === null || started.choice !== choice) started = { choice, name: initBackend(choice) };
  return started.name;
}

/** The stage a thrown error belongs to: its own when it has one, else the step that threw. */
function failure(err: unknown, stage: Stage, backendName: BackendName | null, sha256: string | null): CheckpointOutcome {
  return { ok: false, backend: backendName, sha256, stage: err instanceof HeadsweepError ? err.stage : stage, message: messageOf(err) };
}

/** Every distinct buffer behind the score arrays, for the transfer list. */
function buffersOf(scores: CheckpointScores): ArrayBuffer[] {
  const arrays: (ArrayBufferView | undefined)[] = [scores.copying];
  for (const set of scores.promptSets) arrays.push(set.prefix_matching, set.duplicate_token, set.previous_token);
  const c = scores.composition;
  if (c) arrays.push(c.src_layer, c.src_head, c.dst_layer, c.dst_head, c.score);
  const buffers = new Set<ArrayBuffer>();
  for (const a of arrays) if (a !== undefined && a.buffer instanceof ArrayBuffer) buffers.add(a.buffer);
  return [...buffers];
}

async function scoreOne(req: CheckpointRequest): Promise<CheckpointOutcome> {
  let backendName: BackendName;
  try {
    backendName = await backend(req.backend);
  } catch (err) {
    return failure(err, 'config', null, null);
  }

  const loadStart = performance.now();
  let checkpoint;
  try {
    // Loading hashes the file in the same pass, so its bytes are read once.
    checkpoint = loadCheckpoint(req.file);
  } catch (err) {
    return failure(err, 'load', backendName, null);
  }
  const sha256 = checkpoint.sha256;
  const loadSeconds = (performance.now() - loadStart) / 1000;

  let scores: CheckpointScores;
  let labels: (string | null)[][];
  try {
    scores = await scoreCheckpoint(checkpoint, req.promptSets, req.score);
    labels = labelHeads(scores, req.rules);
  } catch (err) {
    return failure(err, 'score', backendName, sha256);
  }
  return { ok: true, backend: backendName, sha256, config: checkpoint.config, scores, labels, loadSeconds };
}

export default async function runTask(req: WorkerRequest): Promise<InitOutcome | CheckpointOutcome> {
  if (req.kind === 'init') {
    try {
      return { ok: true, backend: await backend(req.backend) };
    } catch (err) {
      return { ok: false, stage: err instanceof HeadsweepError ? err.stage : 'config', message: messageOf(err) };
    }
  }
  const outcome = await scoreOne(req);
  if (!outcome.ok) return outcome;
  // piscina moves an object that carries its transfer list under these two symbols.
  return move({ [transferableSymbol]: buffersOf(outcome.scores), [valueSymbol]: outcome }) as unknown as CheckpointOutcome;
}
