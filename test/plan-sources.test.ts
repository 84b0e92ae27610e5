/**
 * Planning over checkpoint folders and files: what a glob matches (folders too, each
 * checkpoint once under `**`), which step wins (recorded in the checkpoint, then
 * `step_regex`, then the folder or file name), the `family:` key, how `validate` shows
 * each checkpoint, and a model too large for the backend refused in the plan, before
 * anything is loaded, with its size, the limit and the way out.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadConfig, parseConfig } from '../pipeline/config.ts';
import type { SweepEvent } from '../pipeline/events.ts';
import { buildPlan, describePlan, type PlannedCheckpoint } from '../pipeline/plan.ts';
import { runSweep } from '../pipeline/sweep.ts';
import { HeadsweepError } from '../src/errors.ts';
import { copyFolder, NEOX, trainerCheckpoint } from './helpers/layouts.ts';
import { GPT2 } from './helpers/real.ts';
import { assemble, tempDir } from './helpers/safetensors.ts';
import { TEXT, writeTokenizer } from './helpers/tokenizer.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** A config over `checkpoints` (YAML lines of the list) with one small prompt set. */
function config(name: string, checkpoints: string[], extra: string[] = []): string {
  return tmp.file(`${name}.yaml`, [
    `name: ${name}`,
    `output: out-${name}`,
    'checkpoints:',
    ...checkpoints.map((c) => `  - ${c}`),
    'prompt_sets:',
    '  - {name: rrt, kind: repeated_random, length: 5, repeats: 2, count: 1, seed: 0}',
    ...extra,
  ].join('\n'));
}

const planned = async (file: string): Promise<PlannedCheckpoint[]> => (await buildPlan(loadConfig(file))).runs.flatMap((r) => r.checkpoints);

describe('what globs match', () => {
  for (const step of [1000, 2000]) {
    const dir = copyFolder(NEOX, join(tmp.dir, 'runs', 'pythia', `step${step}`));
    writeTokenizer(join(dir, 'tokenizer.json'), TEXT);
  }

  test('a folder glob matches model folders, read through their family', async () => {
    const [a, b] = await planned(config('folders', ['{run: pythia, paths: ["runs/pythia/step*"]}']));
    expect([a.path, a.kind, a.step, a.source, a.problem]).toEqual(['runs/pythia/step1000', 'folder', 1000, { family: 'neox', container: 'torch', converter: 'neox@1' }, null]);
    expect(a.files.map((f) => f.name)).toEqual(['pytorch_model.bin', 'config.json']);
    expect(a.tokenizerIds).toBeGreaterThan(0);
    expect(b.path).toBe('runs/pythia/step2000');
  });

  test('under **, each checkpoint once: not the files inside a model folder, not the folders that only hold them', async () => {
    const all = await planned(config('globstar', ['{run: pythia, paths: ["runs/**"]}']));
    expect(all.map((c) => [c.path, c.problem])).toEqual([['runs/pythia/step1000', null], ['runs/pythia/step2000', null]]);
  });

  test('validate shows each checkpoint\'s family and container', async () => {
    const text = describePlan(await buildPlan(loadConfig(config('shown', ['{run: pythia, paths: ["runs/pythia/step*"]}']))));
    expect(text).toMatch(/step 1000 +runs\/pythia\/step1000 {2}neox, torch; ~[\d.]+ MiB peak/);
  });
});

describe('which step wins', () => {
  trainerCheckpoint(join(tmp.dir, 'hf'), 500);
  copyFolder(GPT2, join(tmp.dir, 'epochs', 'epoch-3', 'step1000'));

  test('step_regex over the step a folder name implies', async () => {
    expect((await planned(config('by-name', ['{run: r, paths: ["epochs/*/step*"]}'])))[0].step).toBe(1000);
    expect((await planned(config('by-regex', ['{run: r, paths: ["epochs/*/step*"], step_regex: "epoch-(\\\\d+)"}'])))[0].step).toBe(3);
  });

  test('a step recorded inside the checkpoint (trainer_state.json) over step_regex', async () => {
    expect((await planned(config('recorded', ['{run: r, paths: ["hf/checkpoint-*"], step_regex: "checkpoint-(\\\\d)"}'])))[0].step).toBe(500);
  });
});

