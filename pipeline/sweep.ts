/**
 * Runs a plan: checkpoints go to the worker pool, results come back to this thread, and
 * only this thread writes files. Each checkpoint's files depend on that checkpoint alone
 * (never on which worker scored it or in what order results arrived), so a sweep gives
 * the same tables with any number of workers, on any number of shards.
 *
 * Sweeps are incremental: the output root keeps what earlier sweeps wrote, and a
 * checkpoint already scored from the same bytes under the same settings is skipped
 * (state.ts stores what was scored, incremental.ts decides what is due). When only some
 * prompt sets' settings changed, only those are scored and the rows of the others are
 * read back from the checkpoint's files. `force` scores everything again.
 *
 * Crash safety: every file is written under a temporary name and renamed, and a
 * checkpoint's state entry is written only after its files are in place, so a sweep
 * killed at any moment and run again ends with the tables of one clean sweep. Nothing
 * is deleted but the files a checkpoint's own new result replaces (and temporary files
 * of killed sweeps): files of checkpoints the globs no longer match stay.
 *
 * How many checkpoints are in flight is bounded by `plan.maxInFlight` (from the memory
 * budget), not by the pool's queue. A checkpoint that fails becomes one row in `errors`;
 * the sweep goes on and ends with exit code 3. Aborting the signal (Ctrl-C) stops
 * taking work, drops the checkpoints still being scored, lets writes under way finish
 * (each file appears whole or not at all), and writes the manifest as `interrupted`.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, join, relative, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Table } from 'apache-arrow';
import PQueue from 'p-queue';
import type { BackendName } from '../src/backend.ts';
import { HeadsweepError, messageOf, oneLine, summarise, type Stage } from '../src/errors.ts';
import { metricsOfKind } from '../src/metrics/registry.ts';
import type { CheckpointScores } from '../src/score.ts';
import { EXIT } from './cli.ts';
import { isCompactionEntry } from './compact.ts';
import type { ConfigOverrides, LoadedConfig, SweepConfig } from './config.ts';
import { poolEventToSweep, type EventLog } from './events.ts';
import { sha256File } from './hash.ts';
import {
  allWork, completeFormats, decide, formatsOf, mergeScores, readKept, settingsKeys, withBackend, WEIGHTS_KEYED_METRICS,
  type Decided, type KeptRows, type SettingsKeys, type Work,
} from './incremental.ts';
import { packageVersions, writeManifest, type Manifest } from './manifest.ts';
import { buildPlan, plannedCheckpoints, type Plan, type PlannedCheckpoint, type RunPlan } from './plan.ts';
import { CheckpointPool, type CheckpointOutcome, type PoolEvent } from './pool.ts';
import { checkpointKey, inShard, manifestFileName, shardLabel, shardOfManifestFile, type Shard } from './shard.ts';
import { writeFileAtomic } from './sinks/atomic.ts';
import { OUTPUT_FORMATS, tableFileBytes, tableFilePath, writeTableFile, type OutputFormat } from './sinks/index.ts';
import {
  fileStem, isOldStem, listings, readState, removeStaleTemps, removeUnlistedOldStems, renameStem, stampFiles, STATE_DIR, stateFile, writeState,
  type CheckpointState, type SourceStamp,
} from './state.ts';
import { ReadinessTracker, watchedFiles, type Readiness } from './watch.ts';
import { isLockFile, Lock, sweepLockName } from './lock.ts';
import {
  checkpointsTable, checkpointTables, errorsTable, promptsTable, TABLE_NAMES, TABLES_VERSION, type TableName,
} from './tables.ts';

/** A head in the end-of-sweep summary. */
export interface TopHead {
  layer: number;
  head: number;
  prefixMatching: number;
  label: string | null;
}

/** Per run: the strongest prefix-matching heads of its latest scored checkpoint. */
export interface RunSummary {
  run: string;
  step: number | null;
  checkpoint: string;
  promptSet: string;
  top: TopHead[];
}

export interface SweepResult {
  exitCode: number;
  manifest: Manifest;
  /** One per run with a checkpoint scored by this sweep that has prefix_matching, in config order. */
  summary: RunSummary[];
  errors: { run: string; path: string; stage: Stage; message: string }[];
  /** Up-to-date checkpoints whose files this sweep wrote in formats they lacked, and those formats. */
  formatsAdded: { checkpoints: number; formats: OutputFormat[] };
}

type Scored = Extract<CheckpointOutcome, { ok: true }>;

export interface SweepOptions {
  /** Abort to stop the sweep early (Ctrl-C). */
  signal?: AbortSignal;
  /** Receives every event (events.ts); default: none. */
  log?: EventLog;
  /** How many heads the summary lists per run. */
  topHeads?: number;
  /** Worker faults as they happen: retries, checkpoints given up on (pipeline/pool.ts). */
  onPoolEvent?: (event: PoolEvent) => void;
  /** Score every checkpoint again, whatever the output holds. */
  force?: boolean;
  /** Score only this shard's checkpoints; null or absent: all of them. */
  shard?: Shard | null;
}

