/**
 * The checkpoint reader and writer on valid input: round trips, F16/BF16 decoding
 * against hand-computed bit patterns, the config.json fallback, TL buffers, and the
 * golden fixtures. Malformed files are in checkpoint-malformed.test.ts.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { closeCheckpoint, inspectCheckpoint, loadCheckpoint, weightBlock, weightOf } from '../src/checkpoint/checkpoint.ts';
import { expectedShapes, parameterCount, parseModelConfig, type ModelConfig } from '../src/model/config.ts';
import { readTensor, withSafetensors, writeSafetensors, type TensorToWrite, type WriteDType } from '../src/checkpoint/containers/safetensors.ts';
import { bf16ToF32, f16ToF32, f32ToBF16, f32ToF16 } from '../src/checkpoint/dtypes.ts';
import { ReadBuffer } from '../src/checkpoint/read.ts';
import { HeadsweepError } from '../src/errors.ts';
import { TINY_CONFIG, TINY_SHAPES, assemble, buildParts, tempDir, tinyTensors } from './helpers/safetensors.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const TINY_METADATA = { config: JSON.stringify(TINY_CONFIG), step: '1000', tokens_seen: '2048000' };

/** A file holding one 1-D tensor `x` of raw 16-bit patterns. */
function halfFile(name: string, dtype: 'F16' | 'BF16', bits: number[]): string {
  const data = new Uint8Array(Uint16Array.from(bits).buffer);
  const header = { x: { dtype, shape: [bits.length], data_offsets: [0, data.byteLength] } };
  return tmp.file(name, assemble({ header, data }));
}

function readX(path: string): Float32Array {
  return withSafetensors(path, (fd, header) => readTensor(fd, path, header, 'x')).data;
}

/** test.each rows with the bit pattern in hex, for readable test names. */
function hexRows(rows: [number, number][]): { hex: string; bits: number; value: number }[] {
  return rows.map(([bits, value]) => ({ hex: `0x${bits.toString(16).padStart(4, '0')}`, bits, value }));
}

function rawHeader(path: string): { length: number; text: string } {
  const bytes = readFileSync(path);
  const length = Number(bytes.readBigUInt64LE(0));
  return { length, text: bytes.subarray(8, 8 + length).toString('utf8') };
}

