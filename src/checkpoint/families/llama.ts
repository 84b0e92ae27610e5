/**
 * HuggingFace Llama (`LlamaForCausalLM`), and Mistral and Qwen2 where they are the same
 * model: CHECKPOINT-FORMATS.md §6. RMSNorm, gated SiLU MLP, rotate-half rotary positions
 * on the whole head, grouped-query attention. Linear weights are stored [out, in].
 *
 * The differences that matter here: Qwen2 has q/k/v biases and no BOS; Mistral and Qwen2
 * may use a sliding attention window, which headsweep does not implement.
 */
import { z } from 'zod';
import type { ModelConfig } from '../../model/config.ts';
import { from, type Conversion, type Recipe } from '../convert.ts';
import type { StoredTensor } from '../read.ts';
import { configProblem, headSize, parseWith, refuseRopeScaling, withBuffers, type Family, type WrittenConfig } from './family.ts';

export const LLAMA_MODEL_TYPES = ['llama', 'mistral', 'qwen2'] as const;

/** `LlamaConfig`'s fields and defaults ([HF] configuration_llama.py; Mistral's and Qwen2's where they differ, below). */
const LlamaConfig = z.looseObject({
  model_type: z.string().optional(),
  hidden_size: z.number().int().positive().default(4096),
  num_attention_heads: z.number().int().positive().default(32),
  num_key_value_heads: z.number().int().positive().nullable().optional(),
  head_dim: z.number().int().positive().nullable().optional(),
  num_hidden_layers: z.number().int().min(0).default(32),
  intermediate_size: z.number().int().positive().default(11008),
  max_position_embeddings: z.number().int().positive().default(2048),
  vocab_size: z.number().int().positive().default(32000),
  hidden_act: z.string().default('silu'),
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().default(10000),
  rope_scaling: z.unknown().optional(),
  rope_parameters: z.looseObject({ rope_type: z.string().optional(), rope_theta: z.number().positive().optional() }).optional(),
  partial_rotary_factor: z.number().positive().max(1).optional(),
  tie_word_embeddings: z.boolean().default(false),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  sliding_window: z.number().int().positive().nullable().optional(),
  use_sliding_window: z.boolean().optional(),
  bos_token_id: z.number().int().min(0).nullable().default(1),
});
type LlamaConfig = z.infer<typeof LlamaConfig> & { w: WrittenConfig; qwen2: boolean };

const BUFFER = /(^|\.)rotary_emb\.inv_freq$/;

