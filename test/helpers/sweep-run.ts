/**
 * Real `headsweep sweep` processes for the nightly-operations tests: spawned with
 * `--log-format json`, their events parsed as they arrive, and optionally killed (or
 * written to) when an event says the moment has come. Plus a comparison of two output
 * roots' tables that ignores only what is measured (the `*_seconds` columns).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import type { SweepEvent } from '../../pipeline/events.ts';

const REPO = join(import.meta.dirname, '..', '..');

export type Event = SweepEvent & { time: string };

/**
 * A sweep config over both demo series (7 checkpoints) with two small prompt sets, rrt
 * seeded with `seed` and the nat tokens file, written to `<dir>/<name>.yaml`; one worker
 * so that events come in plan order. `--out` names the output folder.
 */
export function demoConfig(dir: string, name: string, seed = 0): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, [
    `name: ${name}`,
    'output: unused',
    'checkpoints:',
    `  - {run: planted-2l, paths: ["${REPO}/data/demo/planted-2l/*.safetensors"]}`,
    `  - {run: shortformer-1l, paths: ["${REPO}/data/demo/shortformer-1l/*.safetensors"]}`,
    'prompt_sets:',
    `  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 2, seed: ${seed}}`,
    `  - {name: nat, kind: tokens, path: "${REPO}/data/prompts/nat.jsonl"}`,
    'icl: {early: 10, late: 45}',
    'batch_size: 4',
    'workers: 1',
  ].join('\n'));
  return file;
}

export interface SweepRun {
  code: number | null;
  /** The signal that ended the process, if one did. */
  signal: NodeJS.Signals | null;
  events: Event[];
  stdout: string;
  /** stderr lines that are not JSON events. */
  other: string[];
}

export interface SpawnOptions {
  env?: Record<string, string>;
  /**
   * Called after each event with all events so far; return a signal to send it once
   * (e.g. 'SIGKILL'), or run side effects (write a file) and return nothing.
   */
  onEvent?: (events: readonly Event[]) => NodeJS.Signals | void | Promise<NodeJS.Signals | void>;
}

/** Runs `headsweep sweep <args> --log-format json`; resolves when the process has ended. */
export function sweep(args: readonly string[], opts: SpawnOptions = {}): Promise<SweepRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'headsweep.js'), 'sweep', ...args, '--log-format', 'json'], {
      cwd: REPO,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const events: Event[] = [];
    const other: string[] = [];
    let stdout = '';
    let pending = '';
    let signalled = false;
    // Events are handled one after another, even when onEvent is async.
    let chain = Promise.resolve();
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith('{')) {
          other.push(line);
          continue;
        }
        events.push(JSON.parse(line) as Event);
        const snapshot = [...events];
        chain = chain.then(async () => {
          if (signalled || opts.onEvent === undefined) return;
          const signal = await opts.onEvent(snapshot);
          if (signal !== undefined) {
            signalled = true;
            child.kill(signal);
          }
        }).catch(reject);
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      void chain.then(() => resolve({ code, signal, events, stdout, other }));
    });
  });
}

/** The events of one kind. */
export function eventsOf<K extends Event['event']>(events: readonly Event[], kind: K): Extract<Event, { event: K }>[] {
  return events.filter((e) => e.event === kind) as Extract<Event, { event: K }>[];
}

/** Every file under `root`, relative, sorted. */
export function files(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(root, path));
    }
  };
  if (existsSync(root)) walk(root);
  return out.sort();
}

/** The table files of an output root (no manifests, state or compaction), relative and sorted. */
export function tableFiles(root: string): string[] {
  return files(root).filter((f) => !f.startsWith('.state/') && !f.startsWith('compacted/') && !f.startsWith('manifest'));
}

/** Rows of an Arrow file as plain objects, without the measured `*_seconds` columns. */
export function untimedRows(file: string): Record<string, unknown>[] {
  return tableFromIPC(readFileSync(file)).toArray().map((r) => {
    const row = r.toJSON() as Record<string, unknown>;
    return Object.fromEntries(Object.entries(row).filter(([k]) => !k.endsWith('_seconds')));
  });
}

/**
 * What two roots must agree on: for each table file, its bytes, except files of the
 * `checkpoints` table (Arrow: rows without `*_seconds`; Parquet: left out, its bytes
 * hold the times). `pick` chooses the files (default: all table files).
 */
export function tableSnapshot(root: string, pick: (root: string) => string[] = tableFiles): Map<string, unknown> {
  const snapshot = new Map<string, unknown>();
  for (const f of pick(root)) {
    const timed = f.startsWith('checkpoints/') || f === 'checkpoints.arrow';
    if (!timed) snapshot.set(f, readFileSync(join(root, f)).toString('base64'));
    else if (f.endsWith('.arrow')) snapshot.set(f, untimedRows(join(root, f)));
  }
  return snapshot;
}