export interface WatchOptions extends SweepOptions {
  /** Seconds between looks at the checkpoint globs. */
  pollSeconds: number;
  /** Stop after this many minutes in which nothing new appeared; absent: only the signal stops it. */
  untilIdleMinutes?: number;
}

/** How long a temporary file not known to be this sweep's must be left alone: another shard may be writing it. */
const FOREIGN_TEMP_GRACE_MS = 60 * 60 * 1000;

/**
 * Whether a headsweep command writes this name into an output root: table folders,
 * the state folder, manifests (`manifest.json`, a shard's `manifest.shard-<i>-of-<n>.json`)
 * and what `headsweep compact` derives from them.
 */
function isOutputEntry(name: string): boolean {
  return (TABLE_NAMES as readonly string[]).includes(name) || name === STATE_DIR
    || shardOfManifestFile(name) !== undefined || isCompactionEntry(name) || isLockFile(name);
}

/**
 * Refuses a folder that is not a sweep's output and holds anything headsweep does not
 * write, so a mistyped `--out` never mixes tables into someone's files. A folder with a
 * sweep's manifest or state is an output: what else is in it (a report written beside
 * the tables, notes) is left alone.
 */
function checkOutput(outDir: string): void {
  if (!existsSync(outDir)) return;
  const names = readdirSync(outDir);
  if (names.some((name) => name === STATE_DIR || shardOfManifestFile(name) !== undefined)) return;
  const foreign = names.filter((name) => !isOutputEntry(name));
  if (foreign.length > 0) {
    throw new HeadsweepError(
      `output folder ${outDir} holds files a sweep does not write (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}) ` +
        "and no sweep's manifest or .state; choose a new or empty folder",
      { stage: 'config', file: outDir, key: 'output' },
    );
  }
}

/**
 * Manifests of another way of splitting the work: a sweep over everything replaces the
 * shards' manifests, shard i/n replaces `manifest.json` and manifests of another n.
 * Compaction sums the counts of every manifest it finds, so only one layout may remain.
 */
async function removeOtherLayoutManifests(outDir: string, shard: Shard | null): Promise<void> {
  for (const name of readdirSync(outDir)) {
    const other = shardOfManifestFile(name);
    if (other === undefined) continue;
    const sameLayout = shard === null ? other === null : other !== null && other.count === shard.count;
    if (!sameLayout) await rm(join(outDir, name), { force: true });
  }
}

/** The plan with only the checkpoints of `shard`; runs and their prompt sets stay whole. */
function shardOf(plan: Plan, shard: Shard | null): Plan {
  if (shard === null) return plan;
  const runs = plan.runs.map((r) => ({ ...r, checkpoints: r.checkpoints.filter((c) => inShard(checkpointKey(c.run, c.path), shard)) }));
  return { ...plan, runs };
}

/** The heads with the highest prefix_matching in the first prompt set that has it. */
function topHeads(scores: CheckpointScores, labels: (string | null)[][], n: number): { promptSet: string; top: TopHead[] } | null {
  const p = scores.promptSets.findIndex((s) => s.prefix_matching !== undefined);
  if (p < 0) return null;
  const pm = scores.promptSets[p].prefix_matching!;
  const order = Array.from(pm.keys()).filter((k) => !Number.isNaN(pm[k])).sort((a, b) => pm[b] - pm[a] || a - b);
  return {
    promptSet: scores.promptSets[p].promptSet,
    top: order.slice(0, n).map((k) => ({
      layer: Math.floor(k / scores.nHeads),
      head: k % scores.nHeads,
      prefixMatching: pm[k],
      label: labels[p]?.[k] ?? null,
    })),
  };
}

/** The file stem of a checkpoint that has no readable bytes: its path stands in for them. */
function pathDigest(path: string): string {
  return createHash('sha256').update(`unreadable:${path}`).digest('hex');
}

/** A checkpoint of the plan with what it needs: `decided` is null for one the plan already found unreadable. */
interface Item {
  ck: PlannedCheckpoint;
  keys: SettingsKeys;
  prev: CheckpointState | null;
  decided: Decided | null;
}

/** Whether an item needs a worker thread. */
function needsPool(item: Item): boolean {
  if (item.decided === null || item.decided.decision.kind === 'skip') return false;
  const w = item.decided.decision.work;
  return w.keep === null || w.sets.length > 0 || w.weights;
}

/** What a checkpoint's files looked like, as text: a watch tries a failed checkpoint again only when it changes. */
function stampText(ck: PlannedCheckpoint): string {
  const stamp = stampFiles(watchedFiles(ck));
  return stamp === null ? 'missing' : stamp.file_stamps.map((f) => `${f.name}:${f.size}:${f.mtime_ns}`).join('\n');
}

/** The stamps a failed checkpoint's entry records: of the files it is read from, else of those that were there. */
function failedStamp(ck: PlannedCheckpoint): SourceStamp | null {
  return stampFiles(ck.files) ?? stampFiles(watchedFiles(ck));
}

