/**
 * Checks a prompt set against the model it is about to run on. Runs before any forward
 * pass, so a bad id or an over-long sequence is a clear error, not a gather out of range.
 */
import type { ModelConfig } from '../model/config.ts';
import { promptError } from '../errors.ts';
import type { PromptSet } from './types.ts';

export function validatePromptSet(set: PromptSet, c: ModelConfig): void {
  const where = `prompt set '${set.name}'`;
  const file = set.origin?.file;
  if (set.sequences.length === 0) throw promptError(where, 'has no sequences', file);
  set.sequences.forEach((seq, i) => {
    const at = set.origin ? `${set.origin.file} line ${set.origin.lines[i]}` : `sequence ${i}`;
    // One token has no next-token loss and no earlier position to attend to.
    if (seq.length < 2) throw promptError(where, `${at}: has ${seq.length} token(s); scoring needs at least 2`, file);
    if (seq.length > c.n_ctx) {
      throw promptError(where, `${at}: has ${seq.length} tokens, more than the model's n_ctx ${c.n_ctx}`, file);
    }
    const bad = seq.findIndex((id) => id < 0 || id >= c.d_vocab);
    if (bad >= 0) {
      throw promptError(where, `${at}: token id ${seq[bad]} at position ${bad} is outside the vocabulary [0, ${c.d_vocab})`, file);
    }
  });
}
