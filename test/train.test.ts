/**
 * `headsweep train`: learning (attention-only and with MLPs), the initial scales, the
 * checkpoint round trip, exact resume, the bundled series rebuilt bit for bit, the
 * zero-layer bigram_kl check, and the data and prompt generators it relies on. Tiny
 * models, so each test runs in seconds on the wasm backend (the bundled series' first
 * steps take longer).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { initBackend, tf } from '../src/backend.ts';
import { loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { bigramKl } from '../src/metrics/bigram-kl.ts';
import { bigramEntropy, countBigrams } from '../src/metrics/bigrams.ts';
import { disposeParams, forward, tokenLosses, uploadParams } from '../src/model/forward.ts';
import { modelConfig } from '../src/model/config.ts';
import { textPromptSet } from '../src/prompts/text.ts';
import { enableTraining } from '../src/train/autodiff.ts';
import { checkpointSteps, loadTrainConfig, parseTrainConfig, TrainConfigSchema, type LoadedTrainConfig } from '../src/train/config.ts';
import { syntheticBatches } from '../src/train/data.ts';
import { initWeights } from '../src/train/init.ts';
import { adamwStep, createAdamState, disposeAdamState, learningRate, toVariable } from '../src/train/optimizer.ts';
import { readCorpus, TOKENIZERS } from '../src/train/tokenizer.ts';
import { checkpointName, train } from '../src/train/train.ts';
import { headsweep } from './helpers/cli.ts';

const ROOT = join(import.meta.dirname, '..');
const CORPUS = join(ROOT, 'data', 'corpus', 'npm-readmes.txt');
const quiet = () => {};
let scratch: string;

beforeAll(async () => {
  await initBackend('wasm');
  await enableTraining();
  scratch = mkdtempSync(join(tmpdir(), 'headsweep-train-'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A 1-layer, 2-head, d_model 16 model on synthetic data over 16 ids (BOS 0). */
function tinyConfig(outDir: string, overrides: Record<string, unknown> = {}): LoadedTrainConfig {
  const config = TrainConfigSchema.parse({
    run: 'tiny',
    out_dir: outDir,
    seed: 7,
    model: { n_layers: 1, n_heads: 2, d_model: 16, d_head: 8, d_vocab: 16, n_ctx: 24, bos_token_id: 0 },
    data: { kind: 'synthetic', block_length: [3, 6] },
    steps: 6,
    batch_size: 4,
    optimizer: { lr: 1e-2, warmup_steps: 2, schedule: 'linear' },
    checkpoints: { at: [3] },
    log_every: 1,
    ...overrides,
  });
  return { file: 'tiny.yaml', config, outDir, dataFile: config.data.kind === 'corpus' ? CORPUS : null };
}