describe('the family key', () => {
  test('forces a family; a name headsweep does not know is a config error naming the choices', () => {
    const ok = parseConfig('name: x\noutput: o\ncheckpoints:\n  - {run: r, paths: [a], family: neox}\nprompt_sets:\n  - {name: t, kind: tokens, path: t.jsonl}\n', 'ok.yaml');
    expect(ok.checkpoints[0].family).toBe('neox');
    let caught: unknown;
    try {
      parseConfig('name: x\noutput: o\ncheckpoints:\n  - {run: r, paths: [a], family: bert}\nprompt_sets:\n  - {name: t, kind: tokens, path: t.jsonl}\n', 'bad.yaml');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(HeadsweepError);
    expect((caught as Error).message).toMatch(/bad\.yaml → at checkpoints\[0\]\.family: .*"tl".*"gpt2".*"neox".*"llama".*"nanogpt".* \(line 4\)/);
  });
});

describe('a model too large for the backend', () => {
  // A sparse 8 GiB file: W_E and W_U of 2^20 × 1024, as the library's own test builds it.
  const V = 1 << 20;
  const D = 1024;
  const big = V * D * 4;
  const header = {
    __metadata__: { config: JSON.stringify({ n_layers: 0, n_heads: 1, d_model: D, d_head: D, d_vocab: V, n_ctx: 16, normalization_type: null }) },
    'embed.W_E': { dtype: 'F32', shape: [V, D], data_offsets: [0, big] },
    'pos_embed.W_pos': { dtype: 'F32', shape: [16, D], data_offsets: [big, big + 64 * D] },
    'unembed.W_U': { dtype: 'F32', shape: [D, V], data_offsets: [big + 64 * D, 2 * big + 64 * D] },
  };
  mkdirSync(join(tmp.dir, 'huge'));
  const path = tmp.file('huge/huge.safetensors');
  const bytes = assemble({ header, data: new Uint8Array(0) });
  const fd = openSync(path, 'w');
  writeSync(fd, bytes);
  ftruncateSync(fd, bytes.byteLength + 2 * big + 64 * D);
  closeSync(fd);
  // W_E, W_pos, W_U and the b_U the loader fills with zeros.
  const parameters = 2 * V * D + 16 * D + V;
  const message = `${path}: the model's float32 weights take 8.00 GiB (${parameters} parameters), more than the 4.00 GiB the wasm backend can hold; ` +
    'score it with backend: tensorflow (@tensorflow/tfjs-node), which has no such limit';

  test('is refused in the plan with its size, the limit and the way out', async () => {
    const plan = await buildPlan(loadConfig(config('huge', ['{run: huge, paths: ["huge/*.safetensors"]}'], ['backend: wasm'])));
    const [ck] = plan.runs[0].checkpoints;
    expect(ck.problem).toEqual({ stage: 'load', message });
    expect(describePlan(plan)).toContain(`huge/huge.safetensors  UNREADABLE (load): ${message}`);
    // backend auto: the plan says which backend that is here (no @tensorflow/tfjs-node installed).
    const auto = await buildPlan(loadConfig(config('huge-auto', ['{run: huge, paths: ["huge/*.safetensors"]}'])));
    expect(auto.runs[0].checkpoints[0].problem!.message).toBe(`${message} (backend auto runs wasm here: @tensorflow/tfjs-node is not installed)`);
  });

  test('a sweep records it in errors without loading it', async () => {
    const events: SweepEvent[] = [];
    const plan = await buildPlan(loadConfig(config('huge-sweep', ['{run: huge, paths: ["huge/*.safetensors"]}'], ['backend: wasm', 'workers: 1'])));
    const result = await runSweep(plan, { log: (e) => events.push(e) });
    expect(result.exitCode).toBe(3);
    expect(result.errors).toEqual([{ run: 'huge', path: 'huge/huge.safetensors', stage: 'load', message }]);
    expect(events.filter((e) => e.event === 'checkpoint_started')).toEqual([]);
  });
});
