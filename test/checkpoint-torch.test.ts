/**
 * torch.save archives written byte by byte (helpers/torch-zip.ts): strides and storage
 * offsets, storages shared by several tensors, F16/BF16/F64 storages, ZIP64 end records,
 * a nanoGPT checkpoint with `bias: false`, `_orig_mod.` names and an optimizer whose
 * storages are absent (so never read), and a sharded pytorch_model.bin.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { f32ToBF16, f32ToF16 } from '../src/checkpoint/dtypes.ts';
import { GPT2, REAL, safetensorsParts } from './helpers/real.ts';
import { TINY_CONFIG, tempDir, tinyTensors } from './helpers/safetensors.ts';
import { f32Bytes, pickleDict, pickleTensor, storedZip, torchArchive, zipRecords, type PickleItem, type PickledTensor } from './helpers/torch-zip.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());


function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function bytesOf(a: Uint16Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

describe('a TL state dict as .pth, with the layouts torch can pickle', () => {
  /**
   * The tiny TL model with: W_E stored transposed (strides [1, 5]); W_K and W_V in one
   * storage after 8 unused elements (offsets 8 and 24); W_pos as F16, W_U as BF16, b_U as F64.
   */
  function write(dir: string): { path: string; storages: Record<string, Uint8Array> } {
    mkdirSync(dir, { recursive: true });
    const t = tinyTensors();
    const entries: Record<string, PickleItem> = {};
    const storages: Record<string, Uint8Array> = {};
    let next = 0;
    for (const [name, { shape, data }] of Object.entries(t)) {
      if (['embed.W_E', 'blocks.0.attn.W_K', 'blocks.0.attn.W_V', 'pos_embed.W_pos', 'unembed.W_U', 'unembed.b_U'].includes(name)) continue;
      const key = String(next++);
      storages[key] = f32Bytes(data);
      entries[name] = { storage: key, dtype: 'F32', numel: data.length, shape };
    }
    // W_E [5, 4] as the transpose of a [4, 5] storage: element [v][m] at m·5 + v.
    const we = t['embed.W_E'].data;
    storages.we = f32Bytes(Array.from({ length: 20 }, (_, i) => we[(i % 5) * 4 + Math.floor(i / 5)]));
    entries['embed.W_E'] = { storage: 'we', dtype: 'F32', numel: 20, shape: [5, 4], strides: [1, 5] };
    // W_K and W_V, 16 elements each, share one 40-element storage.
    storages.kv = f32Bytes([...new Array(8).fill(-7), ...t['blocks.0.attn.W_K'].data, ...t['blocks.0.attn.W_V'].data]);
    entries['blocks.0.attn.W_K'] = { storage: 'kv', dtype: 'F32', numel: 40, offset: 8, shape: [2, 4, 2] };
    entries['blocks.0.attn.W_V'] = { storage: 'kv', dtype: 'F32', numel: 40, offset: 24, shape: [2, 4, 2] };
    storages.pos = bytesOf(f32ToF16(t['pos_embed.W_pos'].data));
    entries['pos_embed.W_pos'] = { storage: 'pos', dtype: 'F16', numel: 12, shape: [3, 4] };
    storages.wu = bytesOf(f32ToBF16(t['unembed.W_U'].data));
    entries['unembed.W_U'] = { storage: 'wu', dtype: 'BF16', numel: 20, shape: [4, 5] };
    storages.bu = bytesOf(Float64Array.from(t['unembed.b_U'].data));
    entries['unembed.b_U'] = { storage: 'bu', dtype: 'F64', numel: 5, shape: [5] };
    const path = join(dir, 'model.pth');
    writeFileSync(path, torchArchive('model', pickleDict(entries), storages));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(TINY_CONFIG));
    return { path, storages };
  }

  test('every tensor reads as the values it views, whatever its strides, offset, storage or dtype', () => {
    const { path } = write(join(tmp.dir, 'layouts'));
    const ck = loadCheckpoint(path);
    expect(ck.source.family).toBe('tl');
    expect(ck.source.container).toBe('torch');
    // tinyTensors' values have at most 7 significant bits: exact in F16 and BF16.
    for (const [name, t] of Object.entries(tinyTensors())) expect(Array.from(ck.weights.get(name)!.data), name).toEqual(Array.from(t.data));
  });

  test('a storage shared by two tensors is one storage, read once for both', () => {
    const { path } = write(join(tmp.dir, 'shared'));
    const ck = loadCheckpoint(path);
    const k = ck.source.plan.get('blocks.0.attn.W_K')!.view!;
    const v = ck.source.plan.get('blocks.0.attn.W_V')!.view!;
    expect(k.storage).toBe(v.storage);
    expect(v.base - k.base).toBe(16 * 4);
  });

  test('the identity covers the archive\'s directory, pickle and weight records, and config.json', () => {
    const dir = join(tmp.dir, 'identity');
    const { path, storages } = write(dir);
    const bytes = new Uint8Array(readFileSync(path));
    const ck = loadCheckpoint(path);
    // What was read of the archive, in file order: data.pkl, byteorder, each storage, then the directory onwards.
    const records = zipRecords(bytes).filter((r) => !r.name.endsWith('/version'));
    expect(records.map((r) => r.name).slice(0, 2)).toEqual(['model/data.pkl', 'model/byteorder']);
    const eocd = bytes.byteLength - 22;
    const cdStart = new DataView(bytes.buffer).getUint32(eocd + 16, true);
    const read = Buffer.concat([...records.map((r) => r.data), bytes.subarray(cdStart)]);
    expect(records.length).toBe(2 + Object.keys(storages).length);
    const archive = ck.source.files.find((f) => f.role === 'weights')!;
    expect(archive.whole).toBe(false);
    expect(archive.sha256).toBe(sha256(read));
    const config = sha256(readFileSync(join(dir, 'config.json')));
    expect(ck.sha256).toBe(sha256(`headsweep-checkpoint-v1\n${config}  config.json\n${archive.sha256}  model.pth\n`));

    // Editing config.json beside the same weights is a different checkpoint.
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...TINY_CONFIG, seed: 1 }));
    const edited = loadCheckpoint(path);
    expect(edited.source.files.find((f) => f.role === 'weights')!.sha256).toBe(archive.sha256);
    expect(edited.sha256).not.toBe(ck.sha256);
  });
});