describe('writeSafetensors → loadCheckpoint round trip', () => {
  test('gives identical float32 values, metadata, step and tokens seen', () => {
    const path = tmp.file('round-trip.safetensors');
    const tensors = tinyTensors();
    writeSafetensors(path, tensors, TINY_METADATA);
    const ckpt = loadCheckpoint(path);
    expect(ckpt.path).toBe(path);
    expect(ckpt.metadata).toEqual(TINY_METADATA);
    expect(ckpt.step).toBe(1000);
    expect(ckpt.tokensSeen).toBe(2048000);
    expect(ckpt.config).toEqual({ ...TINY_CONFIG, d_mlp: null, act_fn: null, gated_mlp: false, parallel_attn_mlp: false, rotary_dim: null, rotary_base: 10000, rotary_adjacent_pairs: false, n_key_value_heads: null, scale_attn_by_inverse_layer_idx: false });
    expect([...ckpt.weights.keys()].sort()).toEqual(Object.keys(TINY_SHAPES).sort());
    for (const [name, t] of Object.entries(tensors)) {
      expect(ckpt.weights.get(name)!.shape, name).toEqual(t.shape);
      expect(ckpt.weights.get(name)!.data, name).toEqual(t.data);
    }
  });

  test('each tensor owns its buffer (no view into a whole-file copy)', () => {
    const path = tmp.file('own-buffers.safetensors');
    writeSafetensors(path, tinyTensors(), TINY_METADATA);
    for (const [name, t] of loadCheckpoint(path).weights) {
      expect(t.data.buffer.byteLength, name).toBe(t.data.byteLength);
    }
  });

  test('writes the same bytes as the reference layout: sorted keys, header padded with spaces to 8', () => {
    const path = tmp.file('layout.safetensors');
    writeSafetensors(path, tinyTensors(), TINY_METADATA);
    const expected = assemble(buildParts(tinyTensors(), TINY_METADATA));
    expect(new Uint8Array(readFileSync(path))).toEqual(expected);

    const { length, text } = rawHeader(path);
    expect(length % 8).toBe(0);
    expect(text.trimEnd().endsWith('}')).toBe(true);
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    const keys = Object.keys(JSON.parse(text)).filter((k) => k !== '__metadata__');
    expect(keys).toEqual([...keys].sort());
    expect(JSON.parse(text).__metadata__).toEqual(TINY_METADATA);
  });

  test('F16 and BF16 storage round-trips values they represent exactly', () => {
    // tinyTensors values are k·0.5 + i/8 ≤ 9.875: at most 7 significant bits, exact in both.
    const tensors: Record<string, TensorToWrite> = tinyTensors();
    tensors['embed.W_E'] = { ...tensors['embed.W_E'], dtype: 'F16' };
    tensors['unembed.W_U'] = { ...tensors['unembed.W_U'], dtype: 'BF16' };
    const path = tmp.file('mixed-dtypes.safetensors');
    writeSafetensors(path, tensors, TINY_METADATA);

    const dtypes = Object.fromEntries(inspectCheckpoint(path).tensors.map((t) => [t.name, t.dtype]));
    expect(dtypes['embed.W_E']).toBe('F16');
    expect(dtypes['unembed.W_U']).toBe('BF16');
    expect(dtypes['pos_embed.W_pos']).toBe('F32');
    const weights = loadCheckpoint(path).weights;
    for (const [name, t] of Object.entries(tensors)) expect(weights.get(name)!.data, name).toEqual(t.data);
  });

  test('the temp file is renamed into place and none is left behind', () => {
    const dir = join(tmp.dir, 'clean-write');
    mkdirSync(dir);
    writeSafetensors(join(dir, 'model.safetensors'), tinyTensors(), TINY_METADATA);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  test('a failed rename removes the temp file and throws a write error naming the file', () => {
    // The target is a non-empty folder, so everything succeeds up to the rename.
    const dir = join(tmp.dir, 'rename-fails');
    const target = join(dir, 'model.safetensors');
    mkdirSync(target, { recursive: true });
    writeFileSync(join(target, 'keep'), 'x');
    let caught: unknown;
    try {
      writeSafetensors(target, tinyTensors(), TINY_METADATA);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(HeadsweepError);
    expect((caught as HeadsweepError).message).toMatch(new RegExp(`^${target}: cannot write \\(`));
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  test('a folder that does not exist is a write error naming the file', () => {
    const target = join(tmp.dir, 'nowhere', 'model.safetensors');
    expect(() => writeSafetensors(target, tinyTensors())).toThrow(new RegExp(`^${target}: cannot write \\(.*ENOENT`));
  });

  test('data that does not fill the shape is refused before anything is written', () => {
    const target = tmp.file('short.safetensors');
    const tensors = { x: { shape: [2, 3], data: new Float32Array(5) } };
    expect(() => writeSafetensors(target, tensors)).toThrow(`${target}: tensor 'x' has 5 values but shape [2, 3]`);
    expect(readdirSync(tmp.dir)).not.toContain('short.safetensors');
  });
});

describe('F16 decoding, against hand-computed values', () => {
  test.each(hexRows([
    [0x3c00, 1.0],
    [0xc000, -2.0],
    [0x3555, 0.333251953125], // 1.0101010101b × 2^-2
    [0x7bff, 65504], // largest finite half: (2 - 2^-10) × 2^15
    [0x0400, 2 ** -14], // smallest normal
    [0x0001, 2 ** -24], // smallest subnormal: 1 × 2^-24
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x8001, -(2 ** -24)],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ]))('$hex decodes to $value', ({ bits, value }) => {
    expect(f16ToF32(Uint16Array.of(bits))[0]).toBe(value);
  });

  test('signed zero and NaN', () => {
    const out = f16ToF32(Uint16Array.of(0x0000, 0x8000, 0x7e00, 0x7c01));
    expect(Object.is(out[0], 0)).toBe(true);
    expect(Object.is(out[1], -0)).toBe(true);
    expect(Number.isNaN(out[2]) && Number.isNaN(out[3])).toBe(true);
  });

  test('the same values read from an F16 tensor in a file', () => {
    const path = halfFile('f16.safetensors', 'F16', [0x3c00, 0xc000, 0x0001, 0x03ff, 0x7c00, 0xfc00]);
    expect(Array.from(readX(path))).toEqual([1, -2, 2 ** -24, 1023 * 2 ** -24, Infinity, -Infinity]);
  });
});

describe('BF16 decoding, against hand-computed values', () => {
  test.each(hexRows([
    [0x3f80, 1.0],
    [0xc000, -2.0],
    [0x3eab, 0.333984375], // 1.0101011b × 2^-2
    [0x7f7f, 3.3895313892515355e38], // largest finite: (2 - 2^-7) × 2^127
    [0x0080, 2 ** -126], // smallest normal
    [0x0001, 2 ** -133], // smallest subnormal: 2^-7 × 2^-126
    [0x7f80, Infinity],
    [0xff80, -Infinity],
  ]))('$hex decodes to $value', ({ bits, value }) => {
    expect(bf16ToF32(Uint16Array.of(bits))[0]).toBe(value);
  });

  test('signed zero and NaN', () => {
    const out = bf16ToF32(Uint16Array.of(0x0000, 0x8000, 0x7fc0));
    expect(Object.is(out[0], 0)).toBe(true);
    expect(Object.is(out[1], -0)).toBe(true);
    expect(Number.isNaN(out[2])).toBe(true);
  });

  test('the same values read from a BF16 tensor in a file', () => {
    const path = halfFile('bf16.safetensors', 'BF16', [0x3f80, 0xc000, 0x0001, 0x7f80]);
    expect(Array.from(readX(path))).toEqual([1, -2, 2 ** -133, Infinity]);
  });
});

describe('F16 and BF16 encoding', () => {
  const ALL = Uint16Array.from({ length: 65536 }, (_, i) => i);

  test('every F16 pattern decodes and encodes back to itself (NaN stays NaN)', () => {
    const back = f32ToF16(f16ToF32(ALL));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN) expect((back[h] & 0x7c00) === 0x7c00 && (back[h] & 0x3ff) !== 0).toBe(true);
      else if (back[h] !== h) expect(back[h], `0x${h.toString(16)}`).toBe(h);
    }
  });

  test('every BF16 pattern decodes and encodes back to itself (NaN stays NaN)', () => {
    const back = f32ToBF16(bf16ToF32(ALL));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      if (isNaN) expect((back[h] & 0x7f80) === 0x7f80 && (back[h] & 0x7f) !== 0).toBe(true);
      else if (back[h] !== h) expect(back[h], `0x${h.toString(16)}`).toBe(h);
    }
  });

  test('F16 rounds to nearest, ties to even, overflowing to inf and underflowing to zero', () => {
    const inputs = Float32Array.of(
      1 + 2 ** -11, // halfway between 0x3c00 and 0x3c01 → even 0x3c00
      1 + 3 * 2 ** -11, // halfway between 0x3c01 and 0x3c02 → even 0x3c02
      1 + 2 ** -11 + 2 ** -20, // just above halfway → up
      65519, // below the 65504/65536 midpoint → 65504
      65520, // the midpoint → even, which is 2^16 → inf
      2 ** -25, // halfway between 0 and the smallest subnormal → 0
      1.5 * 2 ** -25, // above halfway → smallest subnormal
      1e-10, // far below → 0
      -1e-10, // far below, negative → -0
    );
    expect(Array.from(f32ToF16(inputs))).toEqual([0x3c00, 0x3c02, 0x3c01, 0x7bff, 0x7c00, 0x0000, 0x0001, 0x0000, 0x8000]);
  });

  test('BF16 rounds to nearest, ties to even', () => {
    const inputs = Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, 3.4028234663852886e38);
    // The largest float32 is above the last BF16's midpoint, so it rounds to inf.
    expect(Array.from(f32ToBF16(inputs))).toEqual([0x3f80, 0x3f82, 0x3f81, 0x7f80]);
  });
});

