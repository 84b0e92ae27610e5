/**
 * A small facade over the piscina pool that scores checkpoints: typed requests in, typed
 * outcomes out. The worker code is `worker.ts`, which threads run as built into
 * `dist/worker.mjs` (see pipeline/package.ts), also when this module runs from source.
 *
 * One task is one part of a checkpoint's work (src/work.ts): usually all of it, its
 * prompt sets and its weight scores, so its weights are read once. When threads would
 * otherwise sit idle (fewer checkpoints left than workers, see sweep.ts), a checkpoint is
 * cut into parts of about equal cost, one per thread, and their values are merged here in
 * a fixed order, so the scores do not depend on how it was cut. A checkpoint that is bad
 * (a HeadsweepError: truncated file, wrong shapes) comes back at once as a value
 * (`ok: false`) with the stage it failed in: scoring it again would fail the same way. A
 * worker fault is retried on a fresh thread, up to `retries` more attempts, then comes
 * back as a value too:
 * - the scoring threw something that is not a HeadsweepError (the thread ends itself,
 *   since its tfjs state may be half-built; see worker.ts),
 * - the attempt ran past `taskTimeoutSeconds` (piscina terminates the thread on abort,
 *   which stops even a synchronous loop),
 * - the thread died: `process.exit()`, an uncaught error, out of memory.
 * Only aborting the caller's signal rejects.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ResourceLimits } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { BackendChoice, BackendName } from '../src/backend.ts';
import type { ModelConfig } from '../src/model/config.ts';
import type { FamilyName } from '../src/checkpoint/families/family.ts';
import type { Rule } from '../src/classify.ts';
import { HeadsweepError, messageOf, type Stage } from '../src/errors.ts';
import { staleBuild, WORKER_FILE } from './package.ts';
import { labelHeads } from '../src/classify.ts';
import type { PromptSet } from '../src/prompts/types.ts';
import type { CheckpointScores, ScoreOptions } from '../src/score.ts';
import { mergeParts, scoreRequest, splitWork, wholeWork, workCosts, type PartScores, type WorkPart } from '../src/work.ts';

/** Starts the backend in a worker; answers which backend runs. */
export interface InitRequest {
  kind: 'init';
  backend: BackendChoice;
}

/** Scores one part of a checkpoint's work. */
export interface CheckpointRequest {
  kind: 'checkpoint';
  /** Names this attempt in the thread's notes (`WorkerNote`); unique within a pool. */
  token: number;
  backend: BackendChoice;
  /** Absolute path: a checkpoint file or a model folder. */
  file: string;
  /** Read as this family instead of telling it from the files (the run's `family:`). */
  family?: FamilyName;
  /** Token sequences of every prompt set, built for the run's model. */
  promptSets: PromptSet[];
  score: ScoreOptions;
  part: WorkPart;
}

/** What the sweep asks of the pool for one checkpoint. */
export interface ScoreJob {
  backend: BackendChoice;
  file: string;
  /** Read as this family instead of telling it from the files (the run's `family:`). */
  family?: FamilyName;
  promptSets: PromptSet[];
  score: ScoreOptions;
  rules: Rule[];
  /** The model config the plan read, to cut the work by cost; null: the work stays whole. */
  config: ModelConfig | null;
}

export type WorkerRequest = InitRequest | CheckpointRequest;

/**
 * What a thread tells the pool beside a task's result, on its `parentPort`: that it began
 * an attempt (the timeout counts from here, not from the wait for a free thread), or why
 * it is about to end itself.
 */
export type WorkerNote =
  | { kind: 'started'; token: number }
  | { kind: 'fault'; token: number; stage: Stage; message: string };

export type InitOutcome = { ok: true; backend: BackendName } | { ok: false; stage: Stage; message: string };

/** How a checkpoint could not be scored. */
export interface CheckpointFailure {
  ok: false;
  backend: BackendName | null;
  /** null when the file could not be read. */
  sha256: string | null;
  stage: Stage;
  message: string;
}

