/**
 * `headsweep inspect` run as a real process, as a user would: what it prints for a good
 * checkpoint (text and --json), and the exit code and message for a bad one.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { assemble, buildParts, tempDir, tinyParts, tinyTensors, TINY_CONFIG } from './helpers/safetensors.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

function headsweep(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, ['bin/headsweep.js', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

const PLANTED = 'test/fixtures/planted-induction-2l.safetensors';

// The planted fixture's config (METRICS.md §7): n_layers 2, n_heads 2, d_model 96,
// d_head 64, d_vocab 16, n_ctx 64, no normalization, standard positions. By hand:
//   embed.W_E 16·96 = 1536, pos_embed.W_pos 64·96 = 6144,
//   per layer W_Q/W_K/W_V/W_O 4 · 2·96·64 = 49152, b_Q/b_K/b_V 3 · 2·64 = 384, b_O 96
//     → 49632, two layers → 99264,
//   unembed.W_U 96·16 = 1536, unembed.b_U 16
//   total 1536 + 6144 + 99264 + 1536 + 16 = 108496.
const PLANTED_PARAMETERS = 108496;
/** Its size on disk: the 108496 float32 values (433984 bytes) after the header. */
const PLANTED_BYTES = statSync(PLANTED).size;

const PLANTED_TENSORS: [string, number[]][] = [
  ['embed.W_E', [16, 96]],
  ['pos_embed.W_pos', [64, 96]],
  ...[0, 1].flatMap((l): [string, number[]][] => [
    [`blocks.${l}.attn.W_Q`, [2, 96, 64]],
    [`blocks.${l}.attn.W_K`, [2, 96, 64]],
    [`blocks.${l}.attn.W_V`, [2, 96, 64]],
    [`blocks.${l}.attn.W_O`, [2, 64, 96]],
    [`blocks.${l}.attn.b_Q`, [2, 64]],
    [`blocks.${l}.attn.b_K`, [2, 64]],
    [`blocks.${l}.attn.b_V`, [2, 64]],
    [`blocks.${l}.attn.b_O`, [96]],
  ]),
  ['unembed.W_U', [96, 16]],
  ['unembed.b_U', [16]],
];

describe('headsweep inspect on a good checkpoint', () => {
  test('prints the config, every tensor, step, tokens seen and the parameter count', () => {
    const { status, stdout, stderr } = headsweep('inspect', PLANTED);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    const lines = stdout.split('\n');
    expect(lines).toContain(`checkpoint   ${PLANTED}`);
    expect(lines).toContain('family       tl: TransformerLens state dict (converter tl@1)');
    expect(lines).toContain('format       safetensors');
    expect(lines).toContain('step         0 (__metadata__.step)');
    expect(lines).toContain('tokens seen  unknown (no metadata)');
    expect(lines).toContain(`parameters   ${PLANTED_PARAMETERS}`);
    expect(lines).toContain('config as written (__metadata__.config)');
    expect(lines).toContain('config (TL, resolved)');
    expect(lines).toContain(`  planted-induction-2l.safetensors  weights  ${PLANTED_BYTES} bytes`);
    for (const [field, value] of [
      ['n_layers', '2'], ['n_heads', '2'], ['d_model', '96'], ['d_head', '64'], ['d_vocab', '16'], ['n_ctx', '64'],
      ['normalization_type', 'none'], ['positional_embedding_type', 'standard'], ['eps', '0.00001'], ['bos_token_id', '0'],
    ]) {
      expect(stdout, field).toMatch(new RegExp(`^  ${field} +${value}$`, 'm'));
    }
    expect(lines).toContain('tensors (20 weights)');
    const tensorLines = lines.filter((l) => /^ {2}(embed|pos_embed|blocks|unembed)\./.test(l));
    expect(tensorLines.map((l) => l.trim().split(/ {2,}/))).toEqual(
      PLANTED_TENSORS.map(([name, shape]) => [name, 'F32', `[${shape.join(', ')}]`, `→ ${name}`]),
    );
  });

  test('--json prints the same facts as one JSON object', () => {
    const { status, stdout } = headsweep('inspect', PLANTED, '--json');
    expect(status).toBe(0);
    const info = JSON.parse(stdout);
    expect(info.path).toBe(PLANTED);
    expect(info.step).toBe(0);
    expect(info.tokens_seen).toBeNull();
    expect(info.parameters).toBe(PLANTED_PARAMETERS);
    expect(info.config_source).toBe('__metadata__.config');
    expect(info.family).toBe('tl');
    expect(info.format).toBe('safetensors');
    expect(info.kind).toBe('file');
    expect(info.step_source).toBe('__metadata__.step');
    expect(info.files).toEqual([{ name: 'planted-induction-2l.safetensors', path: PLANTED, role: 'weights', bytes: PLANTED_BYTES, whole: true }]);
    expect(info.config_as_written.n_layers).toBe(2);
    expect(info.zeros).toEqual([]);
    expect(info.config).toEqual({
      n_layers: 2, n_heads: 2, d_model: 96, d_head: 64, d_vocab: 16, n_ctx: 64, attn_only: true,
      normalization_type: null, positional_embedding_type: 'standard', eps: 1e-5, bos_token_id: 0,
      // Resolved: the fields the header leaves out, at METRICS.md §1's defaults.
      d_mlp: null, act_fn: null, gated_mlp: false, parallel_attn_mlp: false, rotary_dim: null, rotary_base: 10000, rotary_adjacent_pairs: false, n_key_value_heads: null, scale_attn_by_inverse_layer_idx: false,
    });
    expect(info.metadata).toEqual({ format: 'headsweep-fixture' });
    expect(info.tensors).toEqual(PLANTED_TENSORS.map(([name, shape]) => ({ name, dtype: 'F32', shape, tl: [name], ignored: false })));
  });

  test('shows step and tokens seen from metadata and marks TL buffers as ignored', () => {
    const tensors = {
      ...tinyTensors(),
      'blocks.0.attn.IGNORE': { shape: [], data: Float32Array.of(-1e5) },
    };
    const path = tmp.file(
      'tiny.safetensors',
      assemble(buildParts(tensors, { config: JSON.stringify(TINY_CONFIG), step: '1000', tokens_seen: '2048000' })),
    );
    const { status, stdout } = headsweep('inspect', path);
    expect(status).toBe(0);
    const lines = stdout.split('\n');
    expect(lines).toContain('step         1000 (__metadata__.step)');
    expect(lines).toContain('tokens seen  2048000');
    expect(lines).toContain('parameters   153');
    expect(lines).toContain('tensors (16 weights, 1 buffers ignored)');
    expect(stdout).toMatch(/^ {2}blocks\.0\.attn\.IGNORE +F32 +\[\] +ignored$/m);
  });
});