describe('the config', () => {
  test('falls back to config.json beside the file', () => {
    const dir = join(tmp.dir, 'config-json');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(TINY_CONFIG));
    const path = join(dir, 'step-5.safetensors');
    writeSafetensors(path, tinyTensors(), { step: '5' });
    const ckpt = loadCheckpoint(path);
    expect(ckpt.config).toEqual({ ...TINY_CONFIG, d_mlp: null, act_fn: null, gated_mlp: false, parallel_attn_mlp: false, rotary_dim: null, rotary_base: 10000, rotary_adjacent_pairs: false, n_key_value_heads: null, scale_attn_by_inverse_layer_idx: false });
    expect(ckpt.step).toBe(5);
    expect(ckpt.tokensSeen).toBeNull();
    expect(inspectCheckpoint(path).written.source).toBe(join(dir, 'config.json'));
  });

  test('the header config wins over a config.json beside the file', () => {
    const dir = join(tmp.dir, 'both-configs');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...TINY_CONFIG, n_ctx: 999 }));
    const path = join(dir, 'model.safetensors');
    writeSafetensors(path, tinyTensors(), TINY_METADATA);
    expect(loadCheckpoint(path).config.n_ctx).toBe(3);
    expect(inspectCheckpoint(path).written.source).toBe('__metadata__.config');
  });

  test('a TransformerLens config dump with extra fields and defaults left out', () => {
    const { eps: _eps, positional_embedding_type: _pos, ...required } = TINY_CONFIG;
    const parsed = parseModelConfig({ ...required, act_fn: null, d_mlp: null, model_name: 'custom' });
    expect(parsed.ok).toBe(true);
    const config = (parsed as { config: ModelConfig }).config;
    expect(config.eps).toBe(1e-5);
    expect(config.positional_embedding_type).toBe('standard');
  });

  test('parameterCount of the tiny config, counted by hand', () => {
    // W_E 5·4 + W_pos 3·4 + ln1 2·4 + W_Q/K/V 3·2·4·2 + W_O 2·2·4 + b_Q/K/V 3·2·2 + b_O 4
    // + ln_final 2·4 + W_U 4·5 + b_U 5 = 20 + 12 + 8 + 48 + 16 + 12 + 4 + 8 + 20 + 5 = 153
    expect(parameterCount((parseModelConfig(TINY_CONFIG) as { config: ModelConfig }).config)).toBe(153);
  });
});

