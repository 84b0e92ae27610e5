/**
 * Prompt sets (METRICS.md §3): the seeded repeated_random generator, `.jsonl` token files,
 * and one test per validation failure asserting that the message names the prompt set,
 * the file and the line at fault.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { modelConfig, type ModelConfig } from '../src/model/config.ts';
import { errorOf } from './helpers/load-errors.ts';
import {
  buildPromptSet, readTokensFile, repeatedRandom, sampleDistinct, seededRng, validatePromptSet,
  type RepeatedRandomSpec,
} from '../src/prompts/index.ts';

const MODEL: ModelConfig = modelConfig({
  n_layers: 1, n_heads: 1, d_model: 4, d_head: 4, d_vocab: 100, n_ctx: 128,
  attn_only: true, normalization_type: null, positional_embedding_type: 'standard', eps: 1e-5, bos_token_id: 0,
});
const spec = (over: Partial<RepeatedRandomSpec> = {}): RepeatedRandomSpec => ({ kind: 'repeated_random', name: 'rr', count: 6, seed: 42, ...over });

describe('repeated_random', () => {
  it('builds BOS + a block of distinct ids repeated 4 times (Olsson et al. defaults: 101 tokens)', () => {
    const set = repeatedRandom(spec(), MODEL);
    expect(set.name).toBe('rr');
    expect(set.sequences).toHaveLength(6);
    for (const seq of set.sequences) {
      expect(seq).toHaveLength(101);
      expect(seq[0]).toBe(0);
      const block = Array.from(seq.subarray(1, 26));
      expect(new Set(block).size).toBe(25);
      for (const id of block) {
        expect(id).toBeGreaterThanOrEqual(1); // the BOS id 0 is never drawn
        expect(id).toBeLessThan(100);
      }
      for (let r = 1; r < 4; r++) expect(Array.from(seq.subarray(1 + 25 * r, 26 + 25 * r))).toEqual(block);
    }
  });

  it('gives the tokens of the documented algorithm (checked against an independent Python transcription)', () => {
    // xoroshiro128plus(42); uniformInt rejection sampling; partial Fisher–Yates over the
    // 99 ids 1..99. Pinned so a change of generator or algorithm cannot pass unnoticed.
    const set = repeatedRandom(spec({ count: 2 }), MODEL);
    expect(Array.from(set.sequences[0].subarray(0, 26))).toEqual([
      0, 59, 15, 62, 56, 94, 54, 89, 39, 6, 63, 92, 69, 27, 71, 68, 4, 30, 24, 45, 18, 37, 53, 73, 51, 96,
    ]);
    expect(Array.from(set.sequences[1].subarray(0, 26))).toEqual([
      0, 96, 71, 47, 82, 48, 4, 37, 46, 38, 65, 63, 16, 21, 42, 17, 2, 69, 31, 92, 91, 8, 28, 51, 85, 29,
    ]);
  });

  it('is a pure function of (spec, config): the same seed gives identical tokens, another seed others', () => {
    const a = repeatedRandom(spec(), MODEL);
    const b = repeatedRandom(spec(), MODEL);
    const c = repeatedRandom(spec({ seed: 43 }), MODEL);
    expect(b.sequences).toEqual(a.sequences);
    expect(c.sequences).not.toEqual(a.sequences);
    expect(c.sequences.every((seq, i) => seq.some((id, p) => id !== a.sequences[i][p]))).toBe(true);
  });

  it('draws a whole token_range as a permutation when length equals its size', () => {
    const set = repeatedRandom(spec({ token_range: [10, 20], length: 10, repeats: 2, bos: false, count: 3 }), MODEL);
    for (const seq of set.sequences) {
      expect(seq).toHaveLength(20);
      expect(Array.from(seq.subarray(0, 10)).sort((x, y) => x - y)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
      expect(Array.from(seq.subarray(10))).toEqual(Array.from(seq.subarray(0, 10)));
    }
  });

  it('prepends an explicit BOS id and never draws it or the model BOS', () => {
    const set = repeatedRandom(spec({ bos: 3, token_range: [0, 8], length: 6, repeats: 1 }), MODEL);
    for (const seq of set.sequences) {
      expect(seq[0]).toBe(3);
      expect(Array.from(seq.subarray(1)).sort((x, y) => x - y)).toEqual([1, 2, 4, 5, 6, 7]);
    }
  });

  it('adds no BOS when the model has none and the spec does not ask', () => {
    const set = repeatedRandom(spec({ length: 5, repeats: 2 }), { ...MODEL, bos_token_id: null });
    expect(set.sequences[0]).toHaveLength(10);
  });

  it('samples uniformly: each of 4 ids is first in about a quarter of 4000 draws', () => {
    const rng = seededRng(1);
    const first = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) first[sampleDistinct(rng, 4, 2)[0]]++;
    for (const n of first) expect(Math.abs(n - 1000)).toBeLessThan(100); // ~6 standard deviations
  });
});

describe('repeated_random errors', () => {
  it('rejects a length larger than the token range', () => {
    const err = errorOf(() => repeatedRandom(spec({ token_range: [0, 20], length: 25 }), MODEL));
    expect(err.message).toBe("prompt set 'rr': length 25 is larger than the 19 distinct ids in token_range [0, 20) (without BOS 0)");
    expect(err.stage).toBe('config');
  });

  it('rejects sequences longer than n_ctx', () => {
    const err = errorOf(() => repeatedRandom(spec(), { ...MODEL, n_ctx: 64 }));
    expect(err.message).toBe("prompt set 'rr': sequences of 1 + 25 × 4 = 101 tokens exceed the model's n_ctx 64");
  });

  it('rejects a token range outside the vocabulary', () => {
    const err = errorOf(() => repeatedRandom(spec({ token_range: [50, 150] }), MODEL));
    expect(err.message).toMatch(/^prompt set 'rr': token_range \[50, 150\) is not a non-empty part of the vocabulary \[0, 100\)/);
  });

  it('rejects bos: true for a model without bos_token_id', () => {
    const err = errorOf(() => repeatedRandom(spec({ bos: true }), { ...MODEL, bos_token_id: null }));
    expect(err.message).toMatch(/^prompt set 'rr': bos is true but the model config has no bos_token_id/);
  });

  it('rejects an empty set and names the bad key', () => {
    const err = errorOf(() => repeatedRandom(spec({ count: 0 }), MODEL));
    expect(err.message).toMatch(/^prompt set 'rr': invalid repeated_random spec: count: /);
  });
});

describe('tokens files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'headsweep-prompts-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };

  it('reads one sequence per line, skips blank lines and remembers line numbers', () => {
    write('ok.jsonl', '[0, 5, 6, 5, 6]\n\n  \n[0, 1, 2]\n');
    const set = buildPromptSet({ kind: 'tokens', name: 'file', path: 'ok.jsonl' }, MODEL, { baseDir: dir });
    expect(set.sequences.map((s) => Array.from(s))).toEqual([[0, 5, 6, 5, 6], [0, 1, 2]]);
    expect(set.origin).toEqual({ file: join(dir, 'ok.jsonl'), lines: [1, 4] });
  });

  it('names the file and line of an id outside the vocabulary', () => {
    const file = write('range.jsonl', '[0, 1, 2]\n\n[0, 100, 2]\n');
    const err = errorOf(() => buildPromptSet({ kind: 'tokens', name: 'file', path: file }, MODEL));
    expect(err.message).toBe(`prompt set 'file': ${file} line 3: token id 100 at position 1 is outside the vocabulary [0, 100)`);
    expect(err.file).toBe(file);
  });

  it('names the file and line of a sequence longer than n_ctx', () => {
    const file = write('long.jsonl', `${JSON.stringify(Array.from({ length: 129 }, () => 1))}\n`);
    const err = errorOf(() => buildPromptSet({ kind: 'tokens', name: 'file', path: file }, MODEL));
    expect(err.message).toBe(`prompt set 'file': ${file} line 1: has 129 tokens, more than the model's n_ctx 128`);
  });

  it('names the file and line of a line that is not JSON', () => {
    const file = write('bad.jsonl', '[1, 2]\n[1, 2\n');
    const err = errorOf(() => readTokensFile({ kind: 'tokens', name: 'file', path: file }));
    expect(err.message).toMatch(new RegExp(`^prompt set 'file': ${file} line 2: not valid JSON`));
  });

  it('names the file and line of a line that is not an array of integers', () => {
    const file = write('float.jsonl', '[1, 2.5]\n');
    const err = errorOf(() => readTokensFile({ kind: 'tokens', name: 'file', path: file }));
    expect(err.message).toBe(`prompt set 'file': ${file} line 1: expected a JSON array of integer token ids`);
  });

  it('names the file and line of an id too large for int32, rather than reading it wrapped', () => {
    const file = write('wide.jsonl', '[0, 4294967301]\n'); // 2^32 + 5 would wrap to 5, a valid id
    const err = errorOf(() => readTokensFile({ kind: 'tokens', name: 'file', path: file }));
    expect(err.message).toBe(`prompt set 'file': ${file} line 1: token id 4294967301 at position 1 does not fit in 32 bits`);
  });

  it('rejects a file with no sequences', () => {
    const file = write('empty.jsonl', '\n\n');
    const err = errorOf(() => readTokensFile({ kind: 'tokens', name: 'file', path: file }));
    expect(err.message).toBe(`prompt set 'file': tokens file ${file} holds no sequences`);
  });

  it('names a file that cannot be read', () => {
    const file = join(dir, 'missing.jsonl');
    const err = errorOf(() => readTokensFile({ kind: 'tokens', name: 'file', path: file }));
    expect(err.message).toMatch(new RegExp(`^prompt set 'file': cannot read tokens file ${file}`));
  });
});

describe('validatePromptSet', () => {
  it('rejects an empty set', () => {
    const err = errorOf(() => validatePromptSet({ name: 'none', sequences: [] }, MODEL));
    expect(err.message).toBe("prompt set 'none': has no sequences");
  });

  it('names the sequence index when the set has no file', () => {
    const err = errorOf(() => validatePromptSet({ name: 'inline', sequences: [Int32Array.of(0, 1), Int32Array.of(0, -1)] }, MODEL));
    expect(err.message).toBe("prompt set 'inline': sequence 1: token id -1 at position 1 is outside the vocabulary [0, 100)");
  });

  it('rejects a sequence too short to score', () => {
    const err = errorOf(() => validatePromptSet({ name: 'short', sequences: [Int32Array.of(0)] }, MODEL));
    expect(err.message).toBe("prompt set 'short': sequence 0: has 1 token(s); scoring needs at least 2");
  });
});
