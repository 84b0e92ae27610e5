/**
 * A small real tokenizer.json, built here: GPT-2's byte-level BPE (ByteLevel pre-tokenizer
 * and decoder, its byte-to-character table) over only the bytes a text holds, a handful
 * of merges, and `<|endoftext|>` as an added special token, so that its ids fit the tiny
 * models of test/fixtures/real.
 */
import { writeFileSync } from 'node:fs';

/** GPT-2's byte → printable character table (`bytes_to_unicode` in its encoder.py). */
function byteChars(): Map<number, string> {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return new Map(bs.map((b, i) => [b, String.fromCodePoint(cs[i])]));
}

/** Merges that fit English-like text: `Ġ` is a space, as GPT-2 spells it. */
export const MERGES: [string, string][] = [['Ġ', 't'], ['h', 'e'], ['Ġt', 'he'], ['a', 't'], ['Ġ', 's'], ['Ġs', 'at'], ['o', 'n'], ['Ġ', 'on'], ['Ġ', 'c'], ['Ġc', 'at']];

/**
 * The tokenizer.json of a byte-level BPE whose base vocabulary is the bytes of `text`
 * (ids in byte order), then one id per merge, then `<|endoftext|>`.
 */
export function byteLevelBpe(text: string): { json: object; vocabSize: number; endOfText: number } {
  const chars = byteChars();
  const vocab: Record<string, number> = {};
  const bytes = [...new Set(new TextEncoder().encode(text))].sort((a, b) => a - b);
  for (const b of bytes) vocab[chars.get(b)!] = Object.keys(vocab).length;
  for (const [a, b] of MERGES) vocab[a + b] = Object.keys(vocab).length;
  const endOfText = Object.keys(vocab).length;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: endOfText, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false,
      vocab, merges: MERGES.map(([a, b]) => `${a} ${b}`),
    },
  };
  return { json, vocabSize: endOfText + 1, endOfText };
}

/** Writes `byteLevelBpe(text)` to `file`; returns its number of ids. */
export function writeTokenizer(file: string, text: string): number {
  const t = byteLevelBpe(text);
  writeFileSync(file, JSON.stringify(t.json));
  return t.vocabSize;
}

/** Some English-like lines that the merges above fit. */
export const TEXT = [
  'the cat sat on the mat.',
  'the dog sat on the log, and the cat sat on the dog.',
  'then the cat sat on the hat; the hat sat on the cat.',
  'a cat, a hat, a mat: that is the set.',
].join('\n').repeat(6);