/** One sweep's pool, counters and output; a watching sweep runs many passes through one. */
class SweepRun {
  private readonly startedAt = new Date();
  private readonly t0 = performance.now();
  /** One controller stops everything: the caller's signal, or a failure no row can hold. */
  readonly stop = new AbortController();
  private readonly log: EventLog;
  private readonly shard: Shard | null;
  private pool: CheckpointPool | null = null;
  /** This sweep's hold on the output root (or its shard of it), from start to finish. */
  private lock: Lock | null = null;
  private backend: BackendName | null = null;
  private threads = 0;
  private fatal: unknown = null;
  /** A checkpoint was dropped half-scored (Ctrl-C while it was in flight). */
  private dropped = false;
  private readonly scoredPaths = new Set<string>();
  private lastUpToDate = 0;
  private lastWaiting = 0;
  private passes = 0;
  private readonly errors: (SweepResult['errors'][number] & { at: number })[] = [];
  private readonly latest = new Map<string, { at: number; summary: RunSummary }>();
  /** Up-to-date checkpoints given files in formats they lacked, and which formats. */
  private readonly completed = new Set<string>();
  private readonly formatsAdded = new Set<OutputFormat>();
  /** Warnings of the plan already said: a watching sweep plans every poll. */
  private readonly warned = new Set<string>();
  /** Checkpoints already reported scored or up to date, by path and id, so a watching sweep says it once. */
  private readonly reported = new Set<string>();
  /** --watch: the file stamp each checkpoint failed at; it is not tried again until the file changes. */
  readonly failedAt = new Map<string, string>();
  /** Checkpoints of the current pass that need a worker and have not been handed to the pool yet. */
  private unstarted = 0;
  /** Copies of checkpoints the threads hold now: one per part being scored. */
  private loaded = 0;
  private byFile = new Map<string, PlannedCheckpoint>();

