/**
 * Byte-level tokenizers: text is read as UTF-8 bytes and each byte becomes one id, so
 * any file tokenizes and no merge table is needed.
 *
 * - `byte`: vocab 257. Ids 0–255 are the bytes themselves; 256 is BOS.
 * - `char64`: vocab 64, for the d_vocab-64 models of TRAINING-NOTES. Id 0 is BOS (as in
 *   the synthetic data); ASCII letters are case-folded; ids 1–62 are the 62 most useful
 *   symbols (space, newline, a–z, 0–9 and the 24 most frequent ASCII punctuation marks),
 *   numbered in decreasing frequency in the bundled corpus (data/corpus), so low ids are
 *   common ones, as in the synthetic data's Zipf noise; id 63 is every other byte
 *   (tabs, other punctuation, each byte of a non-ASCII character).
 *
 * A corpus file is read whole through one of them (`readCorpus`) for training batches
 * and for the bigram counts of bigram_kl.
 */
import { HeadsweepError, shownPath } from '../errors.ts';
import { readProblem, readRegularFile } from '../files.ts';

export const TOKENIZER_NAMES = ['byte', 'char64'] as const;
export type TokenizerName = (typeof TOKENIZER_NAMES)[number];

export interface Tokenizer {
  name: TokenizerName;
  /** Ids run over [0, vocabSize): the model's d_vocab must be at least this. */
  vocabSize: number;
  bos: number;
  /** Text or raw bytes -> ids, without BOS. */
  encode(text: string | Uint8Array): Int32Array;
  /** Ids -> text; BOS is dropped. */
  decode(ids: ArrayLike<number>): string;
}

function bytesOf(text: string | Uint8Array): Uint8Array {
  return typeof text === 'string' ? new TextEncoder().encode(text) : text;
}

const byteTokenizer: Tokenizer = {
  name: 'byte',
  vocabSize: 257,
  bos: 256,
  encode: (text) => Int32Array.from(bytesOf(text)),
  decode: (ids) => new TextDecoder().decode(Uint8Array.from(Array.from(ids).filter((id) => id !== 256))),
};

/** char64 ids 1..62, in order. */
const CHAR64_SYMBOLS = ' etasonri\ncludpmh`.g/fb)(-yw,v\':#k;=x"*[]jq{}0>1|2z<9_857346\\$';
const CHAR64_OTHER = 63;

const char64Ids = (() => {
  const table = new Int32Array(256).fill(CHAR64_OTHER);
  for (let i = 0; i < CHAR64_SYMBOLS.length; i++) table[CHAR64_SYMBOLS.charCodeAt(i)] = i + 1;
  for (let b = 0x41; b <= 0x5a; b++) table[b] = table[b + 0x20]; // A–Z fold to a–z
  return table;
})();

const char64Tokenizer: Tokenizer = {
  name: 'char64',
  vocabSize: 64,
  bos: 0,
  encode: (text) => Int32Array.from(bytesOf(text), (b) => char64Ids[b]),
  decode: (ids) => Array.from(ids, (id) => (id === 0 ? '' : id === CHAR64_OTHER ? '\uFFFD' : CHAR64_SYMBOLS[id - 1])).join(''),
};

export const TOKENIZERS: Record<TokenizerName, Tokenizer> = { byte: byteTokenizer, char64: char64Tokenizer };

/** Reads a text file and tokenizes it whole (no BOS). */
export function readCorpus(file: string, tokenizer: TokenizerName): Int32Array {
  let bytes: Uint8Array;
  try {
    bytes = readRegularFile(file);
  } catch (err) {
    throw new HeadsweepError(`${shownPath(file)}: cannot read corpus: ${readProblem(err)}`, { stage: 'load', file, cause: err });
  }
  return TOKENIZERS[tokenizer].encode(bytes);
}
