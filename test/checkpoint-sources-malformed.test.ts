/**
 * One test per way a checkpoint in a trainer's format can be broken: a truncated or broken
 * zip, a missing record, a storage smaller than its tensor, an index naming what is not
 * there, an invalid config.json, an unknown model_type, tensors that disagree with the
 * config. Each must be a HeadsweepError at stage 'load' whose message starts with the
 * file at fault and gives the reason, from `inspect` and from loading alike.
 */
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { HeadsweepError } from '../src/errors.ts';
import { expectLoadError } from './helpers/load-errors.ts';
import { REAL, safetensorsParts, writeShardedGpt2 } from './helpers/real.ts';
import { assemble, TINY_CONFIG, tempDir, tinyTensors } from './helpers/safetensors.ts';
import { f32Bytes, pickleDict, storedZip, torchArchive, zipRecords, type PickleItem } from './helpers/torch-zip.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const NANOGPT = join(REAL, 'nanogpt-ckpt', 'ckpt-2000.pt');
const TL_PTH = join(REAL, 'tl-gelu-2l-pth');

function copyOf(folder: string, name: string): string {
  const dir = join(tmp.dir, name);
  cpSync(folder, dir, { recursive: true });
  return dir;
}

describe('torch zip archives', () => {
  const whole = new Uint8Array(readFileSync(NANOGPT));

  test('truncated: the end of central directory is gone', () => {
    const path = tmp.file('cut.pt', whole.subarray(0, Math.floor(whole.byteLength / 2)));
    expectLoadError(path, /: truncated zip: no end-of-central-directory record at the end of the file \(cut short, or still being written\)$/);
  });

  test('a broken central directory: an entry without its signature', () => {
    const bytes = whole.slice();
    const view = new DataView(bytes.buffer);
    const cdStart = view.getUint32(bytes.byteLength - 22 + 16, true);
    view.setUint32(cdStart, 0xdeadbeef, true);
    const path = tmp.file('broken-cd.pt', bytes);
    expectLoadError(path, new RegExp(`: broken central directory: entry 0 at byte ${cdStart} has no entry signature$`));
  });

  test('a missing data record: a weight\'s storage is not in the archive', () => {
    const dir = copyOf(TL_PTH, 'missing-record');
    const records = zipRecords(new Uint8Array(readFileSync(join(dir, 'model_final.pth'))));
    writeFileSync(join(dir, 'model_final.pth'), storedZip(records.filter((r) => r.name !== 'model_final/data/0'), { align: 64 }));
    expectLoadError(
      join(dir, 'model_final.pth'),
      /: missing data record: tensor 'embed\.W_E' is in storage '0', but the archive has no record 'model_final\/data\/0'$/,
    );
  });

  /** The tiny TL model as .pth with config.json; `change` edits W_E's pickled tensor and storage bytes. */
  function tinyPth(name: string, change: (we: { entry: Record<string, unknown>; bytes: Uint8Array }) => void): string {
    const dir = join(tmp.dir, name);
    mkdirSync(dir);
    const entries: Record<string, PickleItem> = {};
    const storages: Record<string, Uint8Array> = {};
    Object.entries(tinyTensors()).forEach(([key, { shape, data }], k) => {
      const entry = { storage: String(k), dtype: 'F32' as const, numel: data.length, shape };
      const we = { entry: entry as Record<string, unknown>, bytes: f32Bytes(data) };
      if (key === 'embed.W_E') change(we);
      entries[key] = we.entry as unknown as PickleItem;
      storages[String(k)] = we.bytes;
    });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(TINY_CONFIG));
    const path = join(dir, 'model.pth');
    writeFileSync(path, torchArchive('model', pickleDict(entries), storages));
    return path;
  }

  test('a storage smaller than its tensor: the view reads past the storage\'s elements', () => {
    // W_E [5, 4] at offset 4 of a 20-element storage reads elements 4..23.
    const path = tinyPth('offset-past', (we) => {
      we.entry.offset = 4;
    });
    expectLoadError(path, /: tensor 'embed\.W_E' \(shape \[5, 4\], offset 4, strides \[4, 1\]\) reads element 23 of storage '0', which holds 20: the storage is smaller than its tensor$/);
  });

  test('a record smaller than its storage', () => {
    const path = tinyPth('short-record', (we) => {
      we.bytes = we.bytes.subarray(0, 60);
    });
    expectLoadError(path, /: record 'model\/data\/0' holds 60 bytes, fewer than its storage's 20 × F32 \(80 bytes\)$/);
  });
});

