import { z } from 'zod';
import { issueLines } from '../errors.ts';

/**
 * Model config in TransformerLens `HookedTransformerConfig` names (METRICS.md §1).
 * Loose on purpose: a config dumped by TransformerLens carries dozens of other fields
 * (act_fn, d_mlp, ...) that do not change an attention-only forward pass.
 */
export const ModelConfigSchema = z.looseObject({
  n_layers: z.number().int().min(0),
  n_heads: z.number().int().positive(),
  d_model: z.number().int().positive(),
  d_head: z.number().int().positive(),
  d_vocab: z.number().int().positive(),
  n_ctx: z.number().int().positive(),
  attn_only: z.boolean().default(true),
  normalization_type: z.enum(['LN', 'LNPre']).nullable().default('LN'),
  positional_embedding_type: z.enum(['standard', 'shortformer']).default('standard'),
  eps: z.number().positive().default(1e-5),
  bos_token_id: z.number().int().min(0).nullable().optional(),
});

export type ModelConfig = z.infer<typeof ModelConfigSchema>;

/** The config fields headsweep reads, in a fixed order (for manifests and tables). */
export const MODEL_CONFIG_FIELDS = [
  'n_layers', 'n_heads', 'd_model', 'd_head', 'd_vocab', 'n_ctx',
  'normalization_type', 'positional_embedding_type', 'eps', 'bos_token_id',
] as const;

/** Parses a raw config object; returns the zod issues as `path: message` lines on failure. */
export function parseModelConfig(raw: unknown): { ok: true; config: ModelConfig } | { ok: false; problems: string[] } {
  const parsed = ModelConfigSchema.safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      problems: issueLines(parsed.error.issues),
    };
  }
  const config = parsed.data;
  const problems: string[] = [];
  if (!config.attn_only) problems.push('attn_only: headsweep scores attention-only models (attn_only must be true)');
  // A BOS id outside the vocabulary would index past embed.W_E on every prompt.
  if (config.bos_token_id != null && config.bos_token_id >= config.d_vocab) {
    problems.push(`bos_token_id: ${config.bos_token_id} is not a token id below d_vocab ${config.d_vocab}`);
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, config };
}

/** Expected TL state-dict keys and shapes for a config (METRICS.md §1). */
export function expectedShapes(c: ModelConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set('embed.W_E', [c.d_vocab, c.d_model]);
  m.set('pos_embed.W_pos', [c.n_ctx, c.d_model]);
  for (let l = 0; l < c.n_layers; l++) {
    const p = `blocks.${l}`;
    if (c.normalization_type === 'LN') {
      m.set(`${p}.ln1.w`, [c.d_model]);
      m.set(`${p}.ln1.b`, [c.d_model]);
    }
    for (const w of ['W_Q', 'W_K', 'W_V']) m.set(`${p}.attn.${w}`, [c.n_heads, c.d_model, c.d_head]);
    m.set(`${p}.attn.W_O`, [c.n_heads, c.d_head, c.d_model]);
    for (const b of ['b_Q', 'b_K', 'b_V']) m.set(`${p}.attn.${b}`, [c.n_heads, c.d_head]);
    m.set(`${p}.attn.b_O`, [c.d_model]);
  }
  if (c.normalization_type === 'LN') {
    m.set('ln_final.w', [c.d_model]);
    m.set('ln_final.b', [c.d_model]);
  }
  m.set('unembed.W_U', [c.d_model, c.d_vocab]);
  m.set('unembed.b_U', [c.d_vocab]);
  return m;
}

/** TL buffers that may sit in a state dict and carry no weights. */
export function isIgnoredBuffer(key: string): boolean {
  return /^blocks\.\d+\.attn\.(mask|IGNORE)$/.test(key) || /(^|\.)hook_/.test(key);
}

/** Number of trainable parameters the config implies. */
export function parameterCount(c: ModelConfig): number {
  let n = 0;
  for (const shape of expectedShapes(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}
