/**
 * `headsweep sweep --watch` as a trainer would meet it: a real watching process, a
 * checkpoint written slowly in place (part of its bytes, then the rest) and one written
 * to a temporary name and renamed. Each is scored exactly once, the partial file is
 * never reported as an error, and the watch ends by itself once idle. A file that stopped
 * growing long ago and still is no checkpoint becomes an errors row, as in a plain sweep.
 */
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import type { Manifest } from '../pipeline/manifest.ts';
import { tempDir } from './helpers/safetensors.ts';
import { headsweep } from './helpers/cli.ts';
import { eventsOf, sweep, tableFiles, type SweepRun } from './helpers/sweep-run.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const DEMO = join(import.meta.dirname, '..', 'data', 'demo', 'planted-2l');
const CKPTS = join(tmp.dir, 'ckpts');
mkdirSync(CKPTS);
copyFileSync(join(DEMO, 'step00000.safetensors'), join(CKPTS, 'step00000.safetensors'));

const CONFIG = tmp.file('watch.yaml', [
  'name: watch-test',
  'output: out',
  'checkpoints:',
  '  - {run: r, paths: ["ckpts/*.safetensors"]}',
  'prompt_sets:',
  '  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 2, seed: 0}',
  'metrics: [prefix_matching, previous_token, copying]',
  'workers: 1',
].join('\n'));

const SLOW = 'ckpts/step00500.safetensors';
const RENAMED = 'ckpts/step01000.safetensors';
let run: SweepRun;

beforeAll(async () => {
  const slow = readFileSync(join(DEMO, 'step00500.safetensors'));
  const cut = Math.floor(slow.length / 2);
  // Each step reacts to an event of the watcher, so nothing here depends on timing.
  const steps = ['first scored', 'partial written', 'rest written', 'renamed'] as const;
  let next = 0;
  run = await sweep([CONFIG, '--watch', '--poll-seconds', '0.2', '--until-idle', '0.1'], {
    onEvent: (events) => {
      const last = events[events.length - 1];
      if (steps[next] === 'first scored' && last.event === 'checkpoint_finished') {
        writeFileSync(join(tmp.dir, SLOW), slow.subarray(0, cut));
        next++;
      } else if (steps[next] === 'partial written' && last.event === 'checkpoint_waiting' && last.path === SLOW) {
        appendFileSync(join(tmp.dir, SLOW), slow.subarray(cut));
        next++;
      } else if (steps[next] === 'rest written' && last.event === 'checkpoint_finished' && last.path === SLOW) {
        const partName = join(CKPTS, 'step01000.safetensors.tmp');
        copyFileSync(join(DEMO, 'step01000.safetensors'), partName);
        renameSync(partName, join(tmp.dir, RENAMED));
        next++;
      }
    },
  });
});

test('stops by itself once idle, having scored each checkpoint exactly once', () => {
  expect(run.code, run.other.join('\n')).toBe(EXIT.ok);
  const finished = eventsOf(run.events, 'checkpoint_finished').map((e) => e.path);
  expect(finished).toEqual(['ckpts/step00000.safetensors', SLOW, RENAMED]);
  expect(eventsOf(run.events, 'checkpoint_failed')).toEqual([]);
  expect(eventsOf(run.events, 'sweep_finished')).toMatchObject([{ status: 'finished', exit_code: 0, counts: { checkpoints: 3, scored: 3, failed: 0, waiting: 0 } }]);
  expect(tableFiles(join(tmp.dir, 'out')).filter((f) => f.startsWith('checkpoints/') && f.endsWith('.arrow'))).toHaveLength(3);
  const m = JSON.parse(readFileSync(join(tmp.dir, 'out', 'manifest.json'), 'utf8')) as Manifest;
  expect(m).toMatchObject({ status: 'finished', exit_code: 0 });
  expect(m.counts).toMatchObject({ checkpoints_planned: 3, scored: 3, failed: 0 });
});

