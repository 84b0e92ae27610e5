/**
 * nanoGPT's `ckpt.pt` (karpathy/nanoGPT train.py): CHECKPOINT-FORMATS.md §7. A torch
 * archive whose pickle is `{model, optimizer, model_args, iter_num, best_val_loss, config}`;
 * only `model` holds weights, `model_args` is the config and `iter_num` the step. The
 * model is GPT-2 with nn.Linear weights ([out, in]) and exact-erf GELU.
 */
import { z } from 'zod';
import type { ModelConfig } from '../../model/config.ts';
import { from, ZEROS, type Conversion, type Recipe } from '../convert.ts';
import type { StoredTensor } from '../read.ts';
import { headSize, parseWith, withBuffers, type Family, type WrittenConfig } from './family.ts';

/** nanoGPT's GPTConfig as `model_args` records it (model.py; `bias` defaults to True there). */
const ModelArgs = z.looseObject({
  n_layer: z.number().int().min(0),
  n_head: z.number().int().positive(),
  n_embd: z.number().int().positive(),
  block_size: z.number().int().positive(),
  vocab_size: z.number().int().positive(),
  bias: z.boolean().default(true),
});
type ModelArgs = z.infer<typeof ModelArgs> & { w: WrittenConfig };

/** `torch.compile` wraps the model, and its state dict keys then start with this. */
const COMPILED_PREFIX = '_orig_mod.';

/** The causal-mask buffer of torch < 2 runs (`attn.c_attn.bias` is a weight, hence the block prefix). */
const BUFFER = /(^|\.)h\.\d+\.attn\.bias$/;

export const nanogpt: Family<ModelArgs> = {
  name: 'nanogpt',
  version: 1,
  title: 'nanoGPT ckpt.pt',
  parse: (w) => ({ ...parseWith(ModelArgs, w), w }),
  tlConfig(p) {
    return {
      d_model: p.n_embd,
      n_heads: p.n_head,
      d_head: headSize(p.w, 'n_embd', p.n_embd, 'n_head', p.n_head),
      d_mlp: 4 * p.n_embd,
      n_layers: p.n_layer,
      n_ctx: p.block_size,
      d_vocab: p.vocab_size,
      // nn.GELU(): the exact erf form, not GPT-2's tanh approximation. F.layer_norm's eps is 1e-5.
      act_fn: 'gelu',
      eps: 1e-5,
      attn_only: false,
      normalization_type: 'LN',
      positional_embedding_type: 'standard',
      // nanoGPT trains on documents separated by <|endoftext|>, with no BOS of their own.
      default_prepend_bos: false,
    };
  },
  convert(c: ModelConfig, p, tensors: ReadonlyMap<string, StoredTensor>): Conversion {
    const t = [...tensors.keys()].some((k) => k.startsWith(COMPILED_PREFIX)) ? COMPILED_PREFIX : '';
    const { d_model: D, d_head: d, d_vocab: V } = c;
    const M = c.d_mlp!;
    // bias: false leaves every Linear and LayerNorm without a bias: the LayerNorm ones read as zeros.
    const bias = (name: string, shape: number[], index?: (...i: number[]) => number[]): Recipe | undefined => (p.bias ? from(name, shape, index) : undefined);
    const r = new Map<string, Recipe>();
    const set = (key: string, recipe: Recipe | undefined) => {
      if (recipe !== undefined) r.set(key, recipe);
    };
    set('embed.W_E', from(`${t}transformer.wte.weight`, [V, D]));
    set('pos_embed.W_pos', from(`${t}transformer.wpe.weight`, [p.block_size, D]));
    const norm = (key: string, name: string) => {
      set(`${key}.w`, from(`${name}.weight`, [D]));
      set(`${key}.b`, p.bias ? from(`${name}.bias`, [D]) : ZEROS);
    };
    for (let l = 0; l < c.n_layers; l++) {
      const h = `${t}transformer.h.${l}.`;
      const b = `blocks.${l}.`;
      norm(`${b}ln1`, `${h}ln_1`);
      // W_Q[i][m][j] = c_attn.weight[i·d + j][m] (rows 0:D; K from D, V from 2D).
      (['Q', 'K', 'V'] as const).forEach((x, q) => {
        set(`${b}attn.W_${x}`, from(`${h}attn.c_attn.weight`, [3 * D, D], (i, m, j) => [q * D + i * d + j, m]));
        set(`${b}attn.b_${x}`, bias(`${h}attn.c_attn.bias`, [3 * D], (i, j) => [q * D + i * d + j]));
      });
      // W_O[i][j][m] = c_proj.weight[m][i·d + j].
      set(`${b}attn.W_O`, from(`${h}attn.c_proj.weight`, [D, D], (i, j, m) => [m, i * d + j]));
      set(`${b}attn.b_O`, bias(`${h}attn.c_proj.bias`, [D]));
      norm(`${b}ln2`, `${h}ln_2`);
      set(`${b}mlp.W_in`, from(`${h}mlp.c_fc.weight`, [M, D], (m, k) => [k, m]));
      set(`${b}mlp.b_in`, bias(`${h}mlp.c_fc.bias`, [M]));
      set(`${b}mlp.W_out`, from(`${h}mlp.c_proj.weight`, [D, M], (k, m) => [m, k]));
      set(`${b}mlp.b_out`, bias(`${h}mlp.c_proj.bias`, [D]));
    }
    norm('ln_final', `${t}transformer.ln_f`);
    // lm_head is tied to wte (one storage in the pickle); W_U[m][v] = lm_head.weight[v][m].
    const head = tensors.has(`${t}lm_head.weight`) ? `${t}lm_head.weight` : `${t}transformer.wte.weight`;
    set('unembed.W_U', from(head, [V, D], (m, v) => [v, m]));
    return withBuffers(r, BUFFER, 'the nanoGPT conversion', ' in model');
  },
};