  constructor(
    private readonly config: SweepConfig,
    private readonly outDir: string,
    private readonly configFile: string,
    private readonly opts: SweepOptions,
    /** Set for a watching sweep: what it watches, how often, until when. */
    private readonly watched: { runs: number; globs: string[]; poll_seconds: number; until_idle_minutes: number | null } | null,
  ) {
    this.log = opts.log ?? (() => {});
    this.shard = opts.shard ?? null;
    const onAbort = () => this.stop.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.signal?.aborted) this.stop.abort();
  }

  get watching(): boolean {
    return this.watched !== null;
  }

  get stopped(): boolean {
    return this.stop.signal.aborted;
  }

  /** Starts the pool and its backend, before anything in the output folder is touched; then removes killed sweeps' temporary files. */
  /**
   * Takes the output root for this sweep, before its state is read or anything in it is
   * touched: another sweep here stops this one at once (and it hashes nothing first).
   */
  lockRoot(): void {
    if (this.lock !== null) return;
    checkOutput(this.outDir);
    this.lock = this.takeLock();
  }

  async start(threads: number, plan: Plan): Promise<void> {
    this.lockRoot();
    const c = this.config;
    this.threads = threads;
    this.pool = new CheckpointPool({
      workers: threads,
      retries: c.retries,
      taskTimeoutSeconds: c.task_timeout_s,
      onEvent: (e) => {
        this.opts.onPoolEvent?.(e);
        const event = poolEventToSweep(e, (file) => {
          const ck = this.byFile.get(file);
          return { run: ck?.run ?? '', path: ck?.path ?? file, step: ck?.step ?? null };
        });
        if (event !== null) this.log(event);
      },
    });
    try {
      this.backend = await this.pool.init(c.backend);
      await mkdir(this.outDir, { recursive: true });
      await removeStaleTemps(this.outDir, this.ownsTemp(plan), FOREIGN_TEMP_GRACE_MS);
    } catch (err) {
      await this.close();
      this.releaseLock();
      throw err;
    }
    this.log({
      event: 'sweep_started', name: c.name, out: this.outDir, shard: this.shard === null ? null : shardLabel(this.shard),
      backend: this.backend, workers: threads, watch: this.watching, watching: this.watched, force: this.opts.force ?? false,
    });
  }

  /**
   * Which temporary files this sweep may remove at once: all of them when it is the only
   * writer of the root (not sharded); a shard only those of its own manifest, state
   * entries and checkpoints' files. Others wait out `FOREIGN_TEMP_GRACE_MS`.
   */
  private ownsTemp(plan: Plan): (folder: string, finalName: string) => boolean {
    if (this.shard === null) return () => true;
    const manifest = manifestFileName(this.shard);
    const stateNames = new Set<string>();
    const stems = new Set<string>();
    for (const ck of plannedCheckpoints(plan)) {
      stateNames.add(basename(stateFile(this.outDir, ck.run, ck.path)));
      const state = readState(this.outDir, ck.run, ck.path);
      if (state !== null) stems.add(state.id);
    }
    return (folder, finalName) => {
      if (folder === '') return finalName === manifest;
      if (folder.startsWith(STATE_DIR)) return stateNames.has(finalName);
      return stems.has(finalName.replace(/\.(arrow|parquet)$/, ''));
    };
  }

  async close(): Promise<void> {
    await this.pool?.close();
    this.pool = null;
  }

  /**
   * The lock of the root, or of this sweep's shard of it. A whole-root sweep excludes
   * every shard (it removes any temporary file), a shard excludes a whole-root sweep.
   */
  private takeLock(): Lock {
    const name = sweepLockName(this.shard);
    const what = this.shard === null ? `the output folder ${this.outDir}` : `shard ${shardLabel(this.shard)} of the output folder ${this.outDir}`;
    const others = this.shard === null
      ? (names: string[]) => names.filter((n) => /^\.headsweep\.shard-\d+-of-\d+\.lock$/.test(n))
      : (names: string[]) => names.filter((n) => n === sweepLockName(null));
    return Lock.acquire(this.outDir, name, what, others);
  }

  releaseLock(): void {
    this.lock?.release();
    this.lock = null;
  }

  /** Decides, for each checkpoint, what it needs (reads state entries and hashes changed files; writes nothing). */
  async decideAll(plan: Plan, checkpoints: readonly PlannedCheckpoint[]): Promise<Item[]> {
    const keysOf = new Map<string, SettingsKeys>();
    for (const r of plan.runs) {
      keysOf.set(r.run, r.promptSets.length > 0 ? settingsKeys(plan.config, r.promptSets, plan.bigram) : { promptSets: [], weights: null });
    }
    // Read only for outputs that still hold files of the old stems, which two entries may list.
    const listed = new Map<string, Map<string, number>>();
    const items: Item[] = [];
    for (const ck of checkpoints) {
      const keys = keysOf.get(ck.run)!;
      const prev = readState(this.outDir, ck.run, ck.path);
      const listedElsewhere = (file: string) => {
        if (!listed.has(ck.run)) listed.set(ck.run, listings(this.outDir, ck.run));
        return (listed.get(ck.run)!.get(file) ?? 0) > 1;
      };
      const decided = ck.problem !== null ? null : await decide(this.outDir, ck, keys, prev, {
        force: this.opts.force ?? false, formats: this.config.output.formats, listedElsewhere,
      });
      items.push({ ck, keys, prev, decided });
    }
    return items;
  }

  /**
   * Scores and writes what `items` need, skips what is up to date, and writes each run's
   * prompts when they changed. `waiting` counts checkpoints a watching sweep left for a
   * later poll.
   */
  async pass(plan: Plan, items: readonly Item[], waiting: number): Promise<number> {
    const all = plannedCheckpoints(plan);
    this.byFile = new Map(all.map((ck) => [ck.file, ck]));
    // Output position of each checkpoint, looked up once per item rather than searched.
    const position = new Map(all.map((ck, i) => [ck, i]));
    const backend = this.backend!;
    // New warnings only (a watch plans again every poll), the first dozen of them: all are in the manifest.
    const fresh = plan.warnings.filter((message) => !this.warned.has(message));
    for (const message of fresh) this.warned.add(message);
    for (const message of summarise(fresh, 'warnings (every one is in the manifest)')) this.log({ event: 'warning', message });
    for (const item of items) {
      if (item.decided !== null) item.decided.decision = withBackend(item.decided.decision, item.keys, backend);
    }
    const upToDate = items.filter((i) => i.decided?.decision.kind === 'skip').length;
    const toScore = items.length - upToDate;
    this.lastUpToDate = items.filter((i) => i.decided?.decision.kind === 'skip' && !this.scoredPaths.has(i.ck.file)).length;
    this.lastWaiting = waiting;
    if (!this.watching || toScore > 0 || this.passes === 0) {
      this.log({ event: 'work_planned', checkpoints: all.length, to_score: toScore, up_to_date: upToDate, waiting });
    }

    this.passes++;
    this.unstarted = items.filter(needsPool).length;
    let done = 0;
    const queue = new PQueue({ concurrency: plan.maxInFlight });
    const onStop = () => queue.clear();
    this.stop.signal.addEventListener('abort', onStop, { once: true });
    try {
      for (const r of plan.runs) await this.writePrompts(r);
      // `handle` settles every failure itself; tasks dropped by clear() never settle, so
      // wait for the queue to drain rather than for each task's promise.
      for (const item of items) {
        void queue.add(async () => {
          if (await this.handle(plan, item, position.get(item.ck)!)) done++;
        });
      }
      await queue.onIdle();
      if (!this.stopped) for (const r of plan.runs) await removeUnlistedOldStems(this.outDir, r.run, TABLE_NAMES);
    } catch (err) {
      this.fatal ??= err;
      this.stop.abort();
    } finally {
      this.stop.signal.removeEventListener('abort', onStop);
    }
    if (done < items.length) this.dropped = true;
    return toScore;
  }

  /** The run's prompts file, written only when its bytes change, so an unchanged sweep rewrites nothing. */
  private async writePrompts(r: RunPlan): Promise<void> {
    if (r.promptSets.length === 0) return;
    const data = promptsTable(r.run, r.promptSets);
    for (const format of this.config.output.formats) {
      const path = tableFilePath(this.outDir, 'prompts', r.run, 'prompts', format);
      const bytes = await tableFileBytes(data, format);
      if (existsSync(path) && readFileSync(path).equals(bytes)) continue;
      await writeFileAtomic(path, bytes);
    }
  }

  /** Handles one item; false when it was dropped (stopped first) or the output folder failed. */
  private async handle(plan: Plan, item: Item, at: number): Promise<boolean> {
    if (this.stopped) return false;
    try {
      await this.handleOne(plan, item, at);
      return true;
    } catch (err) {
      // Stopped while this one was scored (Ctrl-C, or another's fatal error): it is dropped.
      if (this.stopped) return false;
      // Not even the errors row could be written: the output folder is unusable.
      this.fatal ??= err;
      this.stop.abort();
      return false;
    }
  }

  /** --watch: a matched file that is not whole yet, or still changing. */
  logWaiting(ck: PlannedCheckpoint, readiness: Exclude<Readiness, 'ready'>): void {
    this.log({ event: 'checkpoint_waiting', run: ck.run, path: ck.path, step: ck.step, reason: readiness });
  }

  private async handleOne(plan: Plan, item: Item, at: number): Promise<void> {
    const { ck } = item;
    if (item.decided === null) {
      await this.fail(item, at, ck.problem!.stage, ck.problem!.message, null);
      return;
    }
    if (item.decided.renameTo !== null) await this.takeOver(item, item.decided.renameTo);
    const d = item.decided.decision;
    if (d.kind === 'skip') {
      let state = d.state;
      let added: OutputFormat[] = [];
      if (d.complete) {
        const { files, written } = await completeFormats(this.outDir, state.files, this.config.output.formats);
        state = { ...state, files, formats: formatsOf(files) };
        added = formatsOf(written);
        this.completed.add(ck.file);
        for (const f of added) this.formatsAdded.add(f);
      }
      const said = `${ck.file}\u0000${d.state.id}`;
      if (!this.reported.has(said) || added.length > 0) {
        this.reported.add(said);
        this.log({
          event: 'checkpoint_skipped', run: ck.run, path: ck.path, step: ck.step, sha256: state.sha256!, id: state.id, reason: 'up_to_date', formats_added: added,
        });
      }
      if (d.complete || (d.restamp && item.decided.stamp !== null)) await writeState(this.outDir, { ...state, ...(item.decided.stamp ?? {}) });
      return;
    }
    const run = plan.runs.find((r) => r.run === ck.run)!;
    let work = d.work;
    this.log({ event: 'checkpoint_started', run: ck.run, path: ck.path, step: ck.step, reason: work.reason, prompt_sets: work.sets, weights: work.weights });
    let outcome: Scored | null = null;
    if (needsPool(item)) {
      this.unstarted--;
      const parts = this.shareOut(plan);
      this.loaded += parts;
      let result: CheckpointOutcome;
      try {
        result = await this.score(plan, run, ck, work, parts);
        if (result.ok && work.keep !== null && result.sha256 !== work.keep.sha256) {
          // The file changed after it was hashed: the stored rows are for other bytes.
          work = allWork('changed', item.keys);
          result = await this.score(plan, run, ck, work);
        }
      } finally {
        this.loaded -= parts;
      }
      if (!result.ok) {
        await this.fail(item, at, result.stage, result.message, result.sha256);
        return;
      }
      outcome = result;
    }
    let written: Awaited<ReturnType<SweepRun['write']>>;
    try {
      written = await this.write(ck, item, work, outcome);
    } catch (err) {
      await this.fail(item, at, 'write', messageOf(err), outcome?.sha256 ?? null);
      return;
    }
    this.scoredPaths.add(ck.file);
    this.reported.add(`${ck.file}\u0000${written.id}`);
    const heads = written.scores.nLayers * written.scores.nHeads;
    this.log({
      event: 'checkpoint_finished', run: ck.run, path: ck.path, step: ck.step, sha256: written.sha256, id: written.id,
      prompt_sets: work.sets, weights: work.weights, heads, seconds: written.seconds, workers: outcome?.parts ?? 0,
    });
    const top = topHeads(written.scores, written.labels, this.opts.topHeads ?? 3);
    // Results arrive in any order; the plan is in step order, so keep the latest in it.
    if (top !== null && (this.latest.get(ck.run)?.at ?? -1) < at) {
      this.latest.set(ck.run, { at, summary: { run: ck.run, step: ck.step, checkpoint: ck.path, ...top } });
    }
  }

  /**
   * Gives the files of an entry written with an old stem the checkpoint's stem, so what
   * follows (skip, or a partial rescore that keeps rows) works on files named as today.
   */
  private async takeOver(item: Item, id: string): Promise<void> {
    const renamed = await renameStem(this.outDir, item.prev!, id);
    const d = item.decided!.decision;
    if (d.kind === 'skip') d.state = renamed;
    else if (d.work.keep !== null) d.work.keep = renamed;
    item.prev = renamed;
  }

  /**
   * How many threads share the checkpoint about to be scored: those that would otherwise
   * have nothing to do, when fewer checkpoints are left to start than threads are free.
   * Sharing never changes a score (src/work.ts), only when the sweep ends.
   */
  private shareOut(plan: Plan): number {
    // Every part loads the whole checkpoint on its thread: no more copies than the memory budget holds.
    return Math.max(1, Math.min(this.pool!.idleThreads() - this.unstarted, plan.maxInFlight - this.loaded));
  }

  /** Asks the pool for the prompt sets and weight scores `work` names, shared by `parts` threads. */
  private async score(plan: Plan, run: RunPlan, ck: PlannedCheckpoint, work: Work, parts = 1): Promise<CheckpointOutcome> {
    const c = this.config;
    const sets = new Set(work.sets);
    // A partial rescore asks only for what it writes: the per-prompt-set metrics (copying
    // among them, for its column and the labels) when a prompt set is due, composition
    // and bigram_kl when their key changed.
    const metrics = work.keep === null ? c.metrics : c.metrics.filter((m) => (WEIGHTS_KEYED_METRICS.includes(m) ? work.weights : sets.size > 0));
    return this.pool!.score({
      // The backend the probe started, not `auto`: every thread must run the same
      // kernels, or the tables would depend on which thread scored a checkpoint.
      backend: this.backend!,
      file: ck.file,
      family: ck.readAs,
      promptSets: run.promptSets.filter((s) => sets.has(s.name)),
      // The counts are structured-cloned into every task (not transferred: each task needs them).
      score: { metrics, batchSize: c.batch_size, icl: c.icl, bigrams: metrics.includes('bigram_kl') ? plan.bigram!.bigrams : undefined },
      rules: c.classify,
      config: ck.config,
    }, this.stop.signal, parts);
  }

  /** Writes one table file in every format; returns the paths relative to the output root. */
  private async writeTable(table: TableName, run: string, stem: string, data: Table): Promise<string[]> {
    const paths = await writeTableFile(this.outDir, table, run, stem, data, this.config.output.formats);
    return paths.map((p) => relative(this.outDir, p));
  }

  /**
   * Writes a checkpoint's tables: the scores of the prompt sets scored now merged with
   * those kept, composition when computed now (else its file is kept, or dropped when no
   * longer asked for), and the checkpoints row when the checkpoint was loaded. Then
   * removes the files the new result replaces, and last writes the state entry. A
   * failure before the entry is written leaves the entry as it was, and the checkpoint
   * is scored again by the next sweep.
   */
  private async write(ck: PlannedCheckpoint, item: Item, work: Work, outcome: Scored | null) {
    const c = this.config;
    const keep = work.keep;
    const sha256 = outcome?.sha256 ?? keep!.sha256!;
    const id = fileStem(ck, sha256);
    const model = outcome?.config ?? ck.config!;
    const start = performance.now();
    const order = item.keys.promptSets.map((s) => s.name);
    const fresh = new Set(outcome === null ? [] : work.sets);
    const kept: KeptRows = keep === null ? { sets: new Map() } : await readKept(
      this.outDir, keep, order.filter((n) => !fresh.has(n)), model.n_layers * model.n_heads, work.weights ? [] : metricsOfKind(c.metrics, 'corpus'),
    );
    const merged = mergeScores(order, model.n_layers, model.n_heads, outcome, kept, c.metrics, work.weights);
    const scores: CheckpointScores = merged.scores;
    const seconds = { load: outcome?.loadSeconds ?? 0, forward: scores.seconds.forward, weights: scores.seconds.weights, write: 0 };
    const info = { run: ck.run, step: ck.step, tokensSeen: ck.tokensSeen, checkpoint: ck.path, sha256, config: model, seconds };

    const files: string[] = [];
    const rows: CheckpointState['rows'] = {};
    // A table whose rows are unchanged keeps its files, written in any format asked for
    // that it lacks; its files in other formats go with the rest of the old result.
    const carry = async (table: TableName) => {
      const kept = await completeFormats(this.outDir, keep!.files.filter((f) => f.startsWith(`${table}/`)), c.output.formats);
      files.push(...kept.files.filter((f) => c.output.formats.some((format) => f.endsWith(`.${format}`))));
      if (keep!.rows[table] !== undefined) rows[table] = keep!.rows[table];
    };
    const tables = checkpointTables(info, scores, merged.labels);
    try {
      for (const table of ['heads', 'composition', 'checkpoint_scores'] as const) {
        const data = tables[table];
        if (data !== undefined) {
          files.push(...await this.writeTable(table, ck.run, id, data));
          rows[table] = data.numRows;
        } else if (table === 'composition' && keep !== null && !work.weights && item.keys.weights !== null) {
          await carry(table);
        }
      }
      if (outcome !== null) {
        // The checkpoints row reports the time its score tables took to build and write.
        seconds.write = (performance.now() - start) / 1000;
        const row = checkpointsTable(info);
        files.push(...await this.writeTable('checkpoints', ck.run, id, row));
        rows.checkpoints = 1;
      } else {
        await carry('checkpoints');
      }
    } catch (err) {
      // The write error names the file at fault; a failed cleanup must not replace it.
      await this.dropUnlisted(ck.run, id, item.prev).catch(() => undefined);
      throw err;
    }
    // Only now that the new files are in place: drop what they replace (another stem's
    // files, an errors row, a format or table no longer written). Files of an old stem
    // may be another entry's too: removeUnlistedOldStems takes them once none lists them.
    for (const old of item.prev?.files ?? []) {
      if (!files.includes(old) && !isOldStem(old)) await rm(join(this.outDir, old), { force: true });
    }
    await writeState(this.outDir, {
      format: 1, run: ck.run, path: ck.path, ...(item.decided!.stamp ?? { size: 0, mtime_ns: '0' }),
      sha256, id, status: 'scored', backend: this.backend, converter: ck.source!.converter, formats: [...c.output.formats],
      weights: item.keys.weights, prompt_sets: item.keys.promptSets, files, rows,
    });
    return { id, sha256, scores, labels: merged.labels, seconds };
  }

  /**
   * After a failed write: removes the files of stem `id` that landed before the failure
   * and that no entry lists. The entry stays as it was (fail() marks it failed), and a
   * reader that globs the folder would otherwise count those rows beside the entry's own.
   */
  private async dropUnlisted(run: string, id: string, prev: CheckpointState | null): Promise<void> {
    const listed = new Set(prev?.files ?? []);
    for (const table of ['heads', 'composition', 'checkpoint_scores', 'checkpoints'] as const) {
      for (const format of this.config.output.formats) {
        const file = relative(this.outDir, tableFilePath(this.outDir, table, run, id, format));
        if (!listed.has(file)) await rm(join(this.outDir, file), { force: true });
      }
    }
  }

  /**
   * Writes the checkpoint's errors row and marks its entry failed, so the next sweep tries
   * it again. Files of an earlier result stay listed: a later success replaces them.
   */
  private async fail(item: Item, at: number, stage: Stage, reason: string, sha256: string | null): Promise<void> {
    const { ck, prev } = item;
    // The last guard for what a file or a library put in the message: one line, of a sane length.
    const message = oneLine(reason);
    const stamp = item.decided?.stamp ?? failedStamp(ck);
    // The bytes found name the stem, but not those of a checkpoint the plan opened and
    // refused (too large for the backend, say: it may be gigabytes); a folder has none of its own.
    const refused = ck.problem !== null && ck.config !== null;
    const sha = sha256 ?? (ck.kind === 'file' && !refused ? await sha256File(ck.file).catch(() => null) : null);
    const id = fileStem(ck, sha ?? pathDigest(ck.path));
    this.errors.push({ at, run: ck.run, path: ck.path, stage, message });
    const written = await this.writeTable('errors', ck.run, id, errorsTable([{ run: ck.run, path: ck.path, stage, message }]));
    const files = [...new Set([...(prev?.files ?? []), ...written])];
    const errorRows = new Set(files.filter((f) => f.startsWith('errors/')).map((f) => f.replace(/\.(arrow|parquet)$/, ''))).size;
    await writeState(this.outDir, {
      format: 1, run: ck.run, path: ck.path, ...(stamp ?? { size: 0, mtime_ns: '0' }),
      sha256: sha, id, status: 'failed', backend: this.backend, converter: ck.source?.converter ?? null, formats: [...this.config.output.formats],
      weights: null, prompt_sets: [], files, rows: { ...prev?.rows, errors: errorRows },
    });
    if (this.watching) this.failedAt.set(ck.file, stampText(ck));
    this.log({ event: 'checkpoint_failed', run: ck.run, path: ck.path, step: ck.step, stage, message });
  }

  /** Writes the manifest (of the last plan) and returns the sweep's result; rethrows a fatal error after. */
  async finish(plan: Plan, interruptedBySignal: boolean): Promise<SweepResult> {
    try {
      return await this.conclude(plan, interruptedBySignal);
    } finally {
      this.releaseLock();
    }
  }

  private async conclude(plan: Plan, interruptedBySignal: boolean): Promise<SweepResult> {
    const c = this.config;
    const all = plannedCheckpoints(plan);
    const status: Manifest['status'] = this.fatal !== null ? 'failed' : (interruptedBySignal || this.dropped) ? 'interrupted' : 'finished';
    const exitCode = status !== 'finished' ? EXIT.failure : this.errors.length > 0 ? EXIT.partial : EXIT.ok;
    const rows = Object.fromEntries(TABLE_NAMES.map((t) => [t, 0])) as Record<TableName, number>;
    for (const ck of all) {
      const state = readState(this.outDir, ck.run, ck.path);
      for (const t of TABLE_NAMES) rows[t] += state?.rows[t] ?? 0;
    }
    for (const r of plan.runs) rows.prompts += r.promptSets.reduce((n, s) => n + s.sequences.length, 0);
    const manifest: Manifest = {
      name: c.name,
      status,
      config: { ...c, output: { dir: this.outDir, formats: c.output.formats } },
      config_path: resolve(this.configFile),
      started_at: this.startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      backend: this.backend!,
      workers: this.threads,
      shard: this.shard === null ? null : shardLabel(this.shard),
      versions: packageVersions(),
      tables_version: TABLES_VERSION,
      counts: { checkpoints_planned: all.length, scored: this.scoredPaths.size, up_to_date: this.lastUpToDate, failed: this.errors.length, rows },
      exit_code: exitCode,
      warnings: plan.warnings,
    };
    await writeManifest(this.outDir, manifest, manifestFileName(this.shard));
    await removeOtherLayoutManifests(this.outDir, this.shard);
    this.log({
      event: 'sweep_finished', status, exit_code: exitCode,
      counts: { checkpoints: all.length, scored: this.scoredPaths.size, up_to_date: this.lastUpToDate, failed: this.errors.length, waiting: this.lastWaiting },
      seconds: (performance.now() - this.t0) / 1000,
    });
    if (this.fatal !== null) throw this.fatal;
    const summary = plan.runs.map((r) => this.latest.get(r.run)?.summary).filter((s): s is RunSummary => s !== undefined);
    const inPlanOrder = this.errors.sort((a, b) => a.at - b.at).map(({ at: _, ...e }) => e);
    const formatsAdded = { checkpoints: this.completed.size, formats: OUTPUT_FORMATS.filter((f) => this.formatsAdded.has(f)) };
    return { exitCode, manifest, summary, errors: inPlanOrder, formatsAdded };
  }
}