test('the file written in place waits, incomplete, until whole and unchanged for a poll; the renamed one is taken at once', () => {
  const waiting = eventsOf(run.events, 'checkpoint_waiting');
  expect(waiting.filter((e) => e.path === SLOW).map((e) => e.reason)).toEqual(['incomplete', 'changing']);
  expect(waiting.filter((e) => e.path !== SLOW)).toEqual([]);
  // The renamed checkpoint is scored in the first poll that sees it.
  const started = eventsOf(run.events, 'checkpoint_started').filter((e) => e.path === RENAMED);
  expect(started).toMatchObject([{ reason: 'new', prompt_sets: ['rrt'], weights: false }]);
});

test('a broken file that has stopped growing becomes an errors row and the watch exits 3', async () => {
  const dir = join(tmp.dir, 'broken');
  mkdirSync(join(dir, 'ckpts'), { recursive: true });
  copyFileSync(join(DEMO, 'step00000.safetensors'), join(dir, 'ckpts', 'step00000.safetensors'));
  const broken = join(dir, 'ckpts', 'broken.safetensors');
  writeFileSync(broken, 'garbage');
  // Last written an hour ago: not a file still being written.
  const anHourAgo = new Date(Date.now() - 3600_000);
  utimesSync(broken, anHourAgo, anHourAgo);
  const config = join(dir, 'watch.yaml');
  writeFileSync(config, readFileSync(CONFIG, 'utf8'));
  const watched = await sweep([config, '--watch', '--poll-seconds', '0.2', '--until-idle', '0.05']);

  expect(watched.code, watched.other.join('\n')).toBe(EXIT.partial);
  expect(eventsOf(watched.events, 'checkpoint_waiting').map((e) => [e.path, e.reason])).toEqual([['ckpts/broken.safetensors', 'incomplete']]);
  expect(eventsOf(watched.events, 'checkpoint_failed')).toMatchObject([{ path: 'ckpts/broken.safetensors', stage: 'load' }]);
  expect(eventsOf(watched.events, 'checkpoint_failed')[0].message).toContain(broken);
  expect(eventsOf(watched.events, 'sweep_finished')).toMatchObject([{ status: 'finished', exit_code: EXIT.partial, counts: { checkpoints: 2, scored: 1, failed: 1, waiting: 0 } }]);
  expect(tableFiles(join(dir, 'out')).filter((f) => f.startsWith('errors/') && f.endsWith('.arrow'))).toHaveLength(1);
  expect(watched.stdout).toMatch(/^finished: 1\/2 checkpoints scored, 1 failed/m);
});

test('the watch says what it watches, how often, and until when', async () => {
  const dir = join(tmp.dir, 'said');
  mkdirSync(join(dir, 'ckpts'), { recursive: true });
  copyFileSync(join(DEMO, 'step00000.safetensors'), join(dir, 'ckpts', 'step00000.safetensors'));
  const config = join(dir, 'watch.yaml');
  writeFileSync(config, readFileSync(CONFIG, 'utf8'));
  const text = await headsweep(['sweep', config, '--watch', '--poll-seconds', '0.2', '--until-idle', '0.05']);
  expect(text.code, text.stderr).toBe(EXIT.ok);
  expect(text.stderr).toContain(
    'headsweep: watching 1 glob of 1 run (ckpts/*.safetensors) every 0.2 s, until 0.05 min pass without a new checkpoint (Ctrl-C or SIGTERM stops sooner)',
  );
  const json = await sweep([config, '--watch', '--poll-seconds', '0.2']
    , { onEvent: (events) => (events.some((e) => e.event === 'checkpoint_skipped') ? 'SIGINT' : undefined) });
  expect(eventsOf(json.events, 'sweep_started')).toMatchObject([{ watch: true, watching: { runs: 1, globs: ['ckpts/*.safetensors'], poll_seconds: 0.2, until_idle_minutes: null } }]);
});