describe('ZIP64 and alignment', () => {
  const original = new Uint8Array(readFileSync(join(REAL, 'tl-gelu-2l-pth', 'model_final.pth')));
  const reference = loadCheckpoint(join(REAL, 'tl-gelu-2l-pth', 'model_final.pth'));

  test.each([
    { what: 'only the ZIP64 end record tells where the directory is', opts: { zip64: 'forced' as const, align: 64 } },
    { what: 'no ZIP64 records and no alignment (torch 1.x)', opts: { zip64: false, align: undefined } },
  ])('$what', ({ opts }) => {
    const dir = join(tmp.dir, `zip64-${String(opts.zip64)}`);
    mkdirSync(dir);
    copyFileSync(join(REAL, 'tl-gelu-2l-pth', 'config.json'), join(dir, 'config.json'));
    const path = join(dir, 'model_final.pth');
    writeFileSync(path, storedZip(zipRecords(original), opts));
    const ck = loadCheckpoint(path);
    for (const [key, t] of reference.weights) expect(Array.from(ck.weights.get(key)!.data), key).toEqual(Array.from(t.data));
  });
});

describe('a nanoGPT checkpoint with bias: false, compiled, and an optimizer', () => {
  // n_layer 1, n_head 2, n_embd 4 (d_head 2), block_size 3, vocab 5; every value distinct.
  const D = 4;
  const H = 2;
  const d = 2;
  const V = 5;
  const M = 16;
  const shapes: Record<string, number[]> = {
    'transformer.wte.weight': [V, D],
    'transformer.wpe.weight': [3, D],
    'transformer.h.0.ln_1.weight': [D],
    'transformer.h.0.attn.c_attn.weight': [3 * D, D],
    'transformer.h.0.attn.c_proj.weight': [D, D],
    'transformer.h.0.ln_2.weight': [D],
    'transformer.h.0.mlp.c_fc.weight': [M, D],
    'transformer.h.0.mlp.c_proj.weight': [D, M],
    'transformer.ln_f.weight': [D],
  };
  const values: Record<string, Float32Array> = {};
  Object.entries(shapes).forEach(([name, shape], k) => {
    values[name] = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => k + i / 64);
  });

  function write(): string {
    const storages: Record<string, Uint8Array> = {};
    const model: Record<string, PickleItem> = {};
    let wte = -1;
    Object.entries(shapes).forEach(([name, shape], k) => {
      storages[String(k)] = f32Bytes(values[name]);
      const t: PickledTensor = { storage: String(k), dtype: 'F32', numel: values[name].length, shape };
      model[`_orig_mod.${name}`] = name === 'transformer.wte.weight' ? (p) => { pickleTensor(p, t); wte = p.put(); } : t;
    });
    // Tied: the same pickled tensor object, as torch.save writes a shared parameter.
    model['_orig_mod.lm_head.weight'] = (p) => p.get(wte);
    // The optimizer's and best_val_loss's storages have no records: reading them would fail.
    const moment: PickledTensor = { storage: '90', dtype: 'F32', numel: 20, shape: [V, D] };
    const pickle = pickleDict({
      model,
      optimizer: { state: (p) => { p.emptyDict().mark().int(0); p.emptyDict().mark().str('exp_avg'); pickleTensor(p, moment).setitems().setitems(); }, param_groups: (p) => p.emptyList() },
      model_args: { n_layer: 1, n_head: H, n_embd: D, block_size: 3, bias: false, vocab_size: V, dropout: 0 },
      iter_num: 750,
      best_val_loss: { storage: '91', dtype: 'F32', numel: 1, shape: [] },
      config: { out_dir: 'out', compile: true, learning_rate: 0.0006 },
    });
    const path = tmp.file('ckpt.pt', torchArchive('ckpt', pickle, storages));
    return path;
  }

  test('loads with zero biases, lm_head tied to wte, step from iter_num, and the optimizer never read', () => {
    const ck = loadCheckpoint(write());
    expect(ck.source.family).toBe('nanogpt');
    expect(ck.step).toBe(750);
    expect(ck.source.stepSource).toBe('iter_num');
    expect(ck.config).toMatchObject({ n_layers: 1, n_heads: H, d_model: D, d_head: d, d_mlp: M, d_vocab: V, n_ctx: 3, act_fn: 'gelu', bos_token_id: null });
    const w = (key: string) => ck.weights.get(key)!.data;
    /** transformer.<name>[i₀][i₁] as written. */
    const at = (name: string, ...i: number[]) => values[`transformer.${name}`][i.reduce((flat, x, k) => flat * shapes[`transformer.${name}`][k] + x, 0)];
    for (const key of ['blocks.0.ln1.b', 'blocks.0.ln2.b', 'ln_final.b', 'blocks.0.attn.b_Q', 'blocks.0.attn.b_O', 'blocks.0.mlp.b_in', 'unembed.b_U']) {
      expect(w(key).every((x) => x === 0), key).toBe(true);
    }
    // CHECKPOINT-FORMATS.md §7, element by element.
    const c = 'h.0.attn.c_attn.weight';
    (['W_Q', 'W_K', 'W_V'] as const).forEach((x, q) => {
      for (let h = 0; h < H; h++) for (let m = 0; m < D; m++) for (let j = 0; j < d; j++) {
        expect(w(`blocks.0.attn.${x}`)[(h * D + m) * d + j], `${x}[${h}][${m}][${j}]`).toBe(at(c, q * D + h * d + j, m));
      }
    });
    for (let h = 0; h < H; h++) for (let j = 0; j < d; j++) for (let m = 0; m < D; m++) {
      expect(w('blocks.0.attn.W_O')[(h * d + j) * D + m]).toBe(at('h.0.attn.c_proj.weight', m, h * d + j));
    }
    for (let m = 0; m < D; m++) for (let k = 0; k < M; k++) {
      expect(w('blocks.0.mlp.W_in')[m * M + k]).toBe(at('h.0.mlp.c_fc.weight', k, m));
      expect(w('blocks.0.mlp.W_out')[k * D + m]).toBe(at('h.0.mlp.c_proj.weight', m, k));
    }
    for (let m = 0; m < D; m++) for (let v = 0; v < V; v++) expect(w('unembed.W_U')[m * V + v]).toBe(at('wte.weight', v, m));
    expect(Array.from(w('embed.W_E'))).toEqual(Array.from(values['transformer.wte.weight']));
    expect(ck.source.plan.get('unembed.W_U')!.view!.storage).toBe(ck.source.plan.get('embed.W_E')!.view!.storage);
    expect(ck.source.tensors.map((t) => t.name)).toContain('_orig_mod.lm_head.weight');
  });
});