/** Scores what the plan's checkpoints need (all of them on a first run) and writes the tables. */
export async function runSweep(plan: Plan, opts: SweepOptions = {}): Promise<SweepResult> {
  const mine = shardOf(plan, opts.shard ?? null);
  const run = new SweepRun(mine.config, mine.outDir, mine.configFile, opts, null);
  run.lockRoot();
  let items: Item[];
  try {
    items = await run.decideAll(mine, plannedCheckpoints(mine));
  } catch (err) {
    run.releaseLock();
    throw err;
  }
  // Threads beyond the checkpoints to score share their work (`shareOut`); with nothing to score, one is enough.
  await run.start(items.some(needsPool) ? mine.config.workers : 1, mine);
  try {
    await run.pass(mine, items, 0);
  } catch (err) {
    // The root is free again for the next sweep of this process (a library caller's retry).
    run.releaseLock();
    throw err;
  } finally {
    await run.close();
  }
  return run.finish(mine, opts.signal?.aborted ?? false);
}

/**
 * Follows training runs: plans the config every `pollSeconds`, scores each checkpoint
 * once it is whole (watch.ts), and stops when the signal aborts or nothing new has
 * appeared for `untilIdleMinutes`. A checkpoint that fails is tried again only once its
 * file changes.
 */
export async function watchSweep(loaded: LoadedConfig, overrides: ConfigOverrides, opts: WatchOptions): Promise<SweepResult> {
  const planNow = async () => shardOf(await buildPlan(loaded, overrides, { allowEmptyGlobs: true }), opts.shard ?? null);
  let plan = await planNow();
  const run = new SweepRun(plan.config, plan.outDir, plan.configFile, opts, {
    runs: plan.config.checkpoints.length, globs: plan.config.checkpoints.flatMap((c) => c.paths), poll_seconds: opts.pollSeconds, until_idle_minutes: opts.untilIdleMinutes ?? null,
  });
  const tracker = new ReadinessTracker();
  const said = new Map<string, Readiness>();
  await run.start(plan.config.workers, plan);
  let lastNews = performance.now();
  try {
    for (;;) {
      const all = plannedCheckpoints(plan);
      tracker.keepOnly(new Set(all.map((ck) => ck.file)));
      const ready: PlannedCheckpoint[] = [];
      let waiting = 0;
      let news = false;
      for (const ck of all) {
        const readiness = tracker.observe(ck);
        if (said.get(ck.file) !== readiness) news = true;
        if (readiness === 'ready') {
          said.set(ck.file, readiness);
          if (run.failedAt.get(ck.file) !== stampText(ck)) ready.push(ck);
          continue;
        }
        waiting++;
        if (said.get(ck.file) !== readiness) run.logWaiting(ck, readiness);
        said.set(ck.file, readiness);
      }
      const worked = await run.pass(plan, await run.decideAll(plan, ready), waiting);
      if (worked > 0 || news) lastNews = performance.now();
      if (run.stopped) break;
      if (opts.untilIdleMinutes !== undefined && performance.now() - lastNews >= opts.untilIdleMinutes * 60_000) break;
      await delay(opts.pollSeconds * 1000, undefined, { signal: run.stop.signal }).catch(() => undefined);
      if (run.stopped) break;
      plan = await planNow();
    }
  } catch (err) {
    run.releaseLock();
    throw err;
  } finally {
    await run.close();
  }
  // Stopping a watch is how it ends: only work dropped half-done makes it `interrupted`.
  return run.finish(plan, false);
}