/** Every tensor of two checkpoint files, compared bit for bit. */
function expectSameWeights(fileA: string, fileB: string): void {
  const a = loadCheckpoint(fileA).weights;
  const b = loadCheckpoint(fileB).weights;
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [name, t] of a) expect(Buffer.from(b.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
}

/** The tiny model with MLPs: exact-GELU MLPs of width 32 (2 · d_model). */
const TINY_MLP = { n_layers: 1, n_heads: 2, d_model: 16, d_head: 8, d_vocab: 16, n_ctx: 24, bos_token_id: 0, attn_only: false, d_mlp: 32, act_fn: 'gelu' };

/** What else the forward pass runs, all at once: gated SiLU MLPs in parallel with attention, RMS norms, rotary positions, grouped K/V. */
const TINY_EVERYTHING = {
  ...TINY_MLP, n_layers: 2, act_fn: 'silu', gated_mlp: true, parallel_attn_mlp: true,
  normalization_type: 'RMS', positional_embedding_type: 'rotary', n_key_value_heads: 1,
};

/**
 * Trains the first `steps` steps of a bundled config into the scratch folder and compares
 * every tensor with the bundled checkpoint of that step. Under a constant schedule a
 * step's learning rate does not depend on the total, so the first steps of a shorter run
 * are those of the whole one.
 */
/** ~1 s a step of the bundled 2-layer models on an idle machine; a busy shared one is several times slower. */
const REBUILD_TIMEOUT = 900_000;

async function expectRebuilds(configFile: string, series: string, steps: number): Promise<void> {
  const bundled = loadTrainConfig(join(ROOT, 'configs', configFile));
  expect(bundled.config.optimizer.schedule).toBe('constant');
  const outDir = join(scratch, `rebuild-${series}`);
  const config = { ...bundled.config, steps, checkpoints: { at: [steps], dense: [] } };
  await train({ ...bundled, config, outDir }, { log: quiet });
  expectSameWeights(join(ROOT, 'data', 'checkpoints', series, checkpointName(steps)), join(outDir, checkpointName(steps)));
}

describe('training', () => {
  test.each([
    ['attention-only', {}],
    ['with GELU MLPs', { model: TINY_MLP }],
    ['gated, parallel, RMS, rotary, grouped-query', { model: TINY_EVERYTHING }],
  ])('ten AdamW steps on a fixed batch lower its loss: %s', (_name, overrides) => {
    const { config: c } = tinyConfig(join(scratch, 'unused'), overrides);
    const batch = syntheticBatches(c.data as never, 16, 0, c.seed, { batchSize: 8, seqLen: 24 })(1);
    const tokens = tf.tensor2d(batch, [8, 24], 'int32'); // (B, T)
    const params = Object.fromEntries([...initWeights(c.model, c.seed)].map(([n, w]) => [n, toVariable(tf.tensor(w.data, w.shape), true)]));
    const adam = createAdamState(params);
    const lossOf = () => tf.mean(tokenLosses(forward(params, c.model, tokens, { logits: true }).logits!, tokens)) as tf.Scalar;
    const losses: number[] = [];
    for (let step = 1; step <= 10; step++) {
      const { value, grads } = tf.variableGrads(lossOf);
      losses.push(value.dataSync()[0]);
      adamwStep(params, grads, adam, c.optimizer, learningRate(c.optimizer, step, 10));
      tf.dispose([value, ...Object.values(grads)]);
    }
    const final = tf.tidy(() => lossOf().dataSync()[0]);
    disposeAdamState(adam);
    tf.dispose([tokens, ...Object.values(params)]);
    // Untrained, the model is near uniform over 16 ids: loss ≈ ln 16 = 2.77.
    expect(losses[0]).toBeGreaterThan(2.5);
    expect(final).toBeLessThan(losses[0] - 0.3);
  });

  test('a saved checkpoint loads back with the same weights and logits, and the metadata the sweep reads', async () => {
    const loaded = tinyConfig(join(scratch, 'roundtrip'), { steps: 2, checkpoints: { at: [0] } });
    const result = await train(loaded, { log: quiet });
    expect(result.checkpoints.map((f) => f.slice(loaded.outDir.length + 1))).toEqual([checkpointName(0), checkpointName(2)]);

    const ck = loadCheckpoint(join(loaded.outDir, checkpointName(0)));
    expect(ck.step).toBe(0);
    expect(loadCheckpoint(join(loaded.outDir, checkpointName(2))).tokensSeen).toBe(2 * 4 * 24);
    expect(JSON.parse(ck.metadata.config)).toMatchObject({ n_layers: 1, attn_only: true, bos_token_id: 0, model_name: 'tiny', seed: 7 });

    const tokens = tf.tensor2d(syntheticBatches(loaded.config.data as never, 16, 0, 1, { batchSize: 2, seqLen: 24 })(0), [2, 24], 'int32');
    const fromFile = uploadParams(ck.weights);
    const fresh = uploadParams(initWeights(loaded.config.model, loaded.config.seed));
    const [a, b] = [fromFile, fresh].map((p) => tf.tidy(() => forward(p, ck.config, tokens, { logits: true }).logits!.dataSync()));
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    disposeParams(fromFile);
    disposeParams(fresh);
    tokens.dispose();
  });

  test('a model with MLPs is saved with its whole config and loads back as the model it trained', async () => {
    const loaded = tinyConfig(join(scratch, 'roundtrip-mlp'), { model: TINY_EVERYTHING, steps: 2, checkpoints: { at: [0] } });
    await train(loaded, { log: quiet });
    const ck = loadCheckpoint(join(loaded.outDir, checkpointName(2)));
    expect(ck.config).toEqual(loaded.config.model);
    expect(JSON.parse(ck.metadata.config)).toMatchObject({ attn_only: false, d_mlp: 32, act_fn: 'silu', gated_mlp: true, n_key_value_heads: 1, model_name: 'tiny' });
    expect([...ck.weights.keys()]).toContain('blocks.1.mlp.W_gate');
    expect([...ck.weights.keys()]).toContain('blocks.1.attn._W_K');
  });

  test('initial weights have the documented scales, MLPs and grouped K/V included', () => {
    const c = modelConfig({
      n_layers: 1, n_heads: 4, d_model: 64, d_head: 16, d_vocab: 64, n_ctx: 96, bos_token_id: 0,
      attn_only: false, d_mlp: 256, act_fn: 'gelu', gated_mlp: true, n_key_value_heads: 2,
    });
    const expected: Record<string, number> = {
      'embed.W_E': 0.1, 'pos_embed.W_pos': 0.1,
      'blocks.0.attn.W_Q': 1 / 8, 'blocks.0.attn._W_K': 1 / 8, 'blocks.0.attn._W_V': 1 / 8, 'blocks.0.attn.W_O': 1 / 8,
      'blocks.0.mlp.W_in': 1 / 8, 'blocks.0.mlp.W_gate': 1 / 8, 'blocks.0.mlp.W_out': 1 / 16, 'unembed.W_U': 1 / 8,
    };
    const weights = initWeights(c, 11);
    for (const [name, { data }] of weights) {
      const values = Array.from(data);
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
      if (name in expected) {
        // ≥ 4,096 draws each: the sample std is within ~1.1% (one σ) of the true one.
        expect(Math.abs(std / expected[name] - 1), name).toBeLessThan(0.05);
        expect(Math.abs(mean), name).toBeLessThan(0.1 * expected[name]);
      } else {
        expect(new Set(values), name).toEqual(new Set([/\.w$/.test(name) ? 1 : 0]));
      }
    }
    // Every tensor of the config was drawn or filled, none left out.
    expect(Object.keys(expected).every((name) => weights.has(name))).toBe(true);
  });

  test('configs/train-attn-only-2l.yaml still rebuilds its bundled series: the first 16 steps give step-000016 bit for bit', async () => {
    await expectRebuilds('train-attn-only-2l.yaml', 'attn-only-2l', 16);
  }, REBUILD_TIMEOUT);

  test('configs/train-gelu-2l.yaml rebuilds its bundled series: the first 25 steps give step-000025 bit for bit', async () => {
    await expectRebuilds('train-gelu-2l.yaml', 'gelu-2l', 25);
  }, REBUILD_TIMEOUT);

  test('a run stopped after a checkpoint and resumed ends with bit-identical weights', async () => {
    const whole = tinyConfig(join(scratch, 'whole'));
    await train(whole, { log: quiet });

    const parts = tinyConfig(join(scratch, 'parts'));
    const stopAfter4 = (line: string) => {
      if (line.includes('step 5/6')) throw new Error('interrupted');
    };
    await expect(train(parts, { log: stopAfter4 })).rejects.toThrow('interrupted');
    expect(readdirSync(parts.outDir).filter((f) => f.endsWith('.safetensors'))).toEqual([checkpointName(3)]);
    await expect(train(parts, { log: quiet })).rejects.toThrow(/already holds 1 checkpoint.*--resume/);

    const resumed = await train(parts, { resume: true, log: quiet });
    expect(resumed.startStep).toBe(3);
    expectSameWeights(join(whole.outDir, checkpointName(6)), join(parts.outDir, checkpointName(6)));
    // Only the latest optimizer state is kept.
    expect(readdirSync(join(parts.outDir, 'state'))).toEqual(['step-000006.adam.safetensors']);
  });

  test('resume refuses a config that changed the run', async () => {
    const dir = join(scratch, 'changed');
    await train(tinyConfig(dir), { log: quiet });
    const other = tinyConfig(dir, { seed: 8 });
    await expect(train(other, { resume: true, log: quiet })).rejects.toThrow(/another seed, model, data, batch or optimizer/);
  });
});

describe('bigram_kl', () => {
  /** A 0-layer, shortformer model of the char64-tokenized corpus: exactly a bigram model. */
  function zeroLayer(outDir: string, steps: number): LoadedTrainConfig {
    return tinyConfig(outDir, {
      model: { n_layers: 0, n_heads: 1, d_model: 32, d_head: 8, d_vocab: 64, n_ctx: 32, bos_token_id: 0, positional_embedding_type: 'shortformer' },
      data: { kind: 'corpus', file: CORPUS, tokenizer: 'char64' },
      steps,
      batch_size: 16,
      optimizer: { lr: 1e-2, warmup_steps: 0 },
      checkpoints: { at: [0] },
    });
  }

  test('falls as a zero-layer model trains, and equals its corpus loss minus the bigram entropy', async () => {
    const loaded = zeroLayer(join(scratch, 'zero'), 30);
    await train(loaded, { log: quiet });
    const corpus = readCorpus(CORPUS, 'char64');
    // Windows of 32 tokens, so the identity below can be checked with forward() on the same pairs.
    const windows = Array.from({ length: 2000 }, (_, i) => corpus.subarray(i * 32, (i + 1) * 32));
    const bigrams = countBigrams(windows, 64);
    const kl = (step: number) => {
      const ck = loadCheckpoint(join(loaded.outDir, checkpointName(step)));
      const params = uploadParams(ck.weights);
      const losses = tf.tidy(() => {
        const tokens = tf.tensor2d(Int32Array.from(windows.flatMap((w) => [...w])), [windows.length, 32], 'int32'); // (B, T)
        return tokenLosses(forward(params, ck.config, tokens, { logits: true }).logits!, tokens).dataSync(); // (B·(T-1))
      });
      const meanLoss = Array.from(losses).reduce((sum, x) => sum + x, 0) / losses.length; // summed in float64
      const score = bigramKl(params, ck.config, bigrams);
      disposeParams(params);
      return { score, meanLoss };
    };
    const before = kl(0);
    const after = kl(30);
    const entropy = bigramEntropy(bigrams);
    // The corpus's own bigram entropy; a near-uniform start is ≈ ln 64 − H above it.
    expect(entropy).toBeGreaterThan(2);
    expect(before.score).toBeGreaterThan(1);
    expect(after.score).toBeLessThan(before.score * 0.75);
    // KL = cross-entropy − entropy; float32 log-probabilities, float64 sums: 1e-4 is ample.
    expect(Math.abs(before.score - (before.meanLoss - entropy))).toBeLessThan(1e-4);
    expect(Math.abs(after.score - (after.meanLoss - entropy))).toBeLessThan(1e-4);
  });
});

describe('data', () => {
  const spec = TrainConfigSchema.shape.data.parse({ kind: 'synthetic' });

  test('a batch is a pure function of (seed, step): half repeated blocks, half noise, all after BOS', () => {
    const source = syntheticBatches(spec as never, 64, 0, 3, { batchSize: 4, seqLen: 96 });
    const again = syntheticBatches(spec as never, 64, 0, 3, { batchSize: 4, seqLen: 96 });
    expect(again(10)).toEqual(source(10));
    expect(source(11)).not.toEqual(source(10));
    const batch = source(10);
    const rows = [0, 1, 2, 3].map((r) => batch.subarray(r * 96, (r + 1) * 96));
    for (const row of rows) {
      expect(row[0]).toBe(0);
      expect(Math.min(...row.subarray(1))).toBeGreaterThanOrEqual(1);
      expect(Math.max(...row)).toBeLessThan(64);
    }
    // Rows 1 and 3 (fraction 0.5, spread evenly) repeat a block of 8–39 ids to the end.
    const period = (row: Int32Array) => [...Array(40).keys()].slice(8).find((p) => row.subarray(1).every((t, i) => i < p || t === row[1 + i - p]));
    expect(period(rows[1])).toBeDefined();
    expect(period(rows[3])).toBeDefined();
    expect(period(rows[0])).toBeUndefined();
  });

  test('checkpoint schedule: log-spaced, every, dense windows and the last step, each once', () => {
    const c = tinyConfig(join(scratch, 'unused'), {
      steps: 100,
      checkpoints: { at: [3], log_spaced_until: 8, every: 40, dense: [{ from: 50, to: 60, every: 5 }] },
    }).config;
    expect(checkpointSteps(c)).toEqual([0, 1, 2, 3, 4, 8, 40, 50, 55, 60, 80, 100]);
  });

  test('tokenizers: byte round-trips UTF-8; char64 folds case and maps other bytes to 63', () => {
    const byte = TOKENIZERS.byte;
    expect(byte.decode(byte.encode('héllo'))).toBe('héllo');
    const c64 = TOKENIZERS.char64;
    expect(Array.from(c64.encode('The the'))).toEqual(Array.from(c64.encode('the the')));
    expect(c64.decode(c64.encode('Hi, x\t'))).toBe('hi, x\uFFFD');
  });

  test('text prompt sets: seeded windows of the corpus after BOS, checked against the vocabulary', () => {
    const model = modelConfig({ n_layers: 2, n_heads: 4, d_model: 64, d_head: 16, d_vocab: 64, n_ctx: 96, attn_only: true, normalization_type: 'LN', positional_embedding_type: 'standard', eps: 1e-5, bos_token_id: 0 });
    const spec = { kind: 'text', name: 'readmes', path: CORPUS, tokenizer: 'char64', length: 80, count: 3, seed: 5 } as const;
    const set = textPromptSet(spec, model);
    expect(set.sequences).toHaveLength(3);
    expect(textPromptSet(spec, model).sequences).toEqual(set.sequences);
    const text = TOKENIZERS.char64.decode(TOKENIZERS.char64.encode(readFileSync(CORPUS)));
    for (const seq of set.sequences) {
      expect(seq).toHaveLength(81);
      expect(seq[0]).toBe(0);
      expect(text).toContain(TOKENIZERS.char64.decode(seq));
    }
    expect(() => textPromptSet({ ...spec, tokenizer: 'byte' }, model)).toThrow(/tokenizer 'byte' has 257 ids but the model's d_vocab is 64/);
  });

  test('a config error names the YAML path and line', () => {
    const yaml = 'run: x\nout_dir: o\nseed: 1\nmodel: {n_layers: 1, n_heads: 1, d_model: 8, d_head: 8, d_vocab: 8, n_ctx: 8, bos_token_id: 0}\n' +
      'data: {kind: synthetic, block_length: [2, 3]}\nsteps: 5\nbatch_size: 2\noptimizer: {lr: 0.1, momentum: 0.9}\ncheckpoints: {}\n';
    expect(() => parseTrainConfig(yaml, 'bad.yaml')).toThrow('bad.yaml → at optimizer.momentum: unknown key (line 8)');
  });
});

test('the CLI: progress lines with elapsed time and ETA; one checkpoint is "1 checkpoint written"', async () => {
  const file = join(scratch, 'cli.yaml');
  writeFileSync(file, [
    'run: cli',
    'out_dir: cli-out',
    'seed: 1',
    'model: {n_layers: 1, n_heads: 2, d_model: 16, d_head: 8, d_vocab: 16, n_ctx: 24, bos_token_id: 0}',
    'data: {kind: synthetic, block_length: [3, 6]}',
    'steps: 4',
    'batch_size: 2',
    'optimizer: {lr: 1.0e-2}',
    'checkpoints: {}',
    'log_every: 2',
    'backend: wasm',
  ].join('\n'));
  const run = await headsweep(['train', file]);
  expect(run.code, run.stderr).toBe(0);
  const progress = run.stderr.split('\n').filter((l) => l.startsWith('cli step '));
  expect(progress).toHaveLength(2);
  expect(progress[0]).toMatch(/^cli step 2\/4 {2}loss \d+\.\d{4} .* elapsed 0:\d\d {2}ETA 0:\d\d$/);
  expect(progress[1]).toMatch(/^cli step 4\/4 .* elapsed 0:\d\d {2}ETA 0:00$/);
  expect(run.stdout).toMatch(/^cli: steps 0→4, final loss \d+\.\d{4}, 1 checkpoint written to /);
  expect(readdirSync(join(scratch, 'cli-out')).filter((f) => f.endsWith('.safetensors'))).toEqual(['step-000004.safetensors']);
});
