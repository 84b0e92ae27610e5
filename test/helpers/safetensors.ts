/**
 * Builds tiny safetensors files byte by byte, independently of the project's writer, so
 * the reader tests can start from a valid file and break exactly one thing in it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A 1-layer LN model small enough to list by hand: 2 heads, d_model 4, d_head 2. */
export const TINY_CONFIG = {
  n_layers: 1,
  n_heads: 2,
  d_model: 4,
  d_head: 2,
  d_vocab: 5,
  n_ctx: 3,
  attn_only: true,
  normalization_type: 'LN',
  positional_embedding_type: 'standard',
  eps: 1e-5,
  bos_token_id: 0,
} as const;

/** TL name → shape for TINY_CONFIG, written out by hand (not via expectedShapes). */
export const TINY_SHAPES: Record<string, number[]> = {
  'embed.W_E': [5, 4],
  'pos_embed.W_pos': [3, 4],
  'blocks.0.ln1.w': [4],
  'blocks.0.ln1.b': [4],
  'blocks.0.attn.W_Q': [2, 4, 2],
  'blocks.0.attn.W_K': [2, 4, 2],
  'blocks.0.attn.W_V': [2, 4, 2],
  'blocks.0.attn.W_O': [2, 2, 4],
  'blocks.0.attn.b_Q': [2, 2],
  'blocks.0.attn.b_K': [2, 2],
  'blocks.0.attn.b_V': [2, 2],
  'blocks.0.attn.b_O': [4],
  'ln_final.w': [4],
  'ln_final.b': [4],
  'unembed.W_U': [4, 5],
  'unembed.b_U': [5],
};

export interface RawTensor {
  shape: number[];
  data: Float32Array;
}

/** Every TINY_SHAPES tensor filled with distinct values k·0.5 + i/8 (exact in float32). */
export function tinyTensors(): Record<string, RawTensor> {
  const out: Record<string, RawTensor> = {};
  Object.entries(TINY_SHAPES).forEach(([name, shape], k) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = k * 0.5 + i / 8;
    out[name] = { shape, data };
  });
  return out;
}

/** A parsed-apart safetensors file: the header as a plain object and the data section. */
export interface Parts {
  header: Record<string, unknown>;
  data: Uint8Array;
}

/** Lays out F32 tensors in sorted key order, as the reference writer does. */
export function buildParts(tensors: Record<string, RawTensor>, metadata?: Record<string, string>): Parts {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = metadata;
  const keys = Object.keys(tensors).sort();
  const size = keys.reduce((n, k) => n + tensors[k].data.byteLength, 0);
  const data = new Uint8Array(size);
  let offset = 0;
  for (const key of keys) {
    const t = tensors[key];
    header[key] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    data.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), offset);
    offset += t.data.byteLength;
  }
  return { header, data };
}

/** Tiny valid parts with the config in `__metadata__`, plus any extra metadata. */
export function tinyParts(metadata: Record<string, string> = {}): Parts {
  return buildParts(tinyTensors(), { config: JSON.stringify(TINY_CONFIG), ...metadata });
}

export interface AssembleOptions {
  /** Overrides the 8-byte header length (to lie about it). */
  headerLength?: bigint;
  /** Raw header text instead of JSON.stringify(header) (to make it not JSON). */
  headerText?: string;
}

/** Length prefix + header padded with spaces to 8 bytes + data, as the format lays them out. */
export function assemble(parts: Parts, opts: AssembleOptions = {}): Uint8Array {
  let text = opts.headerText ?? JSON.stringify(parts.header);
  const raw = new TextEncoder().encode(text);
  text += ' '.repeat((8 - (raw.byteLength % 8)) % 8);
  const headerBytes = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + headerBytes.byteLength + parts.data.byteLength);
  new DataView(out.buffer).setBigUint64(0, opts.headerLength ?? BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  out.set(parts.data, 8 + headerBytes.byteLength);
  return out;
}

/** A fresh temp folder per test file; call `cleanup` in afterAll. */
export function tempDir(): { dir: string; file: (name: string, bytes?: Uint8Array | string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'headsweep-test-'));
  return {
    dir,
    file(name, bytes) {
      const path = join(dir, name);
      if (bytes !== undefined) writeFileSync(path, bytes);
      return path;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