describe('a sharded pytorch_model.bin', () => {
  test('two shards and their index load as the single-file model does', () => {
    // The GPT-2 fixture's tensors, rewritten as two torch shards.
    const folder = GPT2;
    const { header, data } = safetensorsParts(join(folder, 'model.safetensors'));
    const names = Object.keys(header);
    const dir = join(tmp.dir, 'sharded-bin');
    mkdirSync(dir);
    const weightMap: Record<string, string> = {};
    [names.slice(0, 13), names.slice(13)].forEach((part, s) => {
      const shard = `pytorch_model-0000${s + 1}-of-00002.bin`;
      const storages: Record<string, Uint8Array> = {};
      const dict: Record<string, PickleItem> = {};
      part.forEach((name, k) => {
        const { shape, data_offsets: [a, b] } = header[name];
        storages[String(k)] = data.slice(a, b);
        dict[name] = { storage: String(k), dtype: 'F32', numel: (b - a) / 4, shape };
        weightMap[name] = shard;
      });
      writeFileSync(join(dir, shard), torchArchive(`pytorch_model-0000${s + 1}-of-00002`, pickleDict(dict), storages));
    });
    writeFileSync(join(dir, 'pytorch_model.bin.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    copyFileSync(join(folder, 'config.json'), join(dir, 'config.json'));

    const ck = loadCheckpoint(dir);
    const reference = loadCheckpoint(folder);
    expect(ck.source.container).toBe('sharded-torch');
    expect(ck.source.files.map((f) => [f.name, f.role])).toEqual([
      ['pytorch_model-00001-of-00002.bin', 'weights'],
      ['pytorch_model-00002-of-00002.bin', 'weights'],
      ['pytorch_model.bin.index.json', 'index'],
      ['config.json', 'config'],
    ]);
    for (const [key, t] of reference.weights) expect(Array.from(ck.weights.get(key)!.data), key).toEqual(Array.from(t.data));
  });
});
