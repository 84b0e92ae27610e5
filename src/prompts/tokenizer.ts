/**
 * The tokenizers a prompt set may name: headsweep's byte-level `byte` and `char64`
 * (src/train/tokenizer.ts), or a model's own HuggingFace `tokenizer.json` (GPT-2's
 * byte-level BPE, Pythia's, Llama's SentencePiece BPE, ...), given as the file or as a
 * model folder holding one, and run by `@huggingface/tokenizers`, the pure-JavaScript port
 * of the `tokenizers` library: no network, no native code.
 *
 * A tokenizer.json never adds special tokens here (its post-processor would prepend
 * Llama's `<s>`): BOS follows the model's family and the prompt set's `bos`, as for every
 * prompt set.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { HeadsweepError, oneLine, shownPath } from '../errors.ts';
import { FileProblem, readRegularFile, TOKENIZER_FILE_BYTES } from '../files.ts';
import { TOKENIZERS, TOKENIZER_NAMES, type TokenizerName } from '../train/tokenizer.ts';

export interface PromptTokenizer {
  /** `byte`, `char64`, or the tokenizer.json's path. */
  label: string;
  /** Ids run over [0, vocabSize): the model's d_vocab must be at least this. */
  vocabSize: number;
  /** The BOS id a builtin tokenizer prepends; null for a tokenizer.json, whose BOS is the model's. */
  bos: number | null;
  /** A file's bytes → ids, without special tokens. */
  encode(bytes: Uint8Array): Int32Array;
  /** How many line breaks the text of one id holds (for the line numbers in messages). */
  newlines(id: number): number;
}

export function isBuiltinTokenizer(name: string): name is TokenizerName {
  return (TOKENIZER_NAMES as readonly string[]).includes(name);
}

/** The tokenizer.json a prompt set's `tokenizer` names: the file itself, or the one in a model folder. */
export function tokenizerJsonPath(value: string, baseDir: string): string {
  const path = resolve(baseDir, value);
  return existsSync(path) && statSync(path).isDirectory() ? join(path, 'tokenizer.json') : path;
}

function newlineCounter(decode: (id: number) => string): (id: number) => number {
  const counts = new Map<number, number>();
  return (id) => {
    let n = counts.get(id);
    if (n === undefined) counts.set(id, (n = decode(id).split('\n').length - 1));
    return n;
  };
}

function builtin(name: TokenizerName): PromptTokenizer {
  const t = TOKENIZERS[name];
  return { label: name, vocabSize: t.vocabSize, bos: t.bos, encode: (bytes) => t.encode(bytes), newlines: newlineCounter((id) => t.decode([id])) };
}

/** Loaded tokenizer.json files by path, kept while their size and mtime stay: a watching sweep plans every poll. */
const loaded = new Map<string, { stamp: string; tokenizer: PromptTokenizer }>();

/** The largest id of the vocabulary and the added tokens, plus one. */
function idCount(t: HfTokenizer): number {
  let top = -1;
  for (const id of t.get_vocab(true).values()) if (id > top) top = id;
  return top + 1;
}

/**
 * A tokenizer.json, with the tokenizer_config.json beside it when there is one. Throws a
 * HeadsweepError naming the file when it is missing or cannot be read as a tokenizer.
 */
export function loadTokenizerJson(file: string): PromptTokenizer {
  let stamp: string;
  try {
    const st = statSync(file);
    stamp = `${st.size}:${st.mtimeMs}`;
  } catch {
    throw new HeadsweepError(`${shownPath(file)}: no such tokenizer.json`, { stage: 'config', file });
  }
  const cached = loaded.get(file);
  if (cached?.stamp === stamp) return cached.tokenizer;
  // Regular files only (a FIFO would block the read), and of a size a tokenizer has
  // (the largest real ones are tens of MB).
  const readJson = (path: string): object => JSON.parse(readRegularFile(path, { bytes: TOKENIZER_FILE_BYTES, what: 'a tokenizer file' }).toString('utf8')) as object;
  let hf: HfTokenizer;
  try {
    const configFile = join(dirname(file), 'tokenizer_config.json');
    hf = new HfTokenizer(readJson(file), existsSync(configFile) ? readJson(configFile) : {});
  } catch (err) {
    const reason = err instanceof FileProblem ? err.message : `${shownPath(file)}: cannot be read as a tokenizer.json (${oneLine((err as Error).message)})`;
    throw new HeadsweepError(reason, { stage: 'config', file, cause: err });
  }
  const text = new TextDecoder();
  const tokenizer: PromptTokenizer = {
    label: file,
    vocabSize: idCount(hf),
    bos: null,
    encode: (bytes) => Int32Array.from(hf.encode(text.decode(bytes), { add_special_tokens: false }).ids),
    newlines: newlineCounter((id) => hf.decode([id], { clean_up_tokenization_spaces: false })),
  };
  loaded.set(file, { stamp, tokenizer });
  return tokenizer;
}

/** A prompt set's `tokenizer`: `byte`, `char64`, or a tokenizer.json (a model folder holding one), relative to `baseDir`. */
export function promptTokenizer(value: string, baseDir: string): PromptTokenizer {
  return isBuiltinTokenizer(value) ? builtin(value) : loadTokenizerJson(tokenizerJsonPath(value, baseDir));
}
