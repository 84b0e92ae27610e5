/**
 * A sweep over the folders trainers write, through the real CLI: a Pythia run of `stepN`
 * revision folders (with a tokenizer.json), an HF Trainer output folder, a nanoGPT out
 * folder, TL `*_N.pth` checkpoints, a folder read through a forced family, and one of each
 * kind of broken checkpoint. Steps come from where each trainer records them and name the
 * files; every broken one is an errors row naming the file at fault while the rest are
 * scored (exit 3). Reruns: nothing new is nothing scored; an edited config.json beside
 * unchanged weights is scored again; a file touched with the same bytes is not; another
 * converter version scores again.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import { readState, writeState } from '../pipeline/state.ts';
import { checkpointDigest } from '../src/checkpoint/checkpoint.ts';
import { brokenCheckpoints, copyFolder, editConfig, NANOGPT, NEOX, tlCheckpoints, trainerCheckpoint } from './helpers/layouts.ts';
import { GPT2 } from './helpers/real.ts';
import { tempDir } from './helpers/safetensors.ts';
import { eventsOf, files, sweep, type SweepRun } from './helpers/sweep-run.ts';
import { TEXT, writeTokenizer } from './helpers/tokenizer.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const D = tmp.dir;
for (const step of [1000, 2000]) copyFolder(NEOX, join(D, 'runs', 'pythia', `step${step}`));
const IDS = [1000, 2000].map((step) => writeTokenizer(join(D, 'runs', 'pythia', `step${step}`, 'tokenizer.json'), TEXT))[0];
for (const step of [500, 1000]) trainerCheckpoint(join(D, 'hf', 'out'), step);
// What else a Trainer output folder holds: TensorBoard logs, not matched by checkpoint-*.
mkdirSync(join(D, 'hf', 'out', 'runs'), { recursive: true });
mkdirSync(join(D, 'nanogpt', 'out'), { recursive: true });
writeFileSync(join(D, 'nanogpt', 'out', 'ckpt.pt'), readFileSync(NANOGPT));
tlCheckpoints(join(D, 'tl', 'checkpoints'), [1000, 2048000000]);
editConfig(copyFolder(GPT2, join(D, 'anon', 'gpt2')), ({ model_type: _t, architectures: _a, ...c }) => c);
const BROKEN = brokenCheckpoints(join(D, 'broken'));
copyFolder(GPT2, join(D, 'broken', 'good'));

const CONFIG = tmp.file('sources.yaml', [
  'name: sources',
  'output: out',
  'checkpoints:',
  '  - {run: pythia, paths: ["runs/pythia/step*"]}',
  '  - {run: trainer, paths: ["hf/out/checkpoint-*"]}',
  '  - {run: nanogpt, paths: ["nanogpt/out/ckpt.pt"]}',
  '  - {run: tl, paths: ["tl/checkpoints/*.pth"]}',
  '  - {run: forced, paths: ["anon/gpt2"], family: gpt2}',
  '  - {run: broken, paths: ["broken/*"]}',
  'prompt_sets:',
  '  - {name: rrt, kind: repeated_random, length: 10, repeats: 3, count: 2, seed: 0}',
  'metrics: [prefix_matching, previous_token, copying, mean_loss]',
  'workers: 2',
].join('\n'));
const OUT = join(D, 'out');
const GOOD = 9;

type Row = Record<string, unknown>;
function rows(table: string, run?: string): Row[] {
  return files(OUT).filter((f) => f.startsWith(`${table}/run=${run ?? ''}`) && f.endsWith('.arrow'))
    .flatMap((f) => tableFromIPC(readFileSync(join(OUT, f))).toArray().map((r) => r.toJSON() as Row));
}

let first: SweepRun;
beforeAll(async () => {
  first = await sweep([CONFIG]);
});

describe('the first sweep', () => {
  test('scores every readable checkpoint and exits 3 for the broken ones', () => {
    expect(first.code, first.other.join('\n')).toBe(EXIT.partial);
    expect(eventsOf(first.events, 'checkpoint_finished')).toHaveLength(GOOD);
    expect(eventsOf(first.events, 'sweep_finished')).toMatchObject([{ counts: { checkpoints: GOOD + 5, scored: GOOD, failed: 5 } }]);
  });

  test('steps and tokens come from where each trainer records them', () => {
    const seen = rows('checkpoints').map((r) => [r.run, r.path, r.step, r.tokens_seen]);
    expect(seen.sort((a, b) => String(a[1]).localeCompare(String(b[1])))).toEqual([
      ['forced', 'anon/gpt2', null, null],
      ['broken', 'broken/good', null, null],
      ['trainer', 'hf/out/checkpoint-1000', 1000n, null],
      ['trainer', 'hf/out/checkpoint-500', 500n, null],
      ['nanogpt', 'nanogpt/out/ckpt.pt', 2000n, null],
      ['pythia', 'runs/pythia/step1000', 1000n, null],
      ['pythia', 'runs/pythia/step2000', 2000n, null],
      ['tl', 'tl/checkpoints/model_1000.pth', 1000n, null],
      ['tl', 'tl/checkpoints/model_2048000000.pth', null, 2048000000n],
    ]);
    // The step names the files.
    expect(readdirSync(join(OUT, 'heads', 'run=pythia')).filter((f) => f.endsWith('.arrow')).map((f) => f.slice(0, 14))).toEqual(['step-000001000', 'step-000002000']);
  });

  test('a folder\'s identity is the digest over every file it is read from', () => {
    const row = rows('checkpoints', 'trainer').find((r) => r.path === 'hf/out/checkpoint-500')!;
    expect(row.sha256).toBe(checkpointDigest(join(D, 'hf', 'out', 'checkpoint-500')).sha256);
    const state = readState(OUT, 'trainer', 'hf/out/checkpoint-500')!;
    expect(state.file_stamps!.map((s) => s.name)).toEqual(['config.json', 'model.safetensors', 'trainer_state.json']);
    expect(state.converter).toBe('gpt2@1');
  });

  test('repeated_random draws only the ids of the tokenizer.json beside Pythia\'s weights, with no BOS; GPT-2 gets its BOS', () => {
    const pythia = rows('prompts', 'pythia').map((r) => Array.from(r.tokens as Iterable<number>));
    expect(pythia).toHaveLength(2);
    for (const seq of pythia) {
      expect(seq).toHaveLength(30);
      expect(Math.max(...seq)).toBeLessThan(IDS);
    }
    for (const r of rows('prompts', 'trainer')) expect((r.tokens as { get(i: number): number }).get(0)).toBe(172);
  });

  test('each broken checkpoint is an errors row naming the file at fault and the reason', () => {
    const errors = rows('errors', 'broken');
    expect(errors.map((e) => e.path).sort()).toEqual(Object.keys(BROKEN).map((name) => `broken/${name}`).sort());
    for (const [name, { at, reason }] of Object.entries(BROKEN)) {
      const e = errors.find((r) => r.path === `broken/${name}`)!;
      expect(e.stage, name).toBe('load');
      expect((e.message as string).startsWith(`${at}: `), `${name}: ${String(e.message)}`).toBe(true);
      expect(e.message, name).toMatch(reason);
    }
  });
});

describe('reruns', () => {
  test('nothing new: nothing scored, the broken ones tried again', async () => {
    const run = await sweep([CONFIG]);
    expect(run.code, run.other.join('\n')).toBe(EXIT.partial);
    expect(eventsOf(run.events, 'checkpoint_started')).toEqual([]);
    expect(eventsOf(run.events, 'checkpoint_skipped')).toHaveLength(GOOD);
    expect(eventsOf(run.events, 'checkpoint_failed')).toHaveLength(5);
  });

  test('an edited config.json beside unchanged weights is scored again; a touched file with the same bytes is not', async () => {
    const folder = join(D, 'hf', 'out', 'checkpoint-500');
    const before = readState(OUT, 'trainer', 'hf/out/checkpoint-500')!;
    const untouched = readState(OUT, 'pythia', 'runs/pythia/step1000')!;
    const heads = rows('heads', 'trainer').filter((r) => r.checkpoint === 'hf/out/checkpoint-500');
    editConfig(folder, (c) => ({ ...c, layer_norm_epsilon: 0.1 }));
    const later = new Date(Date.now() + 5000);
    utimesSync(join(D, 'runs', 'pythia', 'step1000', 'pytorch_model.bin'), later, later);

    const run = await sweep([CONFIG]);
    expect(run.code, run.other.join('\n')).toBe(EXIT.partial);
    expect(eventsOf(run.events, 'checkpoint_started').map((e) => [e.path, e.reason])).toEqual([['hf/out/checkpoint-500', 'changed']]);
    const after = readState(OUT, 'trainer', 'hf/out/checkpoint-500')!;
    expect(after.sha256).not.toBe(before.sha256);
    expect(after.sha256).toBe(checkpointDigest(folder).sha256);
    // The old stem's files are gone, the new ones hold other scores.
    for (const f of before.files) expect(files(OUT)).not.toContain(f);
    const now = rows('heads', 'trainer').filter((r) => r.checkpoint === 'hf/out/checkpoint-500');
    expect(now).toHaveLength(heads.length);
    expect(now.map((r) => r.prefix_matching)).not.toEqual(heads.map((r) => r.prefix_matching));
    // The touched weights: skipped, their new mtime recorded.
    const touched = readState(OUT, 'pythia', 'runs/pythia/step1000')!;
    const bin = join(D, 'runs', 'pythia', 'step1000', 'pytorch_model.bin');
    expect(touched.file_stamps!.find((s) => s.name === 'pytorch_model.bin')!.mtime_ns).toBe(statSync(bin, { bigint: true }).mtimeNs.toString());
    expect(touched.file_stamps!.find((s) => s.name === 'pytorch_model.bin')!.mtime_ns).not.toBe(untouched.mtime_ns);
  });

  test('a result computed through another version of the family\'s conversion is scored again', async () => {
    const state = readState(OUT, 'nanogpt', 'nanogpt/out/ckpt.pt')!;
    await writeState(OUT, { ...state, converter: 'nanogpt@0' });
    const run = await sweep([CONFIG]);
    expect(eventsOf(run.events, 'checkpoint_started').map((e) => [e.path, e.reason])).toEqual([['nanogpt/out/ckpt.pt', 'settings']]);
    expect(readState(OUT, 'nanogpt', 'nanogpt/out/ckpt.pt')!.converter).toBe('nanogpt@1');
  });
});
