/**
 * Every model config value the engine does not implement is refused with a message
 * naming the field and the value (src/model/config.ts), never run as something else;
 * TransformerLens's harmless defaults for the same fields pass. One test per value.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { writeSafetensors } from '../src/checkpoint/containers/safetensors.ts';
import { parseModelConfig } from '../src/model/config.ts';

/** A valid model with MLPs: 4 heads of 16, so √d_head = 4. */
const BASE = { n_layers: 2, n_heads: 4, d_model: 64, d_head: 16, d_vocab: 50, n_ctx: 32, attn_only: false, d_mlp: 128, act_fn: 'gelu_new' };

function problems(edit: Record<string, unknown>): string[] {
  const parsed = parseModelConfig({ ...BASE, ...edit });
  return parsed.ok ? [] : parsed.problems;
}

describe('unimplemented config values', () => {
  it('the base config is valid', () => {
    expect(problems({})).toEqual([]);
  });

  it.each([
    ['act_fn', 'solu_ln', 'act_fn: "solu_ln" is not implemented (headsweep implements "gelu_new", "gelu", "gelu_fast", "gelu_pytorch_tanh", "relu", "silu")'],
    ['act_fn', 'gelu_quick', 'act_fn: "gelu_quick" is not implemented (headsweep implements "gelu_new", "gelu", "gelu_fast", "gelu_pytorch_tanh", "relu", "silu")'],
    ['positional_embedding_type', 'alibi', 'positional_embedding_type: "alibi" is not implemented (headsweep implements "standard", "shortformer", "rotary")'],
    ['normalization_type', 'LNPost', 'normalization_type: "LNPost" is not implemented (headsweep implements "LN", "LNPre", "RMS", "RMSPre", null)'],
    ['attention_dir', 'bidirectional', 'attention_dir: "bidirectional" is not implemented (only causal attention is implemented)'],
    ['attn_types', ['global', 'local'], 'attn_types: ["global","local"] is not implemented (local attention is not implemented)'],
    ['use_local_attn', true, 'use_local_attn: true is not implemented (local attention is not implemented)'],
    ['window_size', 256, 'window_size: 256 is not implemented (local attention is not implemented)'],
    ['use_attn_scale', false, 'use_attn_scale: false is not implemented (attention is always scaled by 1/√d_head)'],
    ['attn_scale', 8, 'attn_scale: 8 is not implemented (attention is always scaled by 1/√d_head)'],
    ['use_qk_norm', true, 'use_qk_norm: true is not implemented (Q/K normalisation is not implemented)'],
    ['post_embedding_ln', true, 'post_embedding_ln: true is not implemented (a norm after the embedding is not implemented)'],
    ['final_rms', true, 'final_rms: true is not implemented (the final norm is always of normalization_type)'],
    ['num_experts', 8, 'num_experts: 8 is not implemented (mixture-of-experts MLPs are not implemented)'],
    ['use_NTK_by_parts_rope', true, 'use_NTK_by_parts_rope: true is not implemented (scaled rotary frequencies are not implemented)'],
    ['attn_scores_soft_cap', 50, 'attn_scores_soft_cap: 50 is not implemented (attention soft-capping is not implemented)'],
    ['output_logits_soft_cap', 30, 'output_logits_soft_cap: 30 is not implemented (logit soft-capping is not implemented)'],
    ['use_normalization_before_and_after', true, 'use_normalization_before_and_after: true is not implemented (norms after attention and MLP are not implemented)'],
    ['relative_attention_num_buckets', 32, 'relative_attention_num_buckets: 32 is not implemented (relative attention biases are not implemented)'],
    ['d_vocab_out', 60, 'd_vocab_out: 60 is not implemented (the unembedding must map to d_vocab)'],
  ] as const)('%s: %j', (field, value, message) => {
    expect(problems({ [field]: value })).toEqual([message]);
  });

  it('act_fn missing from a model with MLPs', () => {
    expect(problems({ act_fn: null })).toEqual(['act_fn: required for a model with MLPs (attn_only: false); one of gelu_new, gelu, gelu_fast, gelu_pytorch_tanh, relu, silu']);
  });

  it('rotary_dim odd', () => {
    expect(problems({ positional_embedding_type: 'rotary', rotary_dim: 7 })).toEqual(['rotary_dim: 7 must be even and at most d_head 16']);
  });

  it('rotary_dim past d_head', () => {
    expect(problems({ positional_embedding_type: 'rotary', rotary_dim: 18 })).toEqual(['rotary_dim: 18 must be even and at most d_head 16']);
  });

  it('n_key_value_heads that does not divide n_heads', () => {
    expect(problems({ n_key_value_heads: 3 })).toEqual(['n_key_value_heads: 3 does not divide n_heads 4']);
  });

  it('bos_token_id outside the vocabulary', () => {
    expect(problems({ bos_token_id: 50 })).toEqual(['bos_token_id: 50 is not a token id below d_vocab 50']);
  });

  it('every problem of a config at once, one line each', () => {
    expect(problems({ act_fn: 'solu_ln', positional_embedding_type: 'alibi', num_experts: 8 }).map((p) => p.slice(0, p.indexOf(':')))).toEqual([
      'num_experts',
      'positional_embedding_type',
      'act_fn',
    ]);
  });

  it("TransformerLens's defaults for the same fields are harmless", () => {
    const defaults = {
      attention_dir: 'causal', attn_types: null, use_local_attn: false, window_size: null, use_attn_scale: true, attn_scale: -1,
      use_qk_norm: false, post_embedding_ln: false, final_rms: false, num_experts: null, use_NTK_by_parts_rope: false,
      attn_scores_soft_cap: -1, output_logits_soft_cap: -1, use_normalization_before_and_after: false,
      relative_attention_num_buckets: null, d_vocab_out: -1,
    };
    expect(problems(defaults)).toEqual([]);
    expect(problems({ attn_scale: 4, attn_types: ['global', 'global'], d_vocab_out: 50 })).toEqual([]);
  });
});

describe('in a checkpoint', () => {
  const dir = mkdtempSync(join(tmpdir(), 'headsweep-config-errors-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the load fails naming the file, where the config came from, the field and the value', () => {
    const file = join(dir, 'solu.safetensors');
    writeSafetensors(file, {}, { config: JSON.stringify({ ...BASE, act_fn: 'solu_ln' }) });
    expect(() => loadCheckpoint(file)).toThrow(`${file}: invalid config in __metadata__.config: act_fn: "solu_ln" is not implemented`);
  });
});
