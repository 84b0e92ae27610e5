/**
 * Prompt sets through a model's own tokenizer.json (a small GPT-2-style byte-level BPE built
 * in test/helpers/tokenizer.ts, run by @huggingface/tokenizers): text windows are runs of the
 * file's own encoding, BOS follows the family unless `bos` says otherwise, a model folder
 * stands for the tokenizer.json in it, and repeated_random draws only ids a tokenizer has.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, describe, expect, test } from 'vitest';
import { modelConfig, type ModelConfig } from '../src/model/config.ts';
import { buildPromptSet, PromptSetSpecSchema, repeatedRandom, textPromptSet, type PromptSet } from '../src/prompts/index.ts';
import { errorOf } from './helpers/load-errors.ts';
import { tempDir } from './helpers/safetensors.ts';
import { byteLevelBpe, TEXT, writeTokenizer } from './helpers/tokenizer.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const CORPUS = tmp.file('corpus.txt', TEXT);
const FOLDER = join(tmp.dir, 'model');
mkdirSync(FOLDER);
const IDS = writeTokenizer(join(FOLDER, 'tokenizer.json'), TEXT);
const TOKENIZER = join(FOLDER, 'tokenizer.json');

const shape = { n_layers: 1, n_heads: 1, d_model: 4, d_head: 4, n_ctx: 64, normalization_type: null } as const;
/** As the gpt2 family resolves it: BOS 50 (its <|endoftext|> would be; any id below d_vocab). */
const WITH_BOS: ModelConfig = modelConfig({ ...shape, d_vocab: 60, bos_token_id: 50 });
/** As the neox family resolves Pythia: no BOS. */
const NO_BOS: ModelConfig = modelConfig({ ...shape, d_vocab: 60 });

const text = (over: Record<string, unknown> = {}) => ({ kind: 'text' as const, name: 'nat', path: CORPUS, tokenizer: TOKENIZER, length: 12, count: 10, seed: 3, ...over });

/** Where `window` first occurs in `ids`, or -1. */
function indexOfRun(ids: readonly number[], window: readonly number[]): number {
  for (let i = 0; i + window.length <= ids.length; i++) if (window.every((id, k) => ids[i + k] === id)) return i;
  return -1;
}

