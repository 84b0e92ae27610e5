/**
 * HuggingFace GPT-2 (`GPT2LMHeadModel`, model_type `gpt2`): CHECKPOINT-FORMATS.md §1.
 * Conv1D weights are stored [in, out]; c_attn packs Q, K, V side by side in its columns.
 */
import { z } from 'zod';
import type { ModelConfig } from '../../model/config.ts';
import { from, type Conversion, type Recipe } from '../convert.ts';
import type { StoredTensor } from '../read.ts';
import { configProblem, headSize, parseWith, withBuffers, type Family, type WrittenConfig } from './family.ts';

/** `GPT2Config`'s fields and defaults ([HF] configuration_gpt2.py). */
const Gpt2Config = z.looseObject({
  n_embd: z.number().int().positive().default(768),
  n_head: z.number().int().positive().default(12),
  n_layer: z.number().int().min(0).default(12),
  n_positions: z.number().int().positive().default(1024),
  n_ctx: z.number().int().positive().optional(),
  n_inner: z.number().int().positive().nullable().optional(),
  vocab_size: z.number().int().positive().default(50257),
  activation_function: z.string().default('gelu_new'),
  layer_norm_epsilon: z.number().positive().default(1e-5),
  scale_attn_by_inverse_layer_idx: z.boolean().default(false),
  add_cross_attention: z.boolean().default(false),
  bos_token_id: z.number().int().min(0).nullable().default(50256),
});
type Gpt2Config = z.infer<typeof Gpt2Config> & { w: WrittenConfig };

/** Causal-mask buffers older checkpoints carry; `c_attn.bias` is a weight, hence the block prefix. */
const BUFFER = /(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/;

export const gpt2: Family<Gpt2Config> = {
  name: 'gpt2',
  version: 1,
  title: 'HuggingFace GPT-2 (GPT2LMHeadModel)',
  parse(w) {
    const p = { ...parseWith(Gpt2Config, w), w };
    if (p.add_cross_attention) configProblem(w, 'add_cross_attention', 'true: cross-attention is not part of a language model headsweep scores');
    return p;
  },
  tlConfig(p) {
    return {
      d_model: p.n_embd,
      n_heads: p.n_head,
      d_head: headSize(p.w, 'n_embd', p.n_embd, 'n_head', p.n_head),
      // HF builds the MLP n_inner wide when set (TL assumes 4·n_embd; the shapes would disagree).
      d_mlp: p.n_inner ?? 4 * p.n_embd,
      n_layers: p.n_layer,
      n_ctx: p.n_ctx ?? p.n_positions,
      eps: p.layer_norm_epsilon,
      d_vocab: p.vocab_size,
      act_fn: p.activation_function,
      attn_only: false,
      normalization_type: 'LN',
      positional_embedding_type: 'standard',
      scale_attn_by_inverse_layer_idx: p.scale_attn_by_inverse_layer_idx,
      bos_token_id: p.bos_token_id,
      // TL prepends BOS for GPT-2 (default_prepend_bos defaults to True).
      default_prepend_bos: true,
    };
  },
  convert(c: ModelConfig, p, tensors: ReadonlyMap<string, StoredTensor>): Conversion {
    // GPT2LMHeadModel saves the body under `transformer.`; GPT2Model and the hub's files do not.
    const t = tensors.has('transformer.wte.weight') ? 'transformer.' : '';
    const { d_model: D, n_heads: H, d_head: d, d_vocab: V } = c;
    const M = c.d_mlp!;
    const r = new Map<string, Recipe>();
    r.set('embed.W_E', from(`${t}wte.weight`, [V, D]));
    // TL keeps the first n_ctx positions.
    r.set('pos_embed.W_pos', from(`${t}wpe.weight`, [p.n_positions, D], (pos, m) => [pos, m]));
    for (let l = 0; l < c.n_layers; l++) {
      const h = `${t}h.${l}.`;
      const b = `blocks.${l}.`;
      r.set(`${b}ln1.w`, from(`${h}ln_1.weight`, [D]));
      r.set(`${b}ln1.b`, from(`${h}ln_1.bias`, [D]));
      // W_Q[i][m][j] = c_attn.weight[m][i·d + j]; K and V are the next D columns.
      (['Q', 'K', 'V'] as const).forEach((x, q) => {
        r.set(`${b}attn.W_${x}`, from(`${h}attn.c_attn.weight`, [D, 3 * D], (i, m, j) => [m, q * D + i * d + j]));
        r.set(`${b}attn.b_${x}`, from(`${h}attn.c_attn.bias`, [3 * D], (i, j) => [q * D + i * d + j]));
      });
      // W_O[i][j][m] = c_proj.weight[i·d + j][m]: a reshape.
      r.set(`${b}attn.W_O`, from(`${h}attn.c_proj.weight`, [D, D], (i, j, m) => [i * d + j, m]));
      r.set(`${b}attn.b_O`, from(`${h}attn.c_proj.bias`, [D]));
      r.set(`${b}ln2.w`, from(`${h}ln_2.weight`, [D]));
      r.set(`${b}ln2.b`, from(`${h}ln_2.bias`, [D]));
      r.set(`${b}mlp.W_in`, from(`${h}mlp.c_fc.weight`, [D, M]));
      r.set(`${b}mlp.b_in`, from(`${h}mlp.c_fc.bias`, [M]));
      r.set(`${b}mlp.W_out`, from(`${h}mlp.c_proj.weight`, [M, D]));
      r.set(`${b}mlp.b_out`, from(`${h}mlp.c_proj.bias`, [D]));
    }
    r.set('ln_final.w', from(`${t}ln_f.weight`, [D]));
    r.set('ln_final.b', from(`${t}ln_f.bias`, [D]));
    // lm_head is tied to wte and usually not stored; W_U[m][v] = wte[v][m].
    const head = tensors.has('lm_head.weight') ? 'lm_head.weight' : `${t}wte.weight`;
    r.set('unembed.W_U', from(head, [V, D], (m, v) => [v, m]));
    return withBuffers(r, BUFFER, 'the GPT-2 conversion');
  },
};