describe('TransformerLens buffers', () => {
  test('blocks.0.attn.mask and blocks.0.attn.IGNORE are read past, not loaded', () => {
    const tensors = {
      ...tinyTensors(),
      'blocks.0.attn.mask': { shape: [3, 3], data: Float32Array.of(1, 0, 0, 1, 1, 0, 1, 1, 1) },
      'blocks.0.attn.IGNORE': { shape: [], data: Float32Array.of(-1e5) },
    };
    const path = tmp.file('tl-buffers.safetensors');
    writeSafetensors(path, tensors, TINY_METADATA);
    const ckpt = loadCheckpoint(path);
    expect(ckpt.weights.has('blocks.0.attn.mask')).toBe(false);
    expect(ckpt.weights.has('blocks.0.attn.IGNORE')).toBe(false);
    expect(ckpt.weights.size).toBe(16);
    const listed = inspectCheckpoint(path).tensors.filter((t) => t.ignored).map((t) => t.name).sort();
    expect(listed).toEqual(['blocks.0.attn.IGNORE', 'blocks.0.attn.mask']);
  });

  test('the sha256 computed while loading is the hash of every byte, ignored buffers included', () => {
    const tensors = { ...tinyTensors(), 'blocks.0.attn.IGNORE': { shape: [], data: Float32Array.of(-1e5) } };
    const path = tmp.file('tl-hash.safetensors');
    writeSafetensors(path, tensors, TINY_METADATA);
    const expected = createHash('sha256').update(readFileSync(path)).digest('hex');
    expect(loadCheckpoint(path).sha256).toBe(expected);
    expect(loadCheckpoint('test/fixtures/planted-induction-2l.safetensors').sha256)
      .toBe(createHash('sha256').update(readFileSync('test/fixtures/planted-induction-2l.safetensors')).digest('hex'));
  });
});

