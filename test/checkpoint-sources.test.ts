/**
 * Checkpoint sources: model folders and files, sharded safetensors, where the step comes
 * from (CHECKPOINT-FORMATS.md §8), forcing a family, the tokenizer beside the weights, the
 * identity over every file read, and refusing a model too large for the backend.
 */
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, cpSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { inspectCheckpoint, loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { backendFit } from '../src/checkpoint/memory.ts';
import { HeadsweepError } from '../src/errors.ts';
import { modelConfig } from '../src/model/config.ts';
import { GPT2, REAL, writeShardedGpt2 } from './helpers/real.ts';
import { assemble, tempDir } from './helpers/safetensors.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());


function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('sharded safetensors', () => {
  test('the shards and their index load as the single file does, and the identity covers all of them', () => {
    const dir = join(tmp.dir, 'sharded');
    mkdirSync(dir);
    writeShardedGpt2(dir);
    const ck = loadCheckpoint(dir);
    const reference = loadCheckpoint(GPT2);
    expect(ck.source.container).toBe('sharded-safetensors');
    for (const [key, t] of reference.weights) expect(Array.from(ck.weights.get(key)!.data), key).toEqual(Array.from(t.data));
    const names = ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'];
    const lines = names.map((n) => `${sha256(readFileSync(join(dir, n)))}  ${n}\n`).join('');
    expect(ck.sha256).toBe(sha256(`headsweep-checkpoint-v1\n${lines}`));
    // The index file given directly is the same checkpoint.
    expect(loadCheckpoint(join(dir, 'model.safetensors.index.json')).sha256).toBe(ck.sha256);
  });
});

describe('model folders', () => {
  test('a torch archive under a name without a torch extension is still read as one', () => {
    const dir = join(tmp.dir, 'renamed');
    cpSync(join(REAL, 'tl-gelu-2l-pth'), dir, { recursive: true });
    copyFileSync(join(dir, 'model_final.pth'), join(dir, 'weights.checkpoint'));
    const ck = loadCheckpoint(join(dir, 'weights.checkpoint'));
    expect(ck.source.container).toBe('torch');
    expect(ck.weights.get('embed.W_E')!.data).toEqual(loadCheckpoint(join(dir, 'model_final.pth')).weights.get('embed.W_E')!.data);
  });

  test('the same folder given as a folder and as its weights file is one checkpoint', () => {
    expect(loadCheckpoint(join(GPT2, 'model.safetensors')).sha256).toBe(loadCheckpoint(GPT2).sha256);
  });

  test('editing config.json beside unchanged weights changes the identity', () => {
    const dir = join(tmp.dir, 'edited');
    cpSync(GPT2, dir, { recursive: true });
    const before = loadCheckpoint(dir);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, note: 'edited' }));
    const after = loadCheckpoint(dir);
    expect(after.source.files[0].sha256).toBe(before.source.files[0].sha256);
    expect(after.sha256).not.toBe(before.sha256);
  });

  test('a config.json without model_type reads as GPT-2 when the family is forced', () => {
    const dir = join(tmp.dir, 'forced');
    cpSync(GPT2, dir, { recursive: true });
    const { model_type: _t, architectures: _a, ...config } = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    // Unforced, a config.json without model_type is read as TL-spelled, which this is not.
    expect(() => loadCheckpoint(dir)).toThrow(/config\.json: invalid config: n_layers: /);
    const ck = loadCheckpoint(dir, { family: 'gpt2' });
    expect(ck.source.family).toBe('gpt2');
    const reference = loadCheckpoint(GPT2);
    for (const [key, t] of reference.weights) expect(Array.from(ck.weights.get(key)!.data), key).toEqual(Array.from(t.data));
  });

  test('a tokenizer.json beside the weights: how many ids it defines', () => {
    const dir = join(tmp.dir, 'tokenizer');
    cpSync(GPT2, dir, { recursive: true });
    // 3 vocabulary ids and an added token at 172: 173 ids, as many as embedding rows here.
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE', vocab: { a: 0, b: 1, c: 2 } }, added_tokens: [{ id: 172, content: '<|endoftext|>' }] }));
    expect(inspectCheckpoint(dir).tokenizer).toEqual({ file: join(dir, 'tokenizer.json'), vocabSize: 173 });
    expect(inspectCheckpoint(GPT2).tokenizer).toBeNull();
  });
});