/** What a thread returns for one part. */
export type PartOutcome =
  | {
    ok: true;
    backend: BackendName;
    /** Hex sha256 of the file's bytes. */
    sha256: string;
    /** The model config the weights were scored with. */
    config: ModelConfig;
    scores: PartScores;
    /** Reading and hashing the file. */
    loadSeconds: number;
  }
  | CheckpointFailure;

export type CheckpointOutcome =
  | {
    ok: true;
    backend: BackendName;
    /** The checkpoint's identity: the sha256 of its file, or over every file it is read from (`Checkpoint.sha256`). */
    sha256: string;
    /** The model config the weights were scored with. */
    config: ModelConfig;
    scores: CheckpointScores;
    /** [promptSetIndex][layer * n_heads + head], null where no rule matches. */
    labels: (string | null)[][];
    /** Reading and hashing the file, summed over the threads that shared it. */
    loadSeconds: number;
    /** Threads that shared its scoring. */
    parts: number;
  }
  | CheckpointFailure;

/** How one attempt at a checkpoint went wrong without the checkpoint being at fault. */
export type FaultKind = 'threw' | 'timeout' | 'exited' | 'out_of_memory';

/** What the pool reports as it works, for logs. `attempt` counts from 1. */
export type PoolEvent =
  /** Attempt `attempt` failed; attempt `attempt + 1` starts on a fresh thread. */
  | { type: 'retried'; file: string; attempt: number; fault: FaultKind; message: string }
  /** Every attempt failed; the checkpoint's outcome is a failure with this message. */
  | { type: 'gave_up'; file: string; attempts: number; fault: FaultKind; message: string }
  /** A thread failed while it held no task (piscina's pool `error` event). */
  | { type: 'thread_error'; message: string };

export interface PoolOptions {
  /** Threads, each scoring one checkpoint at a time. */
  workers: number;
  /** Attempts after the first for a checkpoint whose worker faulted (default 0). */
  retries?: number;
  /** Seconds one attempt may run once a thread has begun it (default: no limit). */
  taskTimeoutSeconds?: number;
  /** Per-thread limits; `maxOldGenerationSizeMb` caps the JS heap, not the tensors' typed arrays. */
  resourceLimits?: ResourceLimits;
  /**
   * The module each thread runs (a default export answering `WorkerRequest`s and sending
   * `WorkerNote`s). Default: `$HEADSWEEP_WORKER` when set (fault-injection tests run the
   * CLI with a fixture worker this way), else the built worker, `dist/worker.mjs`.
   */
  filename?: string;
  onEvent?: (event: PoolEvent) => void;
}

/** One failed attempt. */
interface Fault {
  kind: FaultKind;
  stage: Stage;
  /** What happened, as a clause: "timed out after 600 s; its thread was stopped". */
  what: string;
}

/** An attempt under way: its timer starts when its thread says it began. */
interface Attempt {
  started: () => void;
  note: Extract<WorkerNote, { kind: 'fault' }> | null;
}

function workerFilename(explicit: string | undefined): string {
  // From source (tests, tsx), the threads would otherwise run whatever was built last; a
  // fault-injection worker wraps the built one too.
  const stale = staleBuild();
  if (stale !== null) throw new HeadsweepError(stale, { stage: 'worker' });
  const chosen = explicit ?? process.env.HEADSWEEP_WORKER;
  if (chosen === undefined || chosen === '') return pathToFileURL(WORKER_FILE).href;
  return chosen.startsWith('file:') ? chosen : pathToFileURL(resolve(chosen)).href;
}

/** "attempts 1–2: timed out …; attempt 3: its thread exited with code 1" */
function attemptsText(faults: readonly Fault[]): string {
  const parts: string[] = [];
  for (let i = 0; i < faults.length;) {
    let j = i;
    while (j + 1 < faults.length && faults[j + 1].what === faults[i].what) j++;
    parts.push(`${i === j ? `attempt ${i + 1}` : `attempts ${i + 1}–${j + 1}`}: ${faults[i].what}`);
    i = j + 1;
  }
  return parts.join('; ');
}

