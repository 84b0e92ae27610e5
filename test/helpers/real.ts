/** The real-format fixtures (test/fixtures/real), and checkpoints derived from them for tests. */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES_DIR } from './fixtures.ts';
import { assemble } from './safetensors.ts';

export const REAL = join(FIXTURES_DIR, 'real');
export const GPT2 = join(REAL, 'gpt2-small-hf');

export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** A safetensors file's header (without __metadata__) and data section, parsed here, not by the reader under test. */
export function safetensorsParts(file: string): { header: Record<string, SafetensorsEntry>; data: Uint8Array } {
  const bytes = new Uint8Array(readFileSync(file));
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const { __metadata__: _m, ...header } = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return { header, data: bytes.subarray(8 + n) };
}

/**
 * Writes the GPT-2 fixture into `dir` as two safetensors shards (tensors in sorted order,
 * 15 in the first), `model.safetensors.index.json` and config.json; returns the weight map.
 */
export function writeShardedGpt2(dir: string): Record<string, string> {
  const { header, data } = safetensorsParts(join(GPT2, 'model.safetensors'));
  const names = Object.keys(header).sort();
  const weightMap: Record<string, string> = {};
  [names.slice(0, 15), names.slice(15)].forEach((part, s) => {
    const shard = `model-0000${s + 1}-of-00002.safetensors`;
    const out: Record<string, unknown> = {};
    const blobs: Uint8Array[] = [];
    let at = 0;
    for (const name of part) {
      const [a, b] = header[name].data_offsets;
      blobs.push(data.subarray(a, b));
      out[name] = { ...header[name], data_offsets: [at, at + b - a] };
      at += b - a;
      weightMap[name] = shard;
    }
    writeFileSync(join(dir, shard), assemble({ header: out, data: Buffer.concat(blobs) }));
  });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: data.byteLength }, weight_map: weightMap }));
  copyFileSync(join(GPT2, 'config.json'), join(dir, 'config.json'));
  return weightMap;
}
