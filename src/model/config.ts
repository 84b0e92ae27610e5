/**
 * The model config (METRICS.md §1): one strict internal description of a transformer,
 * kept apart from how any file spells it.
 *
 * Two layers:
 * - `TlConfigSchema`: the TransformerLens `HookedTransformerConfig` spelling, with its
 *   defaults. A TL config dump carries dozens of fields; those that do not change the
 *   computation are ignored, those that do and that headsweep does not implement are
 *   errors (`UNIMPLEMENTED`), never a silent wrong answer.
 * - `ModelConfig`: every field resolved (no "null means d_head" left for the reader),
 *   which is what the forward pass, the scores and the tables read.
 *
 * Checkpoint families (src/checkpoint/families/) turn what a trainer wrote into the TL
 * spelling; `parseModelConfig` turns that into a `ModelConfig`.
 */
import { z } from 'zod';
import { issueLines } from '../errors.ts';

/** Activation functions the MLP implements (METRICS.md §1; `gelu_pytorch_tanh` is `gelu_new`). */
export const ACT_FNS = ['gelu_new', 'gelu', 'gelu_fast', 'gelu_pytorch_tanh', 'relu', 'silu'] as const;
export type ActFn = (typeof ACT_FNS)[number];

export const NORMALIZATION_TYPES = ['LN', 'LNPre', 'RMS', 'RMSPre'] as const;
/** null: no normalisation. */
export type NormalizationType = (typeof NORMALIZATION_TYPES)[number] | null;

export const POSITIONAL_EMBEDDING_TYPES = ['standard', 'shortformer', 'rotary'] as const;
export type PositionalEmbeddingType = (typeof POSITIONAL_EMBEDDING_TYPES)[number];

/** The largest dimensions a config may name: far past any real model, small enough that shape arithmetic stays exact. */
export const DIMENSION_LIMITS = {
  n_layers: 4096,
  n_heads: 4096,
  d_model: 1 << 20,
  d_head: 1 << 16,
  d_vocab: 1 << 24,
  n_ctx: 1 << 20,
  d_mlp: 1 << 22,
} as const;

const dim = (max: number) => z.number().int().positive().max(max);

/**
 * The TL spelling, fields and defaults as METRICS.md §1 gives them. Loose: unknown fields
 * pass through here and are checked against `UNIMPLEMENTED` by `parseModelConfig`.
 * The string-valued choices are plain strings here so that an unimplemented value gets
 * headsweep's own message (field, value, what is implemented), not a generic enum error.
 */
export const TlConfigShape = {
  n_layers: z.number().int().min(0).max(DIMENSION_LIMITS.n_layers),
  n_heads: dim(DIMENSION_LIMITS.n_heads),
  d_model: dim(DIMENSION_LIMITS.d_model),
  d_head: dim(DIMENSION_LIMITS.d_head),
  d_vocab: dim(DIMENSION_LIMITS.d_vocab),
  n_ctx: dim(DIMENSION_LIMITS.n_ctx),
  attn_only: z.boolean().default(true),
  /** Default (TL): 4 · d_model when the model has MLPs. */
  d_mlp: dim(DIMENSION_LIMITS.d_mlp).nullable().optional(),
  act_fn: z.string().nullable().optional(),
  gated_mlp: z.boolean().default(false),
  parallel_attn_mlp: z.boolean().default(false),
  normalization_type: z.string().nullable().default('LN'),
  positional_embedding_type: z.string().default('standard'),
  /** Default: d_head. */
  rotary_dim: z.number().int().positive().nullable().optional(),
  rotary_base: z.number().positive().max(1e12).default(10000),
  rotary_adjacent_pairs: z.boolean().default(false),
  /** null: every query head has its own key/value head. */
  n_key_value_heads: dim(DIMENSION_LIMITS.n_heads).nullable().optional(),
  scale_attn_by_inverse_layer_idx: z.boolean().default(false),
  /** Bounded so that it stays a small normal float32: a huge eps flattens every norm's output, one that rounds to 0 divides by 0. */
  eps: z.number().min(1e-30).max(1).default(1e-5),
  bos_token_id: z.number().int().min(0).nullable().optional(),
  /** TL: whether prompts get BOS. false drops `bos_token_id` from the internal config. */
  default_prepend_bos: z.boolean().optional(),
};

export const TlConfigSchema = z.looseObject(TlConfigShape);
export type TlConfig = z.infer<typeof TlConfigSchema>;

