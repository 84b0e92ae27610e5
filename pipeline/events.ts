/**
 * What a sweep tells the outside world as it works. The sweep emits typed events to one
 * `EventLog` function; `jsonLog` writes each as one JSON object per line (for automation:
 * `--log-format json`), `TextLog` turns them into the progress lines a person reads
 * (`--log-format text`, the default). The schema is documented in the README:
 * README.md#logs-for-automation---log-format-json.
 *
 * Every event carries `event` (its name) and `time` (ISO 8601, added by the writer).
 * Checkpoints are named by `run` and `path` (the path as the config's glob resolved it).
 */
import { oneLine, shownPath, type Stage } from '../src/errors.ts';
import type { PoolEvent } from './pool.ts';
import { Progress } from './progress.ts';

/** Why a checkpoint is scored: nothing stored for it, new bytes (or step), changed settings, `--force`, or a failure last time. */
export type WorkReason = 'new' | 'changed' | 'settings' | 'force' | 'retry';

interface CheckpointRef {
  run: string;
  path: string;
  step: number | null;
}

export type SweepEvent =
  | {
    event: 'sweep_started';
    name: string;
    out: string;
    /** `i/n`, or null when the sweep is not sharded. */
    shard: string | null;
    backend: string;
    workers: number;
    watch: boolean;
    /** --watch: how many runs, the globs polled, every how many seconds, until how many idle minutes (null: until stopped); null otherwise. */
    watching: { runs: number; globs: string[]; poll_seconds: number; until_idle_minutes: number | null } | null;
    force: boolean;
  }
  /** Something the plan warns of (a glob matching no file yet, icl positions past a prompt set); each said once. */
  | { event: 'warning'; message: string }
  /** Once per sweep, and in --watch once per poll that finds work: what this pass will do. */
  | { event: 'work_planned'; checkpoints: number; to_score: number; up_to_date: number; waiting: number }
  | (CheckpointRef & {
    event: 'checkpoint_started';
    reason: WorkReason;
    /** Prompt sets scored now (the others are reused from the existing files). */
    prompt_sets: string[];
    /** Whether the weight-only composition scores are computed now. */
    weights: boolean;
  })
  | (CheckpointRef & {
    event: 'checkpoint_finished';
    sha256: string;
    /** The file stem of its table files: `step-<step>-<sha12>-<source>` (state.ts `fileStem`). */
    id: string;
    prompt_sets: string[];
    weights: boolean;
    /** layers × heads of the model. */
    heads: number;
    /** Measured times; 0 for work that was not done (a rewrite without scoring). */
    seconds: { load: number; forward: number; weights: number; write: number };
    /** Worker threads that shared its scoring; 0 when nothing was scored (a rewrite). */
    workers: number;
  })
  | (CheckpointRef & {
    event: 'checkpoint_skipped';
    sha256: string;
    id: string;
    reason: 'up_to_date';
    /** Formats its files were written in now, from its files in another format (no scoring). */
    formats_added: string[];
  })
  | (CheckpointRef & { event: 'checkpoint_failed'; stage: Stage; message: string })
  /** --watch: a file the globs match that is not yet whole, or still changing; not an error. */
  | (CheckpointRef & { event: 'checkpoint_waiting'; reason: 'incomplete' | 'changing' })
  /** The pool gave a worker fault another attempt on a fresh thread. */
  | (CheckpointRef & { event: 'checkpoint_retried'; attempt: number; fault: string; message: string })
  /** A thread failed while it held no checkpoint. */
  | { event: 'worker_error'; message: string }
  | {
    event: 'sweep_finished';
    status: 'finished' | 'interrupted' | 'failed';
    exit_code: number;
    counts: { checkpoints: number; scored: number; up_to_date: number; failed: number; waiting: number };
    seconds: number;
  };

export type EventLog = (event: SweepEvent) => void;