export const llama: Family<LlamaConfig> = {
  name: 'llama',
  version: 1,
  title: 'HuggingFace Llama / Mistral / Qwen2 (LlamaForCausalLM and the same models)',
  parse(w) {
    const parsed = parseWith(LlamaConfig, w);
    const p = { ...parsed, w, qwen2: parsed.model_type === 'qwen2' };
    refuseRopeScaling(w, p.rope_scaling, p.rope_parameters);
    if (p.partial_rotary_factor !== undefined && p.partial_rotary_factor !== 1) {
      configProblem(w, 'partial_rotary_factor', `${p.partial_rotary_factor}: Llama-family rotary positions on part of a head are not implemented`);
    }
    if (p.mlp_bias) configProblem(w, 'mlp_bias', 'true: a bias on gate_proj has no place in the TL MLP and is not implemented');
    // Mistral's default window is 4096 when the key is absent; Qwen2's applies only with use_sliding_window.
    const window = parsed.model_type === 'mistral' ? (p.sliding_window === undefined ? 4096 : p.sliding_window) : p.qwen2 && p.use_sliding_window === true ? p.sliding_window : null;
    if (window !== null && window !== undefined) {
      configProblem(
        w, 'sliding_window',
        `${window}: sliding-window attention is not implemented; for prompts of at most ${window} tokens attention is the same as full, so setting "sliding_window": null in config.json is exact for them`,
      );
    }
    return p;
  },
  tlConfig(p) {
    const d = p.head_dim ?? headSize(p.w, 'hidden_size', p.hidden_size, 'num_attention_heads', p.num_attention_heads);
    const kv = p.num_key_value_heads ?? p.num_attention_heads;
    return {
      d_model: p.hidden_size,
      n_heads: p.num_attention_heads,
      d_head: d,
      n_key_value_heads: kv === p.num_attention_heads ? null : kv,
      d_mlp: p.intermediate_size,
      n_layers: p.num_hidden_layers,
      n_ctx: p.max_position_embeddings,
      eps: p.rms_norm_eps,
      d_vocab: p.vocab_size,
      act_fn: p.hidden_act,
      attn_only: false,
      gated_mlp: true,
      normalization_type: 'RMS',
      positional_embedding_type: 'rotary',
      rotary_dim: d,
      rotary_base: p.rope_parameters?.rope_theta ?? p.rope_theta,
      rotary_adjacent_pairs: false,
      bos_token_id: p.bos_token_id,
      // TL: Llama and Mistral prompts start with BOS, Qwen2's do not.
      default_prepend_bos: !p.qwen2,
    };
  },
  convert(c: ModelConfig, p, tensors: ReadonlyMap<string, StoredTensor>): Conversion {
    const { d_model: D, n_heads: H, d_head: d, d_vocab: V } = c;
    const M = c.d_mlp!;
    const KV = c.n_key_value_heads ?? H;
    const kvName = (x: 'W_K' | 'W_V' | 'b_K' | 'b_V') => (c.n_key_value_heads === null ? x : `_${x}`);
    const qkvBias = p.attention_bias || p.qwen2;
    const r = new Map<string, Recipe>();
    r.set('embed.W_E', from('model.embed_tokens.weight', [V, D]));
    for (let l = 0; l < c.n_layers; l++) {
      const n = `model.layers.${l}.`;
      const b = `blocks.${l}.`;
      r.set(`${b}ln1.w`, from(`${n}input_layernorm.weight`, [D]));
      // W_Q = q_proj.weight.reshape(H, d, D).transpose(1, 2): W_Q[i][m][j] = q_proj.weight[i·d + j][m].
      const heads = { Q: H, K: KV, V: KV };
      for (const x of ['Q', 'K', 'V'] as const) {
        const proj = `${n}self_attn.${x.toLowerCase()}_proj`;
        const count = heads[x];
        r.set(`${b}attn.${x === 'Q' ? 'W_Q' : kvName(`W_${x}`)}`, from(`${proj}.weight`, [count * d, D], (i, m, j) => [i * d + j, m]));
        if (qkvBias) r.set(`${b}attn.${x === 'Q' ? 'b_Q' : kvName(`b_${x}`)}`, from(`${proj}.bias`, [count * d], (i, j) => [i * d + j]));
      }
      // W_O[i][j][m] = o_proj.weight[m][i·d + j].
      r.set(`${b}attn.W_O`, from(`${n}self_attn.o_proj.weight`, [D, H * d], (i, j, m) => [m, i * d + j]));
      if (p.attention_bias) r.set(`${b}attn.b_O`, from(`${n}self_attn.o_proj.bias`, [D]));
      r.set(`${b}ln2.w`, from(`${n}post_attention_layernorm.weight`, [D]));
      r.set(`${b}mlp.W_gate`, from(`${n}mlp.gate_proj.weight`, [M, D], (m, k) => [k, m]));
      r.set(`${b}mlp.W_in`, from(`${n}mlp.up_proj.weight`, [M, D], (m, k) => [k, m]));
      r.set(`${b}mlp.W_out`, from(`${n}mlp.down_proj.weight`, [D, M], (k, m) => [m, k]));
    }
    r.set('ln_final.w', from('model.norm.weight', [D]));
    // Tied models often store no lm_head; W_U[m][v] = weight[v][m] either way.
    const head = p.tie_word_embeddings && !tensors.has('lm_head.weight') ? 'model.embed_tokens.weight' : 'lm_head.weight';
    r.set('unembed.W_U', from(head, [V, D], (m, v) => [v, m]));
    return withBuffers(r, BUFFER, 'the Llama conversion');
  },
};