describe('reading into a reused buffer, and leaving weights in the file', () => {
  const VOCAB = ['embed.W_E', 'unembed.W_U'];

  /** The tiny tensors with every value distinct per file, so a stale read would show. */
  function writeTiny(name: string, offset: number, dtype: WriteDType = 'F32'): { path: string; tensors: Record<string, TensorToWrite> } {
    const tensors = Object.fromEntries(Object.entries(tinyTensors()).map(([k, t]) => [k, { ...t, data: t.data.map((x) => x + offset), dtype }]));
    const path = tmp.file(name);
    writeSafetensors(path, tensors, TINY_METADATA);
    return { path, tensors };
  }

  test('two checkpoints read one after another into one ReadBuffer each load exactly their own weights and hash', () => {
    const a = writeTiny('reuse-a.safetensors', 100);
    const b = writeTiny('reuse-b.safetensors', 200);
    const buffer = new ReadBuffer();
    for (const f of [a, b, a]) {
      const ck = loadCheckpoint(f.path, { readBuffer: buffer });
      expect(ck.sha256).toBe(createHash('sha256').update(readFileSync(f.path)).digest('hex'));
      for (const [name, t] of Object.entries(f.tensors)) expect(Array.from(ck.weights.get(name)!.data), name).toEqual(Array.from(t.data));
    }
  });

  test.each(['F32', 'F16', 'BF16'] as const)('%s: weights left in the file are hashed, absent from weights, and read back in any block', (dtype) => {
    const f = writeTiny(`leave-${dtype}.safetensors`, 3, dtype);
    const whole = loadCheckpoint(f.path);
    const ck = loadCheckpoint(f.path, { readBuffer: new ReadBuffer(), leaveInFile: VOCAB });
    try {
      expect(ck.sha256).toBe(whole.sha256);
      expect([...ck.weights.keys()]).toEqual([...whole.weights.keys()].filter((k) => !VOCAB.includes(k)));
      for (const key of VOCAB) {
        const t = whole.weights.get(key)!;
        const [rows, cols] = t.shape;
        expect(Array.from(weightOf(ck, key).data), key).toEqual(Array.from(t.data));
        // Every block: whole rows (one read) and column ranges (one read per row).
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) {
            const block = weightBlock(ck, key, r, rows - r, c, cols - c);
            const expected = Array.from({ length: (rows - r) * (cols - c) }, (_, i) => t.data[(r + Math.floor(i / (cols - c))) * cols + c + (i % (cols - c))]);
            expect(Array.from(block), `${key} [${r}:, ${c}:]`).toEqual(expected);
            expect(Array.from(weightBlock(whole, key, r, rows - r, c, cols - c)), `${key} [${r}:, ${c}:] in memory`).toEqual(expected);
          }
        }
      }
    } finally {
      closeCheckpoint(ck);
    }
  });

  test('a closed checkpoint says so when a weight left in its file is asked for; closing again is a no-op', () => {
    const f = writeTiny('leave-closed.safetensors', 0);
    const ck = loadCheckpoint(f.path, { leaveInFile: VOCAB });
    closeCheckpoint(ck);
    closeCheckpoint(ck);
    expect(() => weightOf(ck, 'embed.W_E')).toThrow(`${f.path}: weight 'embed.W_E' is neither loaded nor left in an open file`);
  });

  test('a block outside the tensor is refused, in the file and in memory alike', () => {
    const f = writeTiny('leave-outside.safetensors', 0);
    const ck = loadCheckpoint(f.path, { leaveInFile: VOCAB });
    try {
      expect(() => weightBlock(ck, 'embed.W_E', 4, 2, 0, 4)).toThrow("block [4+2, 0+4] is outside 'embed.W_E' [5, 4]");
      expect(() => weightBlock(loadCheckpoint(f.path), 'unembed.W_U', 0, 4, 3, 3)).toThrow("block [0+4, 3+3] is outside 'unembed.W_U' [4, 5]");
    } finally {
      closeCheckpoint(ck);
    }
  });
});