describe('where the step comes from', () => {
  function hfFolder(...path: string[]): string {
    const dir = join(tmp.dir, ...path);
    mkdirSync(join(dir, '..'), { recursive: true });
    cpSync(GPT2, dir, { recursive: true });
    return dir;
  }

  test('an HF Trainer checkpoint-N folder: its name, or global_step in trainer_state.json when there is one', () => {
    const dir = hfFolder('out', 'checkpoint-500');
    expect(inspectCheckpoint(dir)).toMatchObject({ step: 500, tokensSeen: null, stepSource: 'folder name checkpoint-500' });
    writeFileSync(join(dir, 'trainer_state.json'), JSON.stringify({ global_step: 480, log_history: [] }));
    const ck = loadCheckpoint(dir);
    expect(ck.step).toBe(480);
    expect(ck.source.stepSource).toBe('trainer_state.json global_step');
    // trainer_state.json was read, so the identity covers it.
    expect(ck.source.files.map((f) => [f.name, f.role])).toContainEqual(['trainer_state.json', 'trainer_state']);
  });

  test('a Pythia stepN revision folder', () => {
    expect(inspectCheckpoint(hfFolder('pythia', 'step143000'))).toMatchObject({ step: 143000, stepSource: 'folder name step143000' });
  });

  test('TL checkpoints *_N.pth: N is the step, or tokens seen when above 1e9', () => {
    const dir = join(tmp.dir, 'tl-checkpoints');
    mkdirSync(dir);
    copyFileSync(join(REAL, 'tl-gelu-2l-pth', 'config.json'), join(dir, 'config.json'));
    for (const name of ['model_1500.pth', 'model_2048000000.pth']) copyFileSync(join(REAL, 'tl-gelu-2l-pth', 'model_final.pth'), join(dir, name));
    expect(inspectCheckpoint(join(dir, 'model_1500.pth'))).toMatchObject({ step: 1500, tokensSeen: null, stepSource: 'file name model_1500.pth' });
    expect(inspectCheckpoint(join(dir, 'model_2048000000.pth'))).toMatchObject({ step: null, tokensSeen: 2048000000 });
  });
});

describe('a model too large for the backend', () => {
  test('backendFit compares the float32 weights with the wasm heap', () => {
    const small = modelConfig({ n_layers: 2, n_heads: 4, d_model: 64, d_head: 16, d_vocab: 100, n_ctx: 64 });
    expect(backendFit(small, 'wasm')).toMatchObject({ fits: true, limit: 4 * 2 ** 30 });
    // A Llama-2-7B-sized model: 6.7e9 parameters, 25 GiB as float32.
    const big = modelConfig({
      n_layers: 32, n_heads: 32, d_model: 4096, d_head: 128, d_vocab: 32000, n_ctx: 4096, attn_only: false, d_mlp: 11008,
      act_fn: 'silu', gated_mlp: true, normalization_type: 'RMS', positional_embedding_type: 'rotary',
    });
    const fit = backendFit(big, 'wasm');
    expect(fit.fits).toBe(false);
    expect(fit.bytes).toBeGreaterThan(6.7e9 * 4);
    expect(backendFit(big, 'tensorflow')).toMatchObject({ fits: true, limit: null });
    expect(backendFit(big, 'cpu').fits).toBe(true);
  });

  test('is refused before any weight is read, with its size, the limit and the way out', () => {
    // A sparse 8 GiB file: W_E and W_U of 2^20 × 1024, 2^31 parameters and b_U. Reading it would take 8 GiB.
    const V = 1 << 20;
    const D = 1024;
    const config = { n_layers: 0, n_heads: 1, d_model: D, d_head: D, d_vocab: V, n_ctx: 4, normalization_type: null };
    const big = V * D * 4;
    const header = {
      __metadata__: { config: JSON.stringify(config) },
      'embed.W_E': { dtype: 'F32', shape: [V, D], data_offsets: [0, big] },
      'pos_embed.W_pos': { dtype: 'F32', shape: [4, D], data_offsets: [big, big + 16 * D] },
      'unembed.W_U': { dtype: 'F32', shape: [D, V], data_offsets: [big + 16 * D, 2 * big + 16 * D] },
    };
    const bytes = assemble({ header, data: new Uint8Array(0) });
    const path = tmp.file('huge.safetensors');
    const fd = openSync(path, 'w');
    writeSync(fd, bytes);
    ftruncateSync(fd, bytes.byteLength + 2 * big + 16 * D);
    closeSync(fd);
    let caught: unknown;
    try {
      loadCheckpoint(path, { backend: 'wasm' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(HeadsweepError);
    expect((caught as HeadsweepError).stage).toBe('load');
    expect((caught as HeadsweepError).message).toBe(
      `${path}: the model's float32 weights take 8.00 GiB (2148536320 parameters), more than the 4.00 GiB the wasm backend can hold; ` +
        'score it with backend: tensorflow (@tensorflow/tfjs-node), which has no such limit',
    );
  });
});
