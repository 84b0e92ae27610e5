/**
 * `repeated_random` prompt sets (METRICS.md §3, after Olsson et al. 2022): each sequence
 * is a block of `length` distinct random ids repeated `repeats` times, after BOS. A
 * repeated block is where induction heads show themselves: from the second repeat on,
 * every token has an earlier copy whose successor predicts the next token.
 *
 * Generation is a pure function of (spec, model config). The exact algorithm, so the
 * tokens can be reproduced anywhere:
 *   1. The allowed ids are [lo, hi) (`token_range`, default [0, V) with V the ids of the
 *      tokenizer when one is known, else d_vocab) minus the model's bos_token_id and the
 *      prepended BOS id, in increasing order; call their count n and the i-th of them id(i).
 *      The tokenizer is the prompt set's `tokenizer`, else the tokenizer.json beside the
 *      run's weights: embedding matrices are often padded past the ids a tokenizer can
 *      produce (Pythia: 50304 rows, 50277 ids), and rows no text ever reaches are untrained.
 *   2. One generator per prompt set: pure-rand xoroshiro128plus(seed).
 *   3. For each of the `count` sequences in order: draw `length` indices with
 *      `sampleDistinct(rng, n, length)` (the first `length` steps of a Fisher–Yates
 *      shuffle using pure-rand `uniformInt(rng, i, n-1)`), map them through id(i), and
 *      write [BOS?] + block × repeats.
 */
import type { ModelConfig } from '../model/config.ts';
import { issueLines, promptError } from '../errors.ts';
import { resolveBos } from './bos.ts';
import { sampleDistinct, seededRng } from './rng.ts';
import { promptTokenizer } from './tokenizer.ts';
import { RepeatedRandomSpecSchema, type PromptSet, type RepeatedRandomSpec } from './types.ts';

export interface RepeatedRandomOptions {
  /** Folder a relative `tokenizer` resolves against (default: the working directory). */
  baseDir?: string;
  /** Ids of the tokenizer beside the model's weights, when it has one: the default range stops there. */
  tokenizerIds?: number | null;
}

/** The end of the default range: the ids of the prompt set's tokenizer, else of the model's, else d_vocab. */
function vocabularyEnd(where: string, tokenizer: string | undefined, c: ModelConfig, opts: RepeatedRandomOptions): number {
  if (tokenizer === undefined) return Math.min(c.d_vocab, opts.tokenizerIds ?? c.d_vocab);
  let ids: number;
  try {
    ids = promptTokenizer(tokenizer, opts.baseDir ?? process.cwd()).vocabSize;
  } catch (err) {
    throw promptError(where, (err as Error).message);
  }
  if (ids > c.d_vocab) throw promptError(where, `tokenizer '${tokenizer}' has ${ids} ids but the model's d_vocab is ${c.d_vocab}`);
  return ids;
}

export function repeatedRandom(raw: RepeatedRandomSpec, c: ModelConfig, opts: RepeatedRandomOptions = {}): PromptSet {
  const where = `prompt set '${raw.name}'`;
  const parsed = RepeatedRandomSpecSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = issueLines(parsed.error.issues);
    throw promptError(where, `invalid repeated_random spec: ${problems.join('; ')}`);
  }
  const spec = parsed.data;
  const bos = resolveBos(where, spec.bos, c);
  const [lo, hi] = spec.token_range ?? [0, vocabularyEnd(where, spec.tokenizer, c, opts)];
  if (lo >= hi || hi > c.d_vocab) {
    throw promptError(where, `token_range [${lo}, ${hi}) is not a non-empty part of the vocabulary [0, ${c.d_vocab})`);
  }
  const excluded = [...new Set([c.bos_token_id, bos])]
    .filter((id): id is number => id !== null && id !== undefined && id >= lo && id < hi)
    .sort((a, b) => a - b);
  const n = hi - lo - excluded.length;
  if (spec.length > n) {
    const without = excluded.length > 0 ? ` (without BOS ${excluded.join(', ')})` : '';
    throw promptError(where, `length ${spec.length} is larger than the ${n} distinct ids in token_range [${lo}, ${hi})${without}`);
  }
  const prefix = bos === null ? 0 : 1;
  const total = prefix + spec.length * spec.repeats;
  if (total > c.n_ctx) {
    throw promptError(where, `sequences of ${prefix ? '1 + ' : ''}${spec.length} × ${spec.repeats} = ${total} tokens exceed the model's n_ctx ${c.n_ctx}`);
  }

  const idOf = (index: number): number => {
    let id = lo + index;
    for (const e of excluded) if (id >= e) id++;
    return id;
  };
  const rng = seededRng(spec.seed);
  const sequences: Int32Array[] = [];
  for (let s = 0; s < spec.count; s++) {
    const block = sampleDistinct(rng, n, spec.length).map(idOf);
    const seq = new Int32Array(total);
    if (bos !== null) seq[0] = bos;
    for (let r = 0; r < spec.repeats; r++) seq.set(block, prefix + r * spec.length);
    sequences.push(seq);
  }
  return { name: spec.name, sequences };
}