export class CheckpointPool {
  readonly workers: number;
  private readonly pool: Piscina<WorkerRequest, InitOutcome | PartOutcome>;
  private readonly retries: number;
  private readonly timeoutMs: number;
  private readonly onEvent: (event: PoolEvent) => void;
  private readonly attempts = new Map<number, Attempt>();
  private nextToken = 1;
  /** Parts handed to piscina and not settled: running, or waiting for a thread. */
  private pending = 0;

  constructor(opts: PoolOptions) {
    this.workers = opts.workers;
    this.retries = opts.retries ?? 0;
    this.timeoutMs = (opts.taskTimeoutSeconds ?? Number.POSITIVE_INFINITY) * 1000;
    // Node fires a longer timer after 1 ms, which would time every checkpoint out at once.
    if (Number.isFinite(this.timeoutMs) && !(this.timeoutMs >= 1 && this.timeoutMs <= 2 ** 31 - 1)) {
      throw new RangeError(`taskTimeoutSeconds ${opts.taskTimeoutSeconds} is outside [0.001, ${(2 ** 31 - 1) / 1000}]: Node's timers hold at most 2^31 − 1 ms`);
    }
    this.onEvent = opts.onEvent ?? (() => {});
    this.pool = new Piscina({
      filename: workerFilename(opts.filename),
      minThreads: opts.workers,
      maxThreads: opts.workers,
      // Threads keep their started backend and compiled kernels between checkpoints.
      idleTimeout: Number.POSITIVE_INFINITY,
      concurrentTasksPerWorker: 1,
      resourceLimits: opts.resourceLimits,
    });
    this.pool.on('message', (note: WorkerNote) => {
      const attempt = this.attempts.get(note.token);
      // A note can arrive after its task settled: the two travel on different ports.
      if (attempt === undefined) return;
      if (note.kind === 'started') attempt.started();
      else attempt.note = note;
    });
    // Without a listener, a thread that fails between tasks would throw in this thread.
    this.pool.on('error', (err: unknown) => this.onEvent({ type: 'thread_error', message: messageOf(err) }));
  }

  /**
   * Starts the backend in every thread at once (each takes a second or more to compile
   * its kernels; started lazily, they would start one after another behind the first
   * checkpoints), so a backend that cannot start stops the sweep before any checkpoint.
   */
  async init(backend: BackendChoice): Promise<BackendName> {
    const request = { kind: 'init', backend } satisfies InitRequest;
    const outcomes = (await Promise.all(Array.from({ length: this.workers }, () => this.pool.run(request)))) as InitOutcome[];
    const failed = outcomes.find((o) => !o.ok);
    if (failed !== undefined && !failed.ok) throw new HeadsweepError(failed.message, { stage: failed.stage, key: 'backend' });
    const names = new Set(outcomes.map((o) => (o.ok ? o.backend : null)));
    if (names.size !== 1) throw new HeadsweepError(`worker threads started different backends (${[...names].join(', ')})`, { stage: 'config', key: 'backend' });
    return [...names][0]!;
  }

  /** Threads with nothing to do and nothing waiting for them. */
  idleThreads(): number {
    return Math.max(0, this.workers - this.pending);
  }

