/**
 * TransformerLens state dicts: the keys are already TL's (`blocks.0.attn.W_Q`), in a
 * safetensors file (headsweep's own, or any other) or a torch `.pth` (TL's saved
 * checkpoints, NeelNanda/*). The config is TL-spelled (a `HookedTransformerConfig` dict, or
 * headsweep's `__metadata__.config`) or a Neel-style `config.json`, which TL reads through
 * `convert_neel_model_config` (CHECKPOINT-FORMATS.md §3, "TL checkpoints").
 */
import { z } from 'zod';
import { expectedTensors, isIgnoredBuffer, type ModelConfig } from '../../model/config.ts';
import { from, type Conversion, type Recipe } from '../convert.ts';
import type { StoredTensor } from '../read.ts';
import { configProblem, parseWith, type Family, type WrittenConfig } from './family.ts';
import { quote } from '../../errors.ts';

/** The keys `convert_neel_model_config` reads ([TL] loading_from_pretrained.py). */
const NeelConfig = z.looseObject({
  d_model: z.number(),
  n_layers: z.number(),
  d_mlp: z.number().nullable().optional(),
  d_head: z.number(),
  n_heads: z.number(),
  n_ctx: z.number(),
  d_vocab: z.number(),
  act_fn: z.string().nullable().optional(),
  attn_only: z.boolean().default(false),
  final_rms: z.boolean().default(false),
  normalization: z.string().nullable(),
  shortformer_pos: z.boolean().default(false),
  architecture: z.string().optional(),
});

/** A Neel-style config names `normalization` (TL spells it `normalization_type`). */
function isNeelConfig(v: Record<string, unknown>): boolean {
  return !Object.hasOwn(v, 'normalization_type') && (Object.hasOwn(v, 'normalization') || Object.hasOwn(v, 'shortformer_pos'));
}

interface TlWritten {
  w: WrittenConfig;
  tl: Record<string, unknown>;
}

export const tl: Family<TlWritten> = {
  name: 'tl',
  version: 1,
  title: 'TransformerLens state dict',
  parse(w) {
    if (!isNeelConfig(w.value)) return { w, tl: w.value };
    const n = parseWith(NeelConfig, w);
    // The old SoLU models store transposed weights under other names (neel_solu_old.py).
    if (n.architecture === 'neel-solu-old') configProblem(w, 'architecture', "'neel-solu-old' stores weights in another layout, which headsweep does not convert");
    return {
      w,
      tl: {
        d_model: n.d_model, n_layers: n.n_layers, d_mlp: n.d_mlp, d_head: n.d_head, n_heads: n.n_heads, n_ctx: n.n_ctx,
        d_vocab: n.d_vocab, act_fn: n.act_fn, attn_only: n.attn_only, final_rms: n.final_rms,
        normalization_type: n.normalization,
        positional_embedding_type: n.shortformer_pos ? 'shortformer' : 'standard',
      },
    };
  },
  tlConfig: (p) => p.tl,
  convert(c: ModelConfig, _p, tensors: ReadonlyMap<string, StoredTensor>): Conversion {
    // Names are TL's: every tensor the config implies is read as is; optional ones the file lacks read as zeros.
    const recipes = new Map<string, Recipe>();
    for (const [key, { optional }] of expectedTensors(c)) if (!optional || tensors.has(key)) recipes.set(key, from(key));
    return {
      recipes,
      ignored: isIgnoredBuffer,
      unexpected: (name) => `unexpected tensor ${quote(name)} for a config with ${c.n_layers} layers and normalization ${c.normalization_type}`,
    };
  },
};