describe('headsweep inspect on a checkpoint in its trainer\'s format', () => {
  const GPT2 = 'test/fixtures/real/gpt2-small-hf';

  test('a HuggingFace GPT-2 folder: family, files, and which source tensor each TL tensor is read from', () => {
    const { status, stdout, stderr } = headsweep('inspect', GPT2);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    const lines = stdout.split('\n');
    expect(lines).toContain('family       gpt2: HuggingFace GPT-2 (GPT2LMHeadModel) (converter gpt2@1)');
    expect(lines).toContain('format       safetensors, model folder');
    expect(lines).toContain(`config as written (${GPT2}/config.json)`);
    // CHECKPOINT-FORMATS.md §1: c_attn packs Q, K, V; wte is W_E and, transposed, W_U; attn.bias is a mask buffer.
    const rows = lines.filter((l) => /^ {2}(h\.|wte|wpe|ln_f)/.test(l)).map((l) => l.trim().split(/ {2,}/));
    expect(rows).toContainEqual(['h.0.attn.c_attn.weight', 'F32', '[64, 192]', '→ blocks.0.attn.W_Q, blocks.0.attn.W_K, blocks.0.attn.W_V']);
    expect(rows).toContainEqual(['wte.weight', 'F32', '[173, 64]', '→ embed.W_E, unembed.W_U']);
    expect(rows).toContainEqual(['h.1.attn.bias', 'F32', '[1, 1, 64, 64]', 'ignored']);
    expect(lines).toContain('tensors (28 weights, 2 buffers ignored)');
    expect(lines.slice(lines.indexOf('not stored, read as zeros (1)') + 1, lines.indexOf('not stored, read as zeros (1)') + 2)).toEqual(['  unembed.b_U']);
  });

  test('--json on a nanoGPT ckpt.pt: step from iter_num, model_args as the config, the archive read in part', () => {
    const { status, stdout } = headsweep('inspect', 'test/fixtures/real/nanogpt-ckpt/ckpt-2000.pt', '--json');
    expect(status).toBe(0);
    const info = JSON.parse(stdout);
    expect(info.family).toBe('nanogpt');
    expect(info.format).toBe('torch');
    expect(info.step).toBe(2000);
    expect(info.step_source).toBe('iter_num');
    expect(info.files).toEqual([{ name: 'ckpt-2000.pt', path: 'test/fixtures/real/nanogpt-ckpt/ckpt-2000.pt', role: 'weights', bytes: 834245, whole: false }]);
    expect(info.config_as_written).toMatchObject({ n_layer: 2, n_head: 4, n_embd: 48, block_size: 64, vocab_size: 89, bias: true });
    expect(info.config).toMatchObject({ d_model: 48, d_head: 12, d_mlp: 192, act_fn: 'gelu', bos_token_id: null });
    // lm_head is the same pickled tensor as wte: one stored tensor, read as W_U.
    expect(info.tensors.find((t: { name: string }) => t.name === 'lm_head.weight')).toEqual({ name: 'lm_head.weight', dtype: 'F32', shape: [89, 48], tl: ['unembed.W_U'], ignored: false });
  });

  test('a folder that is not a model folder says what it holds', () => {
    const { status, stderr } = headsweep('inspect', 'test/fixtures/real/nanogpt-ckpt');
    expect(status).toBe(1);
    expect(stderr).toBe(
      'headsweep: test/fixtures/real/nanogpt-ckpt: is a folder without a config.json, so not a model folder (it holds ckpt-2000.pt); ' +
        'to read its weights file, give the file (test/fixtures/real/nanogpt-ckpt/ckpt-2000.pt)\n',
    );
  });
});

describe('headsweep inspect on a bad checkpoint', () => {
  test('a truncated file: exit code 1, stderr names the file and the reason', () => {
    const whole = assemble(tinyParts());
    const path = tmp.file('cut.safetensors', whole.subarray(0, whole.byteLength - 12));
    const { status, stdout, stderr } = headsweep('inspect', path);
    expect(status).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(new RegExp(`^headsweep: ${path}: truncated file: `));
  });

  test('a file that does not exist, with --json: exit code 1, stderr names the file', () => {
    const path = `${tmp.dir}/absent.safetensors`;
    const { status, stdout, stderr } = headsweep('inspect', path, '--json');
    expect(status).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe(`headsweep: ${path}: no such file\n`);
  });
});