describe('a text prompt set through a tokenizer.json', () => {
  // The file's encoding by the library itself, with no special tokens.
  const hf = new Tokenizer(JSON.parse(readFileSync(TOKENIZER, 'utf8')) as object, {});
  const all = hf.encode(TEXT, { add_special_tokens: false }).ids;

  test('the small tokenizer merges: fewer ids than bytes, and they fit the model', () => {
    expect(all.length).toBeLessThan(new TextEncoder().encode(TEXT).length * 0.8);
    expect(IDS).toBe(byteLevelBpe(TEXT).vocabSize);
    expect(IDS).toBeLessThan(NO_BOS.d_vocab);
  });

  test('every window is a run of the file\'s own ids, starting on the line it says', () => {
    const set = textPromptSet(text(), NO_BOS);
    const lines = TEXT.split('\n');
    expect(set.sequences).toHaveLength(10);
    set.sequences.forEach((seq, i) => {
      expect(seq).toHaveLength(12);
      expect(indexOfRun(all, Array.from(seq)), `window ${i}`).toBeGreaterThanOrEqual(0);
      const decoded = hf.decode(Array.from(seq), { clean_up_tokenization_spaces: false });
      expect(TEXT).toContain(decoded);
      const first = decoded.split('\n')[0];
      const line = lines[set.origin!.lines[i] - 1];
      expect(decoded.includes('\n') ? line.endsWith(first) : line.includes(decoded), `window ${i}: ${JSON.stringify(decoded)} on line ${set.origin!.lines[i]}`).toBe(true);
    });
  });

  test('BOS follows the model: prepended where the family has one, not for Pythia', () => {
    const gpt2 = textPromptSet(text(), WITH_BOS);
    const pythia = textPromptSet(text(), NO_BOS);
    gpt2.sequences.forEach((seq, i) => {
      expect(seq).toHaveLength(13);
      expect(seq[0]).toBe(50);
      expect(Array.from(seq.subarray(1))).toEqual(Array.from(pythia.sequences[i]));
    });
  });

  test('bos overrides the family: false for none, an id for that id; true needs a model BOS', () => {
    expect(textPromptSet(text({ bos: false }), WITH_BOS).sequences[0]).toHaveLength(12);
    expect(textPromptSet(text({ bos: 7 }), NO_BOS).sequences.map((s) => s[0])).toEqual(Array(10).fill(7));
    expect(errorOf(() => textPromptSet(text({ bos: true }), NO_BOS)).message).toBe(
      "prompt set 'nat': bos is true but the model config has no bos_token_id; give the id as bos: <id>",
    );
  });

  test('a model folder stands for the tokenizer.json in it', () => {
    const byFile = textPromptSet(text(), NO_BOS);
    expect(textPromptSet(text({ tokenizer: FOLDER }), NO_BOS).sequences).toEqual(byFile.sequences);
    // Relative to the config's folder, as every path of a prompt set.
    expect(textPromptSet(text({ tokenizer: 'model', path: 'corpus.txt' }), NO_BOS, tmp.dir).sequences).toEqual(byFile.sequences);
  });

  test('a tokenizer with more ids than the model, or none at the path, is an error naming it', () => {
    const small = modelConfig({ ...shape, d_vocab: 20 });
    expect(errorOf(() => textPromptSet(text(), small)).message).toBe(`prompt set 'nat': tokenizer '${TOKENIZER}' has ${IDS} ids but the model's d_vocab is 20`);
    const missing = join(tmp.dir, 'nowhere', 'tokenizer.json');
    expect(errorOf(() => textPromptSet(text({ tokenizer: missing }), NO_BOS)).message).toBe(`prompt set 'nat': ${missing}: no such tokenizer.json`);
    const broken = tmp.file('broken-tokenizer.json', '{"model": {"type": "Nonsense"}}');
    expect(errorOf(() => textPromptSet(text({ tokenizer: broken }), NO_BOS)).message).toMatch(new RegExp(`^prompt set 'nat': ${broken}: cannot be read as a tokenizer\\.json \\(`));
  });

  test('a text file with fewer tokens than a window is an error naming the file and both counts', () => {
    const need = all.length + 1;
    expect(errorOf(() => textPromptSet(text({ length: need }), NO_BOS)).message)
      .toBe(`prompt set 'nat': ${CORPUS} has ${all.length} tokens, fewer than length ${need}`);
  });

  test('byte and char64 keep their own BOS, and the spec they resolve to keeps bos: true', () => {
    expect(PromptSetSpecSchema.parse(text({ tokenizer: 'char64' }))).toMatchObject({ bos: true });
    expect(PromptSetSpecSchema.parse(text())).not.toHaveProperty('bos');
    const byte = textPromptSet(text({ tokenizer: 'byte' }), modelConfig({ ...shape, d_vocab: 257 }));
    expect(byte.sequences.map((s) => s[0])).toEqual(Array(10).fill(256));
  });
});

test('the bundled test/fixtures/tokenizer is this BPE over the bundled corpus, and round-trips it', () => {
  const corpus = readFileSync(join(import.meta.dirname, '..', 'data', 'corpus', 'npm-readmes.txt'), 'utf8');
  const bundled = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'tokenizer', 'tokenizer.json'), 'utf8')) as object;
  const built = byteLevelBpe(corpus);
  expect(bundled).toEqual(built.json);
  const hf = new Tokenizer(bundled, {});
  const ids = hf.encode(corpus, { add_special_tokens: false }).ids;
  expect(ids.every((id: number) => id < built.vocabSize)).toBe(true);
  expect(hf.decode(ids, { clean_up_tokenization_spaces: false })).toBe(corpus);
});

describe('repeated_random and a known tokenizer', () => {
  const rrt = { kind: 'repeated_random' as const, name: 'rrt', length: 20, repeats: 2, count: 8, seed: 0 };
  const big = modelConfig({ ...shape, d_vocab: 200, bos_token_id: 199 });
  const ids = (set: PromptSet) => set.sequences.flatMap((s) => Array.from(s.subarray(1)));

  test('draws only ids the tokenizer beside the weights has, never the padded rows past them', () => {
    const padded = ids(repeatedRandom(rrt, big));
    expect(Math.max(...padded)).toBeGreaterThanOrEqual(IDS);
    const bounded = ids(buildPromptSet(rrt, big, { tokenizerIds: IDS }));
    expect(Math.max(...bounded)).toBeLessThan(IDS);
    expect(new Set(bounded).size).toBeGreaterThan(20);
  });

  test('the prompt set\'s own tokenizer bounds them too; token_range still wins', () => {
    const own = ids(repeatedRandom({ ...rrt, tokenizer: 'model' }, big, { baseDir: tmp.dir }));
    expect(own).toEqual(ids(buildPromptSet(rrt, big, { tokenizerIds: IDS })));
    expect(Math.min(...ids(buildPromptSet({ ...rrt, token_range: [100, 150] }, big, { tokenizerIds: IDS })))).toBeGreaterThanOrEqual(100);
  });
});
