/**
 * Runs a plan: checkpoints go to the worker pool, results come back to this thread, and
 * only this thread writes files. Each checkpoint's files depend on that checkpoint alone
 * (never on which worker scored it or in what order results arrived), so a sweep gives
 * the same tables with any number of workers.
 *
 * How many checkpoints are in flight is bounded by `plan.maxInFlight` (from the memory
 * budget), not by the pool's queue. A checkpoint that fails becomes one row in `errors`;
 * the sweep goes on and ends with exit code 3. Aborting the signal (Ctrl-C) stops
 * taking work, drops the checkpoints still being scored, lets writes under way finish
 * (each file appears whole or not at all), and writes the manifest as `interrupted`.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Table } from 'apache-arrow';
import PQueue from 'p-queue';
import type { BackendName } from '../src/backend.ts';
import { HeadsweepError, messageOf, type Stage } from '../src/errors.ts';
import type { CheckpointScores } from '../src/score.ts';
import { EXIT } from './cli.ts';
import { sha256File } from './hash.ts';
import { packageVersions, writeManifest, type Manifest } from './manifest.ts';
import { plannedCheckpoints, type Plan, type PlannedCheckpoint } from './plan.ts';
import { CheckpointPool, type CheckpointOutcome, type PoolEvent } from './pool.ts';
import type { ProgressSink } from './progress.ts';
import { isCompactionEntry } from './compact.ts';
import { shardOfManifestFile } from './shard.ts';
import { writeTableFile } from './sinks/index.ts';
import {
  checkpointId, checkpointTables, errorsTable, promptsTable, TABLE_NAMES, type TableName,
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
  /** One per run with a scored checkpoint that has prefix_matching, in config order. */
  summary: RunSummary[];
  errors: { run: string; path: string; stage: Stage; message: string }[];
}

type Scored = Extract<CheckpointOutcome, { ok: true }>;

export interface SweepOptions {
  /** Abort to stop the sweep early (Ctrl-C). */
  signal?: AbortSignal;
  progress?: ProgressSink;
  /** How many heads the summary lists per run. */
  topHeads?: number;
  /** Worker faults as they happen: retries, checkpoints given up on (pipeline/pool.ts). */
  onPoolEvent?: (event: PoolEvent) => void;
}

/**
 * Whether a headsweep command writes this name into an output root: table folders,
 * manifests (`manifest.json`, a shard's `manifest.shard-<i>-of-<n>.json`) and what
 * `headsweep compact` derives from them.
 */
function isOutputEntry(name: string): boolean {
  return (TABLE_NAMES as readonly string[]).includes(name) || shardOfManifestFile(name) !== undefined || isCompactionEntry(name);
}

/**
 * Refuses an output folder that holds anything headsweep does not write, so a mistyped
 * `--out` never deletes someone's files.
 */
function checkOutput(outDir: string): void {
  if (!existsSync(outDir)) return;
  const foreign = readdirSync(outDir).filter((name) => !isOutputEntry(name));
  if (foreign.length > 0) {
    throw new HeadsweepError(
      `output folder ${outDir} holds files a sweep does not write (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}); choose a new or empty folder`,
      { stage: 'config', file: outDir, key: 'output' },
    );
  }
}

