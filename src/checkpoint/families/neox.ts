/**
 * HuggingFace GPT-NeoX and Pythia (`GPTNeoXForCausalLM`, model_type `gpt_neox`):
 * CHECKPOINT-FORMATS.md §2. Linear weights are stored [out, in]; query_key_value is
 * interleaved per head (head i's q, k, v rows are consecutive blocks of d).
 */
import { z } from 'zod';
import type { ModelConfig } from '../../model/config.ts';
import { from, type Conversion, type Recipe } from '../convert.ts';
import type { StoredTensor } from '../read.ts';
import { headSize, parseWith, refuseRopeScaling, withBuffers, type Family, type WrittenConfig } from './family.ts';

/** `GPTNeoXConfig`'s fields and defaults ([HF] configuration_gpt_neox.py, v4 and v5 spellings). */
const NeoxConfig = z.looseObject({
  hidden_size: z.number().int().positive().default(6144),
  num_attention_heads: z.number().int().positive().default(64),
  num_hidden_layers: z.number().int().min(0).default(44),
  intermediate_size: z.number().int().positive().default(24576),
  max_position_embeddings: z.number().int().positive().default(2048),
  vocab_size: z.number().int().positive().default(50432),
  hidden_act: z.string().default('gelu'),
  layer_norm_eps: z.number().positive().default(1e-5),
  rotary_pct: z.number().positive().max(1).optional(),
  partial_rotary_factor: z.number().positive().max(1).optional(),
  rotary_emb_base: z.number().positive().optional(),
  rope_theta: z.number().positive().optional(),
  rope_parameters: z.looseObject({
    rope_type: z.string().optional(),
    rope_theta: z.number().positive().optional(),
    partial_rotary_factor: z.number().positive().max(1).optional(),
  }).optional(),
  rope_scaling: z.unknown().optional(),
  use_parallel_residual: z.boolean().default(true),
  tie_word_embeddings: z.boolean().default(false),
  attention_bias: z.boolean().default(true),
});
type NeoxConfig = z.infer<typeof NeoxConfig> & { w: WrittenConfig };

/** Buffers older checkpoints carry: causal masks and rotary frequency tables. */
const BUFFER = /(\.attention\.(bias|masked_bias)|(^|\.)rotary_emb\.inv_freq)$/;

export const neox: Family<NeoxConfig> = {
  name: 'neox',
  version: 1,
  title: 'HuggingFace GPT-NeoX / Pythia (GPTNeoXForCausalLM)',
  parse(w) {
    const p = { ...parseWith(NeoxConfig, w), w };
    refuseRopeScaling(w, p.rope_scaling, p.rope_parameters);
    return p;
  },
  tlConfig(p) {
    const d = headSize(p.w, 'hidden_size', p.hidden_size, 'num_attention_heads', p.num_attention_heads);
    const pct = p.rotary_pct ?? p.partial_rotary_factor ?? p.rope_parameters?.partial_rotary_factor ?? 0.25;
    return {
      d_model: p.hidden_size,
      n_heads: p.num_attention_heads,
      d_head: d,
      d_mlp: p.intermediate_size,
      n_layers: p.num_hidden_layers,
      n_ctx: p.max_position_embeddings,
      eps: p.layer_norm_eps,
      d_vocab: p.vocab_size,
      act_fn: p.hidden_act,
      attn_only: false,
      // TL hard-codes parallel for NeoX; HF honours the flag, and so does headsweep.
      parallel_attn_mlp: p.use_parallel_residual,
      normalization_type: 'LN',
      positional_embedding_type: 'rotary',
      // HF: rotary_ndims = int(head_size · rotary_pct).
      rotary_dim: Math.floor(d * pct),
      rotary_base: p.rotary_emb_base ?? p.rope_theta ?? p.rope_parameters?.rope_theta ?? 10000,
      rotary_adjacent_pairs: false,
      // Pythia prompts get no BOS (TL: default_prepend_bos False for GPT-NeoX).
      default_prepend_bos: false,
    };
  },
  convert(c: ModelConfig, p, tensors: ReadonlyMap<string, StoredTensor>): Conversion {
    const { d_model: D, n_heads: H, d_head: d, d_vocab: V } = c;
    const M = c.d_mlp!;
    const r = new Map<string, Recipe>();
    r.set('embed.W_E', from('gpt_neox.embed_in.weight', [V, D]));
    for (let l = 0; l < c.n_layers; l++) {
      const n = `gpt_neox.layers.${l}.`;
      const b = `blocks.${l}.`;
      r.set(`${b}ln1.w`, from(`${n}input_layernorm.weight`, [D]));
      r.set(`${b}ln1.b`, from(`${n}input_layernorm.bias`, [D]));
      // W_t[i][m][j] = query_key_value.weight[i·3d + t·d + j][m]: per head, then transposed.
      (['Q', 'K', 'V'] as const).forEach((x, q) => {
        r.set(`${b}attn.W_${x}`, from(`${n}attention.query_key_value.weight`, [3 * D, D], (i, m, j) => [i * 3 * d + q * d + j, m]));
        if (p.attention_bias) r.set(`${b}attn.b_${x}`, from(`${n}attention.query_key_value.bias`, [3 * D], (i, j) => [i * 3 * d + q * d + j]));
      });
      // W_O[i][j][m] = dense.weight[m][i·d + j].
      r.set(`${b}attn.W_O`, from(`${n}attention.dense.weight`, [D, D], (i, j, m) => [m, i * d + j]));
      if (p.attention_bias) r.set(`${b}attn.b_O`, from(`${n}attention.dense.bias`, [D]));
      r.set(`${b}ln2.w`, from(`${n}post_attention_layernorm.weight`, [D]));
      r.set(`${b}ln2.b`, from(`${n}post_attention_layernorm.bias`, [D]));
      r.set(`${b}mlp.W_in`, from(`${n}mlp.dense_h_to_4h.weight`, [M, D], (m, k) => [k, m]));
      r.set(`${b}mlp.b_in`, from(`${n}mlp.dense_h_to_4h.bias`, [M]));
      r.set(`${b}mlp.W_out`, from(`${n}mlp.dense_4h_to_h.weight`, [D, M], (k, m) => [m, k]));
      r.set(`${b}mlp.b_out`, from(`${n}mlp.dense_4h_to_h.bias`, [D]));
    }
    r.set('ln_final.w', from('gpt_neox.final_layer_norm.weight', [D]));
    r.set('ln_final.b', from('gpt_neox.final_layer_norm.bias', [D]));
    // Untied by default; W_U[m][v] = embed_out.weight[v][m]. No b_U: TL fills zeros.
    const head = p.tie_word_embeddings && !tensors.has('embed_out.weight') ? 'gpt_neox.embed_in.weight' : 'embed_out.weight';
    r.set('unembed.W_U', from(head, [V, D], (m, v) => [v, m]));
    return withBuffers(r, BUFFER, 'the GPT-NeoX conversion');
  },
};