/** The resolved internal config. Everything that reads a model reads this. */
export interface ModelConfig {
  n_layers: number;
  n_heads: number;
  d_model: number;
  d_head: number;
  d_vocab: number;
  n_ctx: number;
  attn_only: boolean;
  /** null for attention-only models. */
  d_mlp: number | null;
  /** null for attention-only models. */
  act_fn: ActFn | null;
  gated_mlp: boolean;
  parallel_attn_mlp: boolean;
  normalization_type: NormalizationType;
  positional_embedding_type: PositionalEmbeddingType;
  /** Dimensions of each head that rotate: even, ≤ d_head; null unless rotary. */
  rotary_dim: number | null;
  rotary_base: number;
  rotary_adjacent_pairs: boolean;
  /** null: n_heads (no grouped-query attention, K and V stored per query head). */
  n_key_value_heads: number | null;
  scale_attn_by_inverse_layer_idx: boolean;
  eps: number;
  /** The BOS prompts get, or null for none. */
  bos_token_id: number | null;
}

/** The config fields headsweep reads, in a fixed order (for `inspect`, manifests and tables). */
export const MODEL_CONFIG_FIELDS = [
  'n_layers', 'n_heads', 'd_model', 'd_head', 'd_vocab', 'n_ctx',
  'attn_only', 'd_mlp', 'act_fn', 'gated_mlp', 'parallel_attn_mlp',
  'normalization_type', 'positional_embedding_type', 'rotary_dim', 'rotary_base', 'rotary_adjacent_pairs',
  'n_key_value_heads', 'scale_attn_by_inverse_layer_idx', 'eps', 'bos_token_id',
] as const satisfies readonly (keyof ModelConfig)[];

/**
 * TL fields that change the computation in ways headsweep does not implement, with the
 * values that are harmless (TL's defaults). Any other value is an error naming the field.
 */
const UNIMPLEMENTED: Record<string, { harmless: (v: unknown, c: TlConfig) => boolean; what: string }> = {
  attention_dir: { harmless: (v) => v === 'causal', what: 'only causal attention is implemented' },
  attn_types: { harmless: (v) => !Array.isArray(v) || v.every((t) => t === 'global'), what: 'local attention is not implemented' },
  use_local_attn: { harmless: (v) => v === false, what: 'local attention is not implemented' },
  window_size: { harmless: (v) => v === null, what: 'local attention is not implemented' },
  use_attn_scale: { harmless: (v) => v === true, what: 'attention is always scaled by 1/√d_head' },
  attn_scale: {
    harmless: (v, c) => v === -1 || (typeof v === 'number' && Math.abs(v - Math.sqrt(c.d_head)) <= 1e-6 * Math.sqrt(c.d_head)),
    what: 'attention is always scaled by 1/√d_head',
  },
  use_qk_norm: { harmless: (v) => v === false, what: 'Q/K normalisation is not implemented' },
  post_embedding_ln: { harmless: (v) => v === false, what: 'a norm after the embedding is not implemented' },
  final_rms: { harmless: (v) => v === false, what: 'the final norm is always of normalization_type' },
  num_experts: { harmless: (v) => v === null, what: 'mixture-of-experts MLPs are not implemented' },
  use_NTK_by_parts_rope: { harmless: (v) => v === false, what: 'scaled rotary frequencies are not implemented' },
  attn_scores_soft_cap: { harmless: (v) => typeof v === 'number' && v <= 0, what: 'attention soft-capping is not implemented' },
  output_logits_soft_cap: { harmless: (v) => typeof v === 'number' && v <= 0, what: 'logit soft-capping is not implemented' },
  use_normalization_before_and_after: { harmless: (v) => v === false, what: 'norms after attention and MLP are not implemented' },
  relative_attention_num_buckets: { harmless: (v) => v === null, what: 'relative attention biases are not implemented' },
  d_vocab_out: { harmless: (v, c) => v === -1 || v === null || v === c.d_vocab, what: 'the unembedding must map to d_vocab' },
};