describe('golden fixtures', () => {
  // Shapes and counts written out from METRICS.md §7 configs, not derived from the loader.
  const fixtures = [
    {
      name: 'planted-induction-2l',
      config: { n_layers: 2, n_heads: 2, d_model: 96, d_head: 64, d_vocab: 16, n_ctx: 64, normalization_type: null, positional_embedding_type: 'standard' },
      tensors: 20,
      // W_E 16·96 + W_pos 64·96 + 2 × (4·2·96·64 + 3·2·64 + 96) + W_U 96·16 + b_U 16 = 108496
      parameters: 108496,
      shapes: { 'blocks.1.attn.W_O': [2, 64, 96], 'pos_embed.W_pos': [64, 96], 'unembed.W_U': [96, 16] },
    },
    {
      name: 'random-2l-ln-standard',
      config: { n_layers: 2, n_heads: 4, d_model: 64, d_head: 16, d_vocab: 100, n_ctx: 128, normalization_type: 'LN', positional_embedding_type: 'standard' },
      tensors: 26,
      // W_E 100·64 + W_pos 128·64 + 2 × (2·64 + 4·4·64·16 + 3·4·16 + 64) + ln_final 2·64 + W_U 64·100 + b_U 100 = 54756
      parameters: 54756,
      shapes: { 'blocks.0.ln1.w': [64], 'blocks.1.attn.b_K': [4, 16], 'ln_final.b': [64] },
    },
    {
      name: 'random-1l-none-shortformer',
      config: { n_layers: 1, n_heads: 3, d_model: 48, d_head: 12, d_vocab: 60, n_ctx: 64, normalization_type: null, positional_embedding_type: 'shortformer' },
      tensors: 12,
      // W_E 60·48 + W_pos 64·48 + 4·3·48·12 + 3·3·12 + 48 + W_U 48·60 + b_U 60 = 15960
      parameters: 15960,
      shapes: { 'embed.W_E': [60, 48], 'blocks.0.attn.W_Q': [3, 48, 12], 'unembed.b_U': [60] },
    },
  ];

  test.each(fixtures)('$name loads with the shapes of its config', (f) => {
    const path = `test/fixtures/${f.name}.safetensors`;
    const ckpt = loadCheckpoint(path);
    expect(ckpt.config).toMatchObject(f.config);
    expect(ckpt.step).toBe(0);
    expect(ckpt.tokensSeen).toBeNull();
    expect(ckpt.metadata.format).toBe('headsweep-fixture');
    expect(ckpt.weights.size).toBe(f.tensors);
    for (const [name, shape] of Object.entries(f.shapes)) expect(ckpt.weights.get(name)!.shape, name).toEqual(shape);
    for (const [name, shape] of expectedShapes(ckpt.config)) {
      const t = ckpt.weights.get(name)!;
      expect(t.shape, name).toEqual(shape);
      expect(t.data.length, name).toBe(shape.reduce((a, b) => a * b, 1));
    }
    expect(parameterCount(ckpt.config)).toBe(f.parameters);
    // Every data byte is a parameter: the file is the 8-byte prefix, the header and 4·parameters.
    const { length } = rawHeader(path);
    expect(readFileSync(path).byteLength).toBe(8 + length + 4 * f.parameters);
  });
});