/** Removes a previous sweep's tables, manifests and compaction, so the folder holds this sweep alone. */
async function clearOutput(outDir: string): Promise<void> {
  if (existsSync(outDir)) {
    for (const name of readdirSync(outDir).filter(isOutputEntry)) await rm(join(outDir, name), { recursive: true, force: true });
  }
  await mkdir(outDir, { recursive: true });
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

export async function runSweep(plan: Plan, opts: SweepOptions = {}): Promise<SweepResult> {
  const c = plan.config;
  const startedAt = new Date();
  const all = plannedCheckpoints(plan);
  const toScore = all.filter((ck) => ck.problem === null);
  const rows = Object.fromEntries(TABLE_NAMES.map((t) => [t, 0])) as Record<TableName, number>;
  const errors: (SweepResult['errors'][number] & { at: number })[] = [];
  const latest = new Map<string, { at: number; summary: RunSummary }>();
  let scored = 0;
  let fatal: unknown = null;

  checkOutput(plan.outDir);
  // More threads than checkpoints would only start backends that never get work.
  const threads = Math.max(1, Math.min(c.workers, toScore.length));
  const pool = new CheckpointPool({ workers: threads, retries: c.retries, taskTimeoutSeconds: c.task_timeout_s, onEvent: opts.onPoolEvent });
  let backend: BackendName;
  try {
    backend = await pool.init(c.backend);
    await clearOutput(plan.outDir);
  } catch (err) {
    await pool.close();
    throw err;
  }

  // One controller stops everything: the caller's signal, or a failure no row can hold.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) stop.abort();
  opts.progress?.note(`headsweep: ${all.length} checkpoint(s) in ${plan.runs.length} run(s), ${threads} worker(s) on ${backend}, up to ${plan.maxInFlight} in flight → ${plan.outDir}`);

  const write = async (table: TableName, run: string, stem: string, data: Table): Promise<string[]> => {
    const paths = await writeTableFile(plan.outDir, table, run, stem, data, c.output.formats);
    rows[table] += data.numRows;
    return paths;
  };

  const recordError = async (ck: PlannedCheckpoint, stage: Stage, message: string, sha256: string | null) => {
    let sha = sha256;
    if (sha === null) sha = await sha256File(ck.file).catch(() => pathDigest(ck.path));
    errors.push({ at: all.indexOf(ck), run: ck.run, path: ck.path, stage, message });
    await write('errors', ck.run, checkpointId(ck.step, sha), errorsTable([{ run: ck.run, path: ck.path, stage, message }]));
  };

  /** Writes one checkpoint's tables; on failure removes the ones already written, so it is all or nothing. */
  const writeScored = async (ck: PlannedCheckpoint, outcome: Scored) => {
    const stem = checkpointId(ck.step, outcome.sha256);
    const info = {
      run: ck.run, step: ck.step, tokensSeen: ck.tokensSeen, checkpoint: ck.path, sha256: outcome.sha256, config: outcome.config,
      seconds: { load: outcome.loadSeconds, forward: outcome.scores.seconds.forward, weights: outcome.scores.seconds.weights, write: 0 },
    };
    const written: string[] = [];
    try {
      const start = performance.now();
      const tables = checkpointTables(info, outcome.scores, outcome.labels);
      for (const table of ['heads', 'composition', 'checkpoint_scores'] as const) {
        const data = tables[table];
        if (data !== undefined) written.push(...await write(table, ck.run, stem, data));
      }
      // The checkpoints row reports the time its score tables took to build and write.
      info.seconds.write = (performance.now() - start) / 1000;
      const row = checkpointTables(info, { ...outcome.scores, promptSets: [], composition: undefined }, []).checkpoints!;
      written.push(...await write('checkpoints', ck.run, stem, row));
    } catch (err) {
      for (const path of written) await rm(path, { force: true });
      throw err;
    }
  };

  /** Scores one checkpoint and writes its tables or its errors row; returns the failing stage, or null. */
  const scoreAndWrite = async (ck: PlannedCheckpoint): Promise<Stage | null> => {
    if (ck.problem !== null) {
      await recordError(ck, ck.problem.stage, ck.problem.message, null);
      return ck.problem.stage;
    }
    const outcome = await pool.score({
      // The backend the probe started, not `auto`: every thread must run the same
      // kernels, or the tables would depend on which thread scored a checkpoint.
      backend,
      file: ck.file,
      promptSets: plan.runs.find((r) => r.run === ck.run)!.promptSets,
      score: { metrics: c.metrics, batchSize: c.batch_size, icl: c.icl },
      rules: c.classify,
    }, stop.signal);
    if (!outcome.ok) {
      await recordError(ck, outcome.stage, outcome.message, outcome.sha256);
      return outcome.stage;
    }
    try {
      await writeScored(ck, outcome);
    } catch (err) {
      await recordError(ck, 'write', messageOf(err), outcome.sha256);
      return 'write';
    }
    scored++;
    const top = topHeads(outcome.scores, outcome.labels, opts.topHeads ?? 3);
    // Results arrive in any order; the plan is in step order, so keep the latest in it.
    const at = all.indexOf(ck);
    if (top !== null && (latest.get(ck.run)?.at ?? -1) < at) {
      latest.set(ck.run, { at, summary: { run: ck.run, step: ck.step, checkpoint: ck.path, ...top } });
    }
    return null;
  };

  const handle = async (ck: PlannedCheckpoint) => {
    if (stop.signal.aborted) return;
    let failedAt: Stage | null;
    try {
      failedAt = await scoreAndWrite(ck);
    } catch (err) {
      // Stopped while this one was scored (Ctrl-C, or another's fatal error): it is dropped.
      if (stop.signal.aborted) return;
      // Not even the errors row could be written: the output folder is unusable.
      fatal ??= err;
      stop.abort();
      return;
    }
    const heads = failedAt === null && ck.config !== null ? ck.config.n_layers * ck.config.n_heads : 0;
    opts.progress?.checkpointDone({ run: ck.run, path: ck.path, step: ck.step, heads, failedAt });
  };

  try {
    for (const r of plan.runs) {
      if (r.promptSets.length > 0) await write('prompts', r.run, 'prompts', promptsTable(r.run, r.promptSets));
    }
    const queue = new PQueue({ concurrency: plan.maxInFlight });
    stop.signal.addEventListener('abort', () => queue.clear(), { once: true });
    // `handle` settles every failure itself; tasks dropped by clear() never settle, so
    // wait for the queue to drain rather than for each task's promise.
    for (const ck of all) void queue.add(() => handle(ck));
    await queue.onIdle();
  } catch (err) {
    fatal ??= err;
  } finally {
    opts.progress?.finish();
    opts.signal?.removeEventListener('abort', onAbort);
    await pool.close();
  }

  const status: Manifest['status'] = fatal !== null ? 'failed' : opts.signal?.aborted ? 'interrupted' : 'finished';
  const exitCode = status !== 'finished' ? EXIT.failure : errors.length > 0 ? EXIT.partial : EXIT.ok;
  const manifest: Manifest = {
    name: c.name,
    status,
    config: { ...c, output: { dir: plan.outDir, formats: c.output.formats } },
    config_path: resolve(plan.configFile),
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    backend,
    workers: threads,
    versions: packageVersions(),
    counts: { checkpoints_planned: all.length, scored, failed: errors.length, rows },
    exit_code: exitCode,
  };
  await writeManifest(plan.outDir, manifest);
  if (fatal !== null) throw fatal;

  const summary = plan.runs.map((r) => latest.get(r.run)?.summary).filter((s): s is RunSummary => s !== undefined);
  const inPlanOrder = errors.sort((a, b) => a.at - b.at).map(({ at: _, ...e }) => e);
  return { exitCode, manifest, summary, errors: inPlanOrder };
}