describe('sharded checkpoints', () => {
  /** The GPT-2 fixture as two safetensors shards with an index, in a fresh folder. */
  function sharded(name: string): { dir: string; index: string; map: Record<string, string> } {
    const dir = join(tmp.dir, name);
    mkdirSync(dir);
    const map = writeShardedGpt2(dir);
    return { dir, index: join(dir, 'model.safetensors.index.json'), map };
  }

  test('an index naming a shard that does not exist', () => {
    const { dir, index } = sharded('missing-shard');
    rmSync(join(dir, 'model-00002-of-00002.safetensors'));
    expectLoadError(dir, /: names shard 'model-00002-of-00002\.safetensors' \(for tensor '[^']+' and others\), which does not exist$/, index);
  });

  test('an index naming a tensor its shard does not hold', () => {
    const { dir, index, map } = sharded('missing-tensor');
    writeFileSync(index, JSON.stringify({ weight_map: { ...map, 'h.0.attn.c_attn.weight': 'model-00002-of-00002.safetensors' } }));
    expectLoadError(dir, /: places tensor 'h\.0\.attn\.c_attn\.weight' in '.*model-00002-of-00002\.safetensors', which has no such tensor$/, index);
  });

  test('an index that is not JSON', () => {
    const { dir, index } = sharded('bad-index');
    writeFileSync(index, '{"weight_map": ');
    expectLoadError(dir, /: is not valid JSON \(/, index);
  });
});

describe('config.json', () => {
  test('not JSON', () => {
    const dir = copyOf(join(REAL, 'gpt2-small-hf'), 'config-not-json');
    writeFileSync(join(dir, 'config.json'), '{"model_type": "gpt2",');
    expectLoadError(dir, /: is not valid JSON \(/, join(dir, 'config.json'));
  });

  test('a field of the wrong type', () => {
    const dir = copyOf(join(REAL, 'gpt2-small-hf'), 'config-bad-field');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, n_embd: '64' }));
    expectLoadError(dir, /: invalid config: n_embd: Invalid input: expected number, received string$/, join(dir, 'config.json'));
  });

  test('an unknown model_type', () => {
    const dir = copyOf(join(REAL, 'gpt2-small-hf'), 'config-bert');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'bert' }));
    expectLoadError(
      dir,
      /: model_type 'bert' is not a family headsweep reads \(it reads gpt2, gpt_neox, llama, mistral, qwen2\); if the model is one of those under another name, force the family \(tl, gpt2, neox, llama, nanogpt\)$/,
      join(dir, 'config.json'),
    );
  });

  test('rope_scaling, which headsweep does not implement', () => {
    const dir = copyOf(join(REAL, 'llama-gqa-bf16'), 'config-rope-scaling');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, rope_scaling: { rope_type: 'linear', factor: 2 } }));
    expectLoadError(dir, /: invalid config: rope_scaling: \{"rope_type": "linear", "factor": 2\} changes the rotary frequencies, which headsweep does not implement/, join(dir, 'config.json'));
  });

  test('a Mistral sliding window, with the way out', () => {
    const dir = copyOf(join(REAL, 'llama-gqa-bf16'), 'config-sliding');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'mistral', sliding_window: 4096 }));
    expectLoadError(dir, /: invalid config: sliding_window: 4096: sliding-window attention is not implemented; .*setting "sliding_window": null in config\.json is exact for them$/, join(dir, 'config.json'));
  });
});

describe('tensors against the family and the config', () => {
  test('a source tensor of the wrong shape names it and both shapes', () => {
    const dir = copyOf(join(REAL, 'gpt2-small-hf'), 'wrong-shape');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, n_inner: 128 }));
    expectLoadError(dir, /: tensor 'h\.0\.mlp\.c_fc\.weight' has shape \[64, 256\] but the config expects \[64, 128\]$/, join(dir, 'model.safetensors'));
  });

  test('a source tensor the family does not read is named, beside the known buffers read past', () => {
    const dir = copyOf(join(REAL, 'gpt2-small-hf'), 'unexpected-tensor');
    const file = join(dir, 'model.safetensors');
    const { header, data } = safetensorsParts(file);
    // The fixture carries h.0.attn.bias, the causal-mask buffer older GPT-2 checkpoints have: no error of its own.
    expect(header['h.0.attn.bias']).toBeDefined();
    const extra = { dtype: 'F32', shape: [1], data_offsets: [data.byteLength, data.byteLength + 4] };
    writeFileSync(file, assemble({ header: { ...header, 'h.0.attn.extra.weight': extra }, data: Buffer.concat([data, new Uint8Array(4)]) }));
    expectLoadError(dir, /: unexpected tensor 'h\.0\.attn\.extra\.weight': the GPT-2 conversion does not read it and it is not a known buffer$/, file);
  });

  test('a folder of the wrong kind: config.json but no weights', () => {
    const dir = join(tmp.dir, 'no-weights');
    mkdirSync(dir);
    cpSync(join(REAL, 'gpt2-small-hf', 'config.json'), join(dir, 'config.json'));
    writeFileSync(join(dir, 'notes.txt'), 'x');
    expectLoadError(dir, /: has a config\.json but no weights beside it \(headsweep reads model\.safetensors\.index\.json, model\.safetensors, pytorch_model\.bin\.index\.json, pytorch_model\.bin, or a single \.safetensors or torch file\); it holds config\.json, notes\.txt$/);
  });

  test('a nanoGPT family forced on a TL state dict', () => {
    let caught: unknown;
    try {
      loadCheckpoint(join(TL_PTH, 'model_final.pth'), { family: 'nanogpt' });
    } catch (err) {
      caught = err;
    }
    expect((caught as HeadsweepError).message).toBe(`${join(TL_PTH, 'model_final.pth')}: is not a nanoGPT checkpoint: its pickle is not a dict with 'model' and 'model_args'`);
  });
});