function quote(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function notImplemented(field: string, value: unknown, implemented: readonly (string | null)[]): string {
  return `${field}: ${quote(value)} is not implemented (headsweep implements ${implemented.map((v) => quote(v)).join(', ')})`;
}

/** Resolves a parsed TL config; the problems are `field: message` lines. */
function resolve(c: TlConfig): { config: ModelConfig; problems: string[] } {
  const problems: string[] = [];
  const raw = c as Record<string, unknown>;
  for (const [field, rule] of Object.entries(UNIMPLEMENTED)) {
    if (Object.hasOwn(raw, field) && raw[field] !== undefined && !rule.harmless(raw[field], c)) {
      problems.push(`${field}: ${quote(raw[field])} is not implemented (${rule.what})`);
    }
  }

  const norm = c.normalization_type;
  if (norm !== null && !(NORMALIZATION_TYPES as readonly string[]).includes(norm)) {
    problems.push(notImplemented('normalization_type', norm, [...NORMALIZATION_TYPES, null]));
  }
  const pos = c.positional_embedding_type;
  if (!(POSITIONAL_EMBEDDING_TYPES as readonly string[]).includes(pos)) {
    problems.push(notImplemented('positional_embedding_type', pos, POSITIONAL_EMBEDDING_TYPES));
  }

  let dMlp: number | null = null;
  let actFn: ActFn | null = null;
  if (!c.attn_only) {
    dMlp = c.d_mlp ?? 4 * c.d_model;
    if (c.act_fn === undefined || c.act_fn === null) problems.push(`act_fn: required for a model with MLPs (attn_only: false); one of ${ACT_FNS.join(', ')}`);
    else if (!(ACT_FNS as readonly string[]).includes(c.act_fn)) problems.push(notImplemented('act_fn', c.act_fn, ACT_FNS));
    else actFn = c.act_fn as ActFn;
  }

  let rotaryDim: number | null = null;
  if (pos === 'rotary') {
    rotaryDim = c.rotary_dim ?? c.d_head;
    if (rotaryDim % 2 !== 0 || rotaryDim > c.d_head) {
      problems.push(`rotary_dim: ${rotaryDim} must be even and at most d_head ${c.d_head}`);
    }
  }

  const kv = c.n_key_value_heads ?? null;
  if (kv !== null && c.n_heads % kv !== 0) {
    problems.push(`n_key_value_heads: ${kv} does not divide n_heads ${c.n_heads}`);
  }

  let bos = c.bos_token_id ?? null;
  if (c.default_prepend_bos === false) bos = null;
  // A BOS id outside the vocabulary would index past embed.W_E on every prompt.
  if (bos !== null && bos >= c.d_vocab) problems.push(`bos_token_id: ${bos} is not a token id below d_vocab ${c.d_vocab}`);

  const config: ModelConfig = {
    n_layers: c.n_layers,
    n_heads: c.n_heads,
    d_model: c.d_model,
    d_head: c.d_head,
    d_vocab: c.d_vocab,
    n_ctx: c.n_ctx,
    attn_only: c.attn_only,
    d_mlp: dMlp,
    act_fn: actFn,
    // Without MLPs these flags change nothing (as in TL): resolved to false.
    gated_mlp: !c.attn_only && c.gated_mlp,
    parallel_attn_mlp: !c.attn_only && c.parallel_attn_mlp,
    normalization_type: norm as NormalizationType,
    positional_embedding_type: pos as PositionalEmbeddingType,
    rotary_dim: rotaryDim,
    rotary_base: c.rotary_base,
    rotary_adjacent_pairs: pos === 'rotary' && c.rotary_adjacent_pairs,
    n_key_value_heads: kv,
    scale_attn_by_inverse_layer_idx: c.scale_attn_by_inverse_layer_idx,
    eps: c.eps,
    bos_token_id: bos,
  };
  return { config, problems };
}

/** Parses a raw TL-spelled config object; returns the problems as `field: message` lines on failure. */
export function parseModelConfig(raw: unknown): { ok: true; config: ModelConfig } | { ok: false; problems: string[] } {
  const parsed = TlConfigSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, problems: issueLines(parsed.error.issues) };
  const { config, problems } = resolve(parsed.data);
  return problems.length > 0 ? { ok: false, problems } : { ok: true, config };
}

/**
 * A resolved config from TL fields (defaults filled in), for code that builds one by
 * hand (tests, the trainer, the benchmark). Throws on a config `parseModelConfig` rejects.
 */
export function modelConfig(fields: Partial<TlConfig> & Pick<TlConfig, 'n_layers' | 'n_heads' | 'd_model' | 'd_head' | 'd_vocab' | 'n_ctx'>): ModelConfig {
  const parsed = parseModelConfig(fields);
  if (!parsed.ok) throw new Error(`invalid model config: ${parsed.problems.join('; ')}`);
  return parsed.config;
}

/**
 * The zod-side resolution, for schemas that embed a model config (the train config):
 * parse the TL spelling with `TlConfigShape`, then pipe through this.
 */
export function resolveInSchema(c: TlConfig, ctx: z.RefinementCtx): ModelConfig {
  const { config, problems } = resolve(c);
  for (const p of problems) {
    const colon = p.indexOf(':');
    ctx.addIssue({ code: 'custom', path: colon > 0 ? [p.slice(0, colon)] : [], message: colon > 0 ? p.slice(colon + 1).trim() : p });
  }
  return config;
}

