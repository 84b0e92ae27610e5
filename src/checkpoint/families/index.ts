/**
 * The checkpoint families, and which one a HuggingFace `config.json` names. Adding a
 * family is its file plus its lines here.
 */
import { checkpointError, quote } from '../../errors.ts';
import type { Family, FamilyName } from './family.ts';
import { gpt2 } from './gpt2.ts';
import { llama, LLAMA_MODEL_TYPES } from './llama.ts';
import { nanogpt } from './nanogpt.ts';
import { neox } from './neox.ts';
import { tl } from './tl.ts';

export { FAMILY_NAMES, type Family, type FamilyName, type WrittenConfig } from './family.ts';

export const FAMILIES: Record<FamilyName, Family> = { tl, gpt2, neox, llama, nanogpt } as Record<FamilyName, Family>;

/** HuggingFace `model_type` → family. */
const MODEL_TYPES: Record<string, FamilyName> = {
  gpt2: 'gpt2',
  gpt_neox: 'neox',
  ...Object.fromEntries(LLAMA_MODEL_TYPES.map((t) => [t, 'llama'])),
};

/** HuggingFace `architectures[0]` → family, for configs without a model_type. */
const ARCHITECTURES: Record<string, FamilyName> = {
  GPT2LMHeadModel: 'gpt2',
  GPTNeoXForCausalLM: 'neox',
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'llama',
  Qwen2ForCausalLM: 'llama',
};

/**
 * The family a config.json names through `model_type` or `architectures`; null when it
 * names neither (a TL or Neel config). A model type headsweep does not read is an error.
 */
export function familyOfHfConfig(file: string, value: Record<string, unknown>): Family | null {
  const type = value.model_type;
  const archs = Array.isArray(value.architectures) ? value.architectures.filter((a): a is string => typeof a === 'string') : [];
  if (type !== undefined) {
    const name = typeof type === 'string' ? MODEL_TYPES[type] : undefined;
    if (name === undefined) {
      throw checkpointError(
        file,
        `model_type ${quote(type)} is not a family headsweep reads (it reads ${Object.keys(MODEL_TYPES).join(', ')}); if the model is one of those under another name, force the family (${Object.keys(FAMILIES).join(', ')})`,
        'model_type',
      );
    }
    return FAMILIES[name];
  }
  const arch = archs.find((a) => Object.hasOwn(ARCHITECTURES, a));
  if (arch !== undefined) return FAMILIES[ARCHITECTURES[arch]];
  if (archs.length > 0) {
    throw checkpointError(file, `architectures ${quote(archs)} name no family headsweep reads (it reads ${Object.keys(ARCHITECTURES).join(', ')})`, 'architectures');
  }
  return null;
}
