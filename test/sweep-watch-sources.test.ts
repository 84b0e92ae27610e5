/**
 * `headsweep sweep --watch` over checkpoints that are more than one file, as trainers write
 * them: a sharded HF folder written one file at a time (config.json, then each shard, the
 * index last) is scored once, when whole; a nanoGPT ckpt.pt written in two parts is read
 * only once its zip directory is there; a config.json edited beside unchanged weights is
 * scored again; and a folder that stopped changing long ago and still cannot be read is an
 * errors row, once, never an endless wait.
 */
import { appendFileSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import { readState } from '../pipeline/state.ts';
import { checkpointDigest } from '../src/checkpoint/checkpoint.ts';
import { copyFolder, editConfig, NANOGPT } from './helpers/layouts.ts';
import { GPT2, writeShardedGpt2 } from './helpers/real.ts';
import { tempDir } from './helpers/safetensors.ts';
import { eventsOf, sweep, type Event, type SweepRun } from './helpers/sweep-run.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const D = tmp.dir;
// Present when the watch starts, written long ago (timestamps kept): taken at once.
copyFolder(GPT2, join(D, 'ckpts', 'step0'));
// A folder whose config.json is not JSON and that nothing has written to for an hour.
const STALE = copyFolder(GPT2, join(D, 'ckpts', 'step200'));
writeFileSync(join(STALE, 'config.json'), '{"model_type": ');
const anHourAgo = new Date(Date.now() - 3600_000);
for (const f of ['config.json', 'model.safetensors', '.']) utimesSync(join(STALE, f), anHourAgo, anHourAgo);
mkdirSync(join(D, 'nano'));

const CONFIG = tmp.file('watch.yaml', [
  'name: watch-sources',
  'output: out',
  'checkpoints:',
  '  - {run: gpt2, paths: ["ckpts/step*"]}',
  '  - {run: nano, paths: ["nano/*.pt"]}',
  'prompt_sets:',
  '  - {name: rrt, kind: repeated_random, length: 10, repeats: 3, count: 2, seed: 0}',
  'metrics: [prefix_matching, previous_token]',
  'workers: 1',
].join('\n'));

const SHARDED = join(D, 'ckpts', 'step100');
const NANO = join(D, 'nano', 'ckpt.pt');
let run: SweepRun;

/** The sharded folder's files, made aside and then written into `SHARDED` in the order a trainer writes them. */
function shardedFiles(): { name: string; bytes: Buffer }[] {
  const aside = join(D, 'aside');
  mkdirSync(aside);
  writeShardedGpt2(aside);
  const names = ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'];
  const files = names.map((name) => ({ name, bytes: readFileSync(join(aside, name)) }));
  rmSync(aside, { recursive: true });
  return files;
}

beforeAll(async () => {
  const sharded = shardedFiles();
  const nano = readFileSync(NANOGPT);
  const finished = (events: readonly Event[], path: string) => eventsOf(events, 'checkpoint_finished').filter((e) => e.path === path).length;
  let next = 0;
  // Each step reacts to an event of the watcher; the pauses only give it polls to look in between.
  const steps: ((events: readonly Event[], last: Event) => Promise<boolean>)[] = [
    async (events) => {
      if (finished(events, 'ckpts/step0') !== 1) return false;
      mkdirSync(SHARDED);
      writeFileSync(join(SHARDED, sharded[0].name), sharded[0].bytes);
      return true;
    },
    async (_events, last) => {
      if (!(last.event === 'checkpoint_waiting' && last.path === 'ckpts/step100' && last.reason === 'incomplete')) return false;
      for (const f of sharded.slice(1)) {
        await delay(600);
        writeFileSync(join(SHARDED, f.name), f.bytes);
      }
      return true;
    },
    async (events) => {
      if (finished(events, 'ckpts/step100') !== 1) return false;
      writeFileSync(NANO, nano.subarray(0, nano.length - 1000));
      return true;
    },
    async (_events, last) => {
      if (!(last.event === 'checkpoint_waiting' && last.path === 'nano/ckpt.pt')) return false;
      appendFileSync(NANO, nano.subarray(nano.length - 1000));
      return true;
    },
    async (events) => {
      if (finished(events, 'nano/ckpt.pt') !== 1) return false;
      editConfig(join(D, 'ckpts', 'step0'), (c) => ({ ...c, layer_norm_epsilon: 0.1 }));
      return true;
    },
  ];
  run = await sweep([CONFIG, '--watch', '--poll-seconds', '0.2', '--until-idle', '0.1'], {
    onEvent: async (events) => {
      if (next < steps.length && await steps[next](events, events[events.length - 1])) next++;
    },
  });
  expect(next, 'every step of the scenario happened').toBe(steps.length);
});

test('each checkpoint is scored once when whole, the edited one once more; the stale broken folder fails once', () => {
  expect(run.code, run.other.join('\n')).toBe(EXIT.partial);
  expect(eventsOf(run.events, 'checkpoint_started').map((e) => [e.path, e.reason])).toEqual([
    ['ckpts/step0', 'new'],
    ['ckpts/step100', 'new'],
    ['nano/ckpt.pt', 'new'],
    ['ckpts/step0', 'changed'],
  ]);
  expect(eventsOf(run.events, 'checkpoint_finished')).toHaveLength(4);
  expect(eventsOf(run.events, 'checkpoint_failed').map((e) => [e.path, e.stage])).toEqual([['ckpts/step200', 'load']]);
  expect(eventsOf(run.events, 'checkpoint_failed')[0].message).toMatch(new RegExp(`^${join(STALE, 'config.json')}: is not valid JSON`));
});

test('the sharded folder waits, incomplete, until its index names shards that are all there, and is read as all of them', () => {
  const waiting = eventsOf(run.events, 'checkpoint_waiting').filter((e) => e.path === 'ckpts/step100').map((e) => e.reason);
  expect(waiting).toEqual(['incomplete', 'changing']);
  const state = readState(join(D, 'out'), 'gpt2', 'ckpts/step100')!;
  expect(state.sha256).toBe(checkpointDigest(SHARDED).sha256);
  expect(state.file_stamps!.map((s) => s.name)).toEqual([
    'config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json',
  ]);
});

test('the torch zip waits until its central directory is written; the folder present at the start is taken at once', () => {
  expect(eventsOf(run.events, 'checkpoint_waiting').filter((e) => e.path === 'nano/ckpt.pt').map((e) => e.reason)).toEqual(['incomplete', 'changing']);
  expect(eventsOf(run.events, 'checkpoint_waiting').filter((e) => e.path === 'ckpts/step0').map((e) => e.reason)).toEqual(['changing']);
  expect(readState(join(D, 'out'), 'nano', 'nano/ckpt.pt')!.sha256).toBe(checkpointDigest(NANO).sha256);
});