/** One JSON object per line, `event` and `time` first. */
export function jsonLog(stream: NodeJS.WritableStream = process.stderr): EventLog {
  return (e) => {
    const { event, ...rest } = e;
    stream.write(`${JSON.stringify({ event, time: new Date().toISOString(), ...rest })}\n`);
  };
}

/** Pool events as sweep events; `refOf` names the checkpoint of an absolute file. */
export function poolEventToSweep(e: PoolEvent, refOf: (file: string) => CheckpointRef): SweepEvent | null {
  if (e.type === 'retried') return { event: 'checkpoint_retried', ...refOf(e.file), attempt: e.attempt, fault: e.fault, message: e.message };
  if (e.type === 'thread_error') return { event: 'worker_error', message: e.message };
  // Giving up ends in the checkpoint's own `checkpoint_failed`, which carries the message.
  return null;
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** What a watch follows and when it ends, said once as it starts. */
function watchingLine(w: NonNullable<Extract<SweepEvent, { event: 'sweep_started' }>['watching']>): string {
  const shown = w.globs.slice(0, 3).join(', ') + (w.globs.length > 3 ? ', ...' : '');
  const until = w.until_idle_minutes === null ? 'until stopped (Ctrl-C or SIGTERM)'
    : `until ${w.until_idle_minutes} min pass without a new checkpoint (Ctrl-C or SIGTERM stops sooner)`;
  return `headsweep: watching ${count(w.globs.length, 'glob')} of ${count(w.runs, 'run')} (${shown}) every ${w.poll_seconds} s, ${until}`;
}

/**
 * The lines a person reads: one note when the sweep starts and per pass, then the
 * progress of `Progress` (one line per checkpoint, or a redrawn status line on a terminal).
 */
export class TextLog {
  private progress: Progress | null = null;
  private started: Extract<SweepEvent, { event: 'sweep_started' }> | null = null;

  constructor(private readonly stream: NodeJS.WritableStream = process.stderr) {}

  readonly log: EventLog = (e) => {
    switch (e.event) {
      case 'sweep_started':
        this.started = e;
        if (e.watching !== null) this.note(watchingLine(e.watching));
        break;
      case 'work_planned': {
        const s = this.started;
        // A watching sweep's later polls note only when they find work.
        if (s === null || (s.watch && this.progress !== null && e.to_score === 0)) break;
        this.progress?.finish();
        this.progress = new Progress(e.to_score, this.stream);
        const upToDate = e.up_to_date > 0 ? ` (${e.up_to_date} up to date, ${e.to_score} to score)` : '';
        const waiting = e.waiting > 0 ? `, ${e.waiting} still being written` : '';
        const shard = s.shard === null ? '' : `, shard ${s.shard}`;
        this.progress.note(`headsweep: ${e.checkpoints} checkpoint(s)${upToDate}${waiting}${shard}, ${s.workers} worker(s) on ${s.backend} → ${s.out}`);
        break;
      }
      case 'warning':
        this.note(`headsweep: warning: ${e.message}`);
        break;
      case 'checkpoint_finished':
        this.progress?.checkpointDone({ run: e.run, path: shownPath(e.path), step: e.step, heads: e.heads, failedAt: null });
        break;
      case 'checkpoint_failed':
        this.progress?.checkpointDone({ run: e.run, path: shownPath(e.path), step: e.step, heads: 0, failedAt: e.stage });
        break;
      case 'checkpoint_retried':
        this.progress?.note(oneLine(`headsweep: ${e.run}: ${e.message}; trying again`));
        break;
      case 'worker_error':
        this.progress?.note(oneLine(`headsweep: a worker thread failed between checkpoints: ${e.message}`));
        break;
      case 'sweep_finished':
        this.progress?.finish();
        break;
      default:
        break;
    }
  };

  /** A line that is not an event (Ctrl-C notices). */
  note(line: string): void {
    if (this.progress !== null) this.progress.note(oneLine(line));
    else this.stream.write(`${oneLine(line)}\n`);
  }
}