  /**
   * Scores one checkpoint in `parts` parts of about equal cost (1: whole), each on its
   * own thread when threads are free, and merges them. Every part's attempts send the
   * same request, so a retried part scores exactly as a first try would, and the merge
   * adds batches in a fixed order (src/work.ts), so the scores do not depend on `parts`.
   * The first part that fails (in part order) is the checkpoint's failure.
   */
  async score(job: ScoreJob, signal?: AbortSignal, parts = 1): Promise<CheckpointOutcome> {
    const { file, promptSets, score, rules, config } = job;
    const cut = parts > 1 && config !== null
      ? splitWork(workCosts(config, promptSets, score.metrics, score.batchSize, score.icl), parts)
      : [wholeWork(promptSets, score.batchSize)];
    const outcomes = await Promise.all(cut.map((part) => this.scorePart({ backend: job.backend, file, family: job.family, promptSets, score, part }, signal)));
    const failed = outcomes.find((o) => !o.ok);
    if (failed !== undefined && !failed.ok) return failed;
    const done = outcomes as Extract<PartOutcome, { ok: true }>[];
    const first = done[0];
    if (done.some((o) => o.sha256 !== first.sha256)) {
      // The file changed between the parts' reads: their values are of different bytes.
      // The last part's bytes name the errors row, so the failure need not hash the file again.
      return { ok: false, backend: first.backend, sha256: done[done.length - 1].sha256, stage: 'load', message: `${file}: the file changed while it was being scored; it is scored again by the next sweep` };
    }
    const scores = mergeParts(first.config, promptSets, scoreRequest(first.config, score.metrics, score.batchSize, score.icl), done.map((o) => o.scores));
    return {
      ok: true, backend: first.backend, sha256: first.sha256, config: first.config, scores,
      labels: labelHeads(scores, rules), loadSeconds: done.reduce((s, o) => s + o.loadSeconds, 0), parts: done.length,
    };
  }

  /** One part, retrying worker faults on fresh threads. */
  private async scorePart(request: Omit<CheckpointRequest, 'kind' | 'token'>, signal?: AbortSignal): Promise<PartOutcome> {
    const faults: Fault[] = [];
    for (;;) {
      const result = await this.attempt(request, signal);
      if (!('kind' in result)) return result;
      faults.push(result);
      const attempt = faults.length;
      if (attempt > this.retries) {
        const message = `${request.file}: worker gave up after ${attempt} attempt${attempt === 1 ? '' : 's'} (${attemptsText(faults)})`;
        this.onEvent({ type: 'gave_up', file: request.file, attempts: attempt, fault: result.kind, message });
        return { ok: false, backend: null, sha256: null, stage: result.stage, message };
      }
      this.onEvent({ type: 'retried', file: request.file, attempt, fault: result.kind, message: `${request.file}: attempt ${attempt} ${result.what}` });
    }
  }

  /** One attempt: the worker's outcome, or the fault that stopped it. Rejects only when `signal` aborts. */
  private async attempt(request: Omit<CheckpointRequest, 'kind' | 'token'>, signal?: AbortSignal): Promise<PartOutcome | Fault> {
    const token = this.nextToken++;
    const timeout = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const attempt: Attempt = {
      started: () => {
        if (Number.isFinite(this.timeoutMs)) timer = setTimeout(() => timeout.abort(), this.timeoutMs);
      },
      note: null,
    };
    this.attempts.set(token, attempt);
    this.pending++;
    try {
      const task: CheckpointRequest = { kind: 'checkpoint', token, ...request };
      const both = signal === undefined ? timeout.signal : AbortSignal.any([signal, timeout.signal]);
      return (await this.pool.run(task, { signal: both })) as PartOutcome;
    } catch (err) {
      if (signal?.aborted) throw err;
      if (timeout.signal.aborted) {
        return { kind: 'timeout', stage: 'worker', what: `timed out after ${this.timeoutMs / 1000} s; its thread was stopped` };
      }
      // The thread ended itself after a throw, and said why first (worker.ts).
      if (attempt.note !== null) return { kind: 'threw', stage: attempt.note.stage, what: `threw ${attempt.note.message}` };
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ERR_WORKER_OUT_OF_MEMORY') return { kind: 'out_of_memory', stage: 'worker', what: `its thread ran out of memory (${messageOf(err)})` };
      // piscina's words for a thread that exited while it held a task.
      const exited = /^worker exited with code: (-?\d+)/.exec(messageOf(err));
      if (exited !== null) return { kind: 'exited', stage: 'worker', what: `its thread exited with code ${exited[1]}` };
      // An uncaught error ended the thread (node sends it over, name and all).
      return { kind: 'threw', stage: 'worker', what: `threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}` };
    } finally {
      this.pending--;
      clearTimeout(timer);
      this.attempts.delete(token);
    }
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