/** Key/value heads: n_key_value_heads, or n_heads without grouped-query attention. */
export function kvHeads(c: ModelConfig): number {
  return c.n_key_value_heads ?? c.n_heads;
}

/** One tensor a config implies. `optional`: may be absent from a file, and then reads as zeros (TL's `fill_missing_keys` does the same for biases). */
export interface TensorSpec {
  shape: number[];
  optional: boolean;
}

/**
 * Every TL state-dict key a config implies, with its shape, in TL order (embed → blocks →
 * unembed; within a block ln1, attention, ln2, MLP). METRICS.md §1.
 */
export function expectedTensors(c: ModelConfig): Map<string, TensorSpec> {
  const m = new Map<string, TensorSpec>();
  const need = (key: string, shape: number[]) => m.set(key, { shape, optional: false });
  const bias = (key: string, shape: number[]) => m.set(key, { shape, optional: true });
  const hasGain = c.normalization_type === 'LN' || c.normalization_type === 'RMS';
  const norm = (prefix: string) => {
    if (hasGain) need(`${prefix}.w`, [c.d_model]);
    if (c.normalization_type === 'LN') need(`${prefix}.b`, [c.d_model]);
  };
  const { n_heads: H, d_model: D, d_head: d } = c;
  const gqa = c.n_key_value_heads !== null;
  const kv = kvHeads(c);

  need('embed.W_E', [c.d_vocab, D]);
  if (c.positional_embedding_type !== 'rotary') need('pos_embed.W_pos', [c.n_ctx, D]);
  for (let l = 0; l < c.n_layers; l++) {
    const p = `blocks.${l}`;
    norm(`${p}.ln1`);
    need(`${p}.attn.W_Q`, [H, D, d]);
    need(`${p}.attn.${gqa ? '_W_K' : 'W_K'}`, [kv, D, d]);
    need(`${p}.attn.${gqa ? '_W_V' : 'W_V'}`, [kv, D, d]);
    need(`${p}.attn.W_O`, [H, d, D]);
    bias(`${p}.attn.b_Q`, [H, d]);
    bias(`${p}.attn.${gqa ? '_b_K' : 'b_K'}`, [kv, d]);
    bias(`${p}.attn.${gqa ? '_b_V' : 'b_V'}`, [kv, d]);
    bias(`${p}.attn.b_O`, [D]);
    if (!c.attn_only) {
      const M = c.d_mlp!;
      norm(`${p}.ln2`);
      need(`${p}.mlp.W_in`, [D, M]);
      if (c.gated_mlp) need(`${p}.mlp.W_gate`, [D, M]);
      bias(`${p}.mlp.b_in`, [M]);
      need(`${p}.mlp.W_out`, [M, D]);
      bias(`${p}.mlp.b_out`, [D]);
    }
  }
  norm('ln_final');
  need('unembed.W_U', [D, c.d_vocab]);
  bias('unembed.b_U', [c.d_vocab]);
  return m;
}

/** Expected TL keys and shapes, optional ones included (see `expectedTensors`). */
export function expectedShapes(c: ModelConfig): Map<string, number[]> {
  return new Map([...expectedTensors(c)].map(([key, spec]) => [key, spec.shape]));
}

/** How many tensors a config implies, without building the map (a hostile config may name 10⁹ layers). */
export function tensorCount(c: ModelConfig): { required: number; optional: number } {
  const gains = c.normalization_type === 'LN' ? 2 : c.normalization_type === 'RMS' ? 1 : 0;
  const perLayer = {
    required: gains + 4 + (c.attn_only ? 0 : gains + 2 + (c.gated_mlp ? 1 : 0)),
    optional: 4 + (c.attn_only ? 0 : 2),
  };
  return {
    required: 1 + (c.positional_embedding_type === 'rotary' ? 0 : 1) + c.n_layers * perLayer.required + gains + 1,
    optional: c.n_layers * perLayer.optional + 1,
  };
}

/** TL buffers that may sit in a state dict and carry no weights. */
export function isIgnoredBuffer(key: string): boolean {
  return /^blocks\.\d+\.attn\.(mask|IGNORE|rotary_sin|rotary_cos)$/.test(key) || /(^|\.)hook_/.test(key);
}

/** Number of parameters the config implies (optional biases included). */
export function parameterCount(c: ModelConfig): number {
  let n = 0;
  for (const { shape } of expectedTensors(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}
