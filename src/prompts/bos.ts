/** Which BOS id a prompt set prepends: its `bos`, else the model's (the family's convention). */
import { promptError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';

/**
 * `undefined`: the model's bos_token_id (none when it has none); `false`: none; `true`: the
 * model's, which must exist; an id: that id, inside the vocabulary. null for no BOS.
 */
export function resolveBos(where: string, bos: boolean | number | undefined, c: ModelConfig): number | null {
  const modelBos = c.bos_token_id ?? null;
  if (bos === undefined) return modelBos;
  if (bos === false) return null;
  if (bos === true) {
    if (modelBos === null) throw promptError(where, 'bos is true but the model config has no bos_token_id; give the id as bos: <id>');
    return modelBos;
  }
  if (bos >= c.d_vocab) throw promptError(where, `bos id ${bos} is outside the vocabulary [0, ${c.d_vocab})`);
  return bos;
}
