/**
 * A small facade over the piscina pool that scores checkpoints: typed requests in, typed
 * outcomes out. The worker code is `worker.ts`, loaded through `worker-entry.mjs` because
 * worker threads do not inherit the tsx loader of the main thread.
 *
 * One task is one checkpoint with all its prompt sets, so its weights are read once and
 * its weight scores computed once. Failures come back as values (`ok: false`) with the
 * stage they happened in; only a dead or aborted worker rejects.
 */
import { Piscina } from 'piscina';
import type { BackendChoice, BackendName } from '../src/backend.ts';
import type { ModelConfig } from '../src/checkpoint/config.ts';
import type { Rule } from '../src/classify.ts';
import { HeadsweepError, messageOf, type Stage } from '../src/errors.ts';
import type { PromptSet } from '../src/prompts/types.ts';
import type { CheckpointScores, ScoreOptions } from '../src/score.ts';

/** Starts the backend in a worker; answers which backend runs. */
export interface InitRequest {
  kind: 'init';
  backend: BackendChoice;
}

/** Scores one checkpoint file. */
export interface CheckpointRequest {
  kind: 'checkpoint';
  backend: BackendChoice;
  /** Absolute path. */
  file: string;
  /** Token sequences of every prompt set, built for the run's model. */
  promptSets: PromptSet[];
  score: ScoreOptions;
  rules: Rule[];
}

export type WorkerRequest = InitRequest | CheckpointRequest;

export type InitOutcome = { ok: true; backend: BackendName } | { ok: false; stage: Stage; message: string };

export type CheckpointOutcome =
  | {
    ok: true;
    backend: BackendName;
    /** Hex sha256 of the file's bytes. */
    sha256: string;
    /** The model config the weights were scored with. */
    config: ModelConfig;
    scores: CheckpointScores;
    /** [promptSetIndex][layer * n_heads + head], null where no rule matches. */
    labels: (string | null)[][];
    /** Reading and hashing the file. */
    loadSeconds: number;
  }
  | {
    ok: false;
    backend: BackendName | null;
    /** null when the file could not be read. */
    sha256: string | null;
    stage: Stage;
    message: string;
  };

export class CheckpointPool {
  private readonly pool: Piscina<WorkerRequest, InitOutcome | CheckpointOutcome>;

  constructor(readonly workers: number) {
    this.pool = new Piscina({
      filename: new URL('./worker-entry.mjs', import.meta.url).href,
      minThreads: workers,
      maxThreads: workers,
      // Threads keep their started backend and compiled kernels between checkpoints.
      idleTimeout: Number.POSITIVE_INFINITY,
      concurrentTasksPerWorker: 1,
    });
  }

  /** Starts the backend in one worker, so a backend that cannot start stops the sweep before any checkpoint. */
  async init(backend: BackendChoice): Promise<BackendName> {
    const outcome = (await this.pool.run({ kind: 'init', backend } satisfies InitRequest)) as InitOutcome;
    if (!outcome.ok) throw new HeadsweepError(outcome.message, { stage: outcome.stage, key: 'backend' });
    return outcome.backend;
  }

  /** Scores one checkpoint; a worker that dies or is aborted becomes a `worker`-stage failure. */
  async score(request: Omit<CheckpointRequest, 'kind'>, signal?: AbortSignal): Promise<CheckpointOutcome> {
    try {
      return (await this.pool.run({ kind: 'checkpoint', ...request } satisfies CheckpointRequest, { signal })) as CheckpointOutcome;
    } catch (err) {
      if (signal?.aborted) throw err;
      return { ok: false, backend: null, sha256: null, stage: 'worker', message: `${request.file}: worker failed: ${messageOf(err)}` };
    }
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
