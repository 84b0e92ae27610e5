/**
 * The five real-format models of test/fixtures/real (cases.json), each as its trainer wrote
 * it: loaded through its family, every TL tensor must equal the same tensor of
 * `NAME.tl.safetensors` bit for bit (the TL files were written from the same weights by
 * TransformerLens-style conversions in Python; for the BF16 Llama they hold the decoded
 * values), and the resolved config must equal the TL file's.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { checkpointDigest, closeCheckpoint, inspectCheckpoint, loadCheckpoint, weightBlock, weightOf } from '../src/checkpoint/checkpoint.ts';
import { expectedTensors } from '../src/model/config.ts';
import { FIXTURES_DIR } from './helpers/fixtures.ts';

const REAL = join(FIXTURES_DIR, 'real');

interface Case {
  name: string;
  family: string;
  path: string;
  tl: string;
}

const CASES = JSON.parse(readFileSync(join(REAL, 'cases.json'), 'utf8')) as Case[];

/** What each case is, written from its files (config.json, the pickle) and CHECKPOINT-FORMATS.md, not from the loader. */
const EXPECTED: Record<string, { family: string; container: string; files: string[]; bos: number | null; step: number | null; zeros: number }> = {
  // bos: GPT-2 prepends its bos_token_id (config.json: 172); NeoX and nanoGPT prepend none; Llama its bos_token_id 1.
  // zeros: biases the source has none of: b_U for all but TL; Llama also b_Q, _b_K, _b_V, b_O, b_in, b_out in each layer.
  'gpt2-small-hf': { family: 'gpt2', container: 'safetensors', files: ['model.safetensors', 'config.json'], bos: 172, step: null, zeros: 1 },
  'nanogpt-ckpt': { family: 'nanogpt', container: 'torch', files: ['ckpt-2000.pt'], bos: null, step: 2000, zeros: 1 },
  'pythia-like-neox': { family: 'neox', container: 'torch', files: ['pytorch_model.bin', 'config.json'], bos: null, step: null, zeros: 1 },
  'llama-gqa-bf16': { family: 'llama', container: 'safetensors', files: ['model.safetensors', 'config.json'], bos: 1, step: null, zeros: 2 * 6 + 1 },
  'tl-gelu-2l-pth': { family: 'tl', container: 'torch', files: ['model_final.pth', 'config.json'], bos: null, step: null, zeros: 0 },
};

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

describe.each(CASES)('$name ($family)', (c) => {
  const expected = EXPECTED[c.name];

  test('every TL tensor equals the TL file\'s, bit for bit, and the resolved config equals its config', () => {
    const ck = loadCheckpoint(join(REAL, c.path));
    const tl = loadCheckpoint(join(REAL, c.tl));
    expect(ck.source.family).toBe(expected.family);
    expect(ck.source.container).toBe(expected.container);
    // The TL files' headers carry no bos_token_id: BOS is the family's (checked below).
    expect({ ...ck.config, bos_token_id: null }).toEqual({ ...tl.config, bos_token_id: null });
    expect(ck.config.bos_token_id).toBe(expected.bos);
    expect([...ck.weights.keys()]).toEqual([...expectedTensors(ck.config).keys()]);
    for (const [key, want] of tl.weights) {
      const got = ck.weights.get(key)!;
      expect(got.shape, key).toEqual(want.shape);
      expect(bits(got.data), key).toEqual(bits(want.data));
    }
    expect(ck.source.zeros.length).toBe(expected.zeros);
  });

  test('files, step and identity: every file read is listed and covered', () => {
    const ck = loadCheckpoint(join(REAL, c.path));
    expect(ck.source.files.map((f) => f.name)).toEqual(expected.files);
    expect(ck.step).toBe(expected.step);
    // Files read whole (config.json, safetensors weights) have their sha256 as sha256sum prints it;
    // torch archives are hashed over the ranges read, so only the manifest below covers them.
    const whole = ck.source.files.filter((x) => x.whole);
    if (expected.container === 'safetensors') expect(whole.map((x) => x.role)).toContain('weights');
    for (const f of whole) expect(f.sha256, f.name).toBe(sha256(f.path));
    const lines = [...ck.source.files].sort((a, b) => (a.name < b.name ? -1 : 1)).map((f) => `${f.sha256}  ${f.name}\n`);
    expect(ck.sha256).toBe(createHash('sha256').update(`headsweep-checkpoint-v1\n${lines.join('')}`).digest('hex'));
    // Loading again, or only hashing, gives the same identity; the TL file, read whole and alone, keeps its own sha256.
    expect(loadCheckpoint(join(REAL, c.path)).sha256).toBe(ck.sha256);
    expect(checkpointDigest(join(REAL, c.path)).sha256).toBe(ck.sha256);
    expect(checkpointDigest(join(REAL, c.tl)).sha256).toBe(sha256(join(REAL, c.tl)));
    expect(loadCheckpoint(join(REAL, c.tl)).sha256).toBe(sha256(join(REAL, c.tl)));
  });

  test('W_E and W_U left in the file read back in blocks equal to the loaded ones', () => {
    const whole = loadCheckpoint(join(REAL, c.path));
    const ck = loadCheckpoint(join(REAL, c.path), { leaveInFile: ['embed.W_E', 'unembed.W_U'] });
    try {
      expect(ck.weights.has('unembed.W_U')).toBe(false);
      expect(ck.sha256).toBe(whole.sha256);
      for (const key of ['embed.W_E', 'unembed.W_U']) {
        const t = whole.weights.get(key)!;
        const [rows, cols] = t.shape;
        expect(bits(weightOf(ck, key).data), key).toEqual(bits(t.data));
        // A column slice and a row slice, as copying and the embedding lookup read them.
        const c0 = Math.floor(cols / 3);
        const n = Math.min(17, cols - c0);
        expect(bits(weightBlock(ck, key, 0, rows, c0, n)), `${key} columns`).toEqual(bits(weightBlock(whole, key, 0, rows, c0, n)));
        expect(bits(weightBlock(ck, key, 5, 3, 0, cols)), `${key} rows`).toEqual(bits(weightBlock(whole, key, 5, 3, 0, cols)));
      }
    } finally {
      closeCheckpoint(ck);
    }
  });

  test('inspect names the same family and tensors without reading weights', () => {
    const info = inspectCheckpoint(join(REAL, c.path));
    expect(info.family).toBe(expected.family);
    expect(info.files.filter((f) => f.role === 'weights').every((f) => f.sha256 === null)).toBe(true);
    const read = new Set(info.tensors.flatMap((t) => t.tl));
    for (const key of expectedTensors(info.config).keys()) expect(read.has(key) || info.zeros.includes(key), key).toBe(true);
  });
});

describe('the BF16 Llama', () => {
  test('holds the decoded BF16 values: every float32 has its low 16 bits zero', () => {
    const ck = loadCheckpoint(join(REAL, 'llama-gqa-bf16'));
    const dtypes = new Set(ck.source.tensors.map((t) => t.dtype));
    expect(dtypes).toEqual(new Set(['BF16']));
    for (const [key, t] of ck.weights) expect(bits(t.data).every((b) => (b & 0xffff) === 0), key).toBe(true);
  });
});
