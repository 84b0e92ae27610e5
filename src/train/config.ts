/**
 * The training config: one YAML file, one strict zod schema (`TrainConfig` is inferred
 * from it). Relative paths in it (`out_dir`, `data.file`) resolve against the folder that
 * holds the config, as in sweep configs, so a config works from any working directory.
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { BACKENDS } from '../names.ts';
import { resolveInSchema, TlConfigShape } from '../model/config.ts';
import { parseYamlWith, readConfigText } from '../yaml-config.ts';
import { TOKENIZERS, TOKENIZER_NAMES } from './tokenizer.ts';

const positiveInt = z.number().int().positive();
const step = z.number().int().min(0);

/** An inclusive integer range [lo, hi]. */
const IntRangeSchema = z
  .tuple([positiveInt, positiveInt])
  .refine(([lo, hi]) => lo <= hi, { message: 'expected [lo, hi] with lo ≤ hi' });

/**
 * TRAINING-NOTES' data: a share of the sequences is BOS + a random block repeated to the
 * end (only an induction mechanism predicts the repeats); the rest is BOS + Zipf-like
 * unigram noise (p(rank r) ∝ r^-zipf_exponent) in which, at each position, a span of
 * `copy_length` tokens copied from earlier in the sequence starts with `copy_probability`.
 * Ids are the model's vocabulary without its bos_token_id.
 */
export const SyntheticDataSchema = z.strictObject({
  kind: z.literal('synthetic'),
  repeated_fraction: z.number().min(0).max(1).default(0.5),
  block_length: IntRangeSchema.default([8, 39]),
  zipf_exponent: z.number().positive().default(1.1),
  copy_probability: z.number().min(0).max(1).default(0.05),
  copy_length: IntRangeSchema.default([3, 8]),
});

/** Windows of a tokenized text file, each after BOS. */
export const CorpusDataSchema = z.strictObject({
  kind: z.literal('corpus'),
  file: z.string().min(1),
  tokenizer: z.enum(TOKENIZER_NAMES),
});

export const DataSchema = z.discriminatedUnion('kind', [SyntheticDataSchema, CorpusDataSchema]);

/**
 * AdamW (decoupled weight decay, Loshchilov & Hutter) with linear warm-up from 0 to `lr`
 * over `warmup_steps`, then `schedule` down to `min_lr` at the last step (`constant`
 * keeps `lr`), and clipping of the global gradient norm to `clip_norm` (null: no clipping).
 */
export const OptimizerSchema = z.strictObject({
  lr: z.number().positive(),
  warmup_steps: step.default(0),
  schedule: z.enum(['constant', 'linear', 'cosine']).default('constant'),
  min_lr: z.number().min(0).default(0),
  weight_decay: z.number().min(0).default(0.01),
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
  eps: z.number().positive().default(1e-8),
  clip_norm: z.number().positive().nullable().default(1.0),
});

/**
 * Steps after which a checkpoint is written (step 0 = the initial weights): the union
 * of `at`, 0 and the powers of two up to `log_spaced_until`, the multiples of `every`,
 * each `dense` window's `from, from+every, … ≤ to`, and always the last step.
 */
export const CheckpointScheduleSchema = z.strictObject({
  at: z.array(step).default([]),
  log_spaced_until: step.optional(),
  every: positiveInt.optional(),
  dense: z
    .array(
      z.strictObject({ from: step, to: step, every: positiveInt })
        .refine((d) => d.from <= d.to, { message: 'from must not be after to', path: ['to'] }),
    )
    .default([]),
});

/** Run names become folder names and `model_name`, so no separators or spaces. */
const RunNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, {
  message: 'a run name is letters, digits, ".", "_" and "-", starting with a letter or digit',
});

/**
 * The model to train, in TL spelling (src/model/config.ts), resolved to a ModelConfig:
 * anything the forward pass runs, attention-only (the default) or with MLPs
 * (`attn_only: false`, `d_mlp`, `act_fn`, `gated_mlp`, `parallel_attn_mlp`), with any of
 * its norms and positions. Strict, unlike a checkpoint's config: a misspelt key in a
 * train config is an error, not a field silently left at its default.
 */
export const TrainModelSchema = z.strictObject(TlConfigShape).transform(resolveInSchema);

export const TrainConfigSchema = z
  .strictObject({
    run: RunNameSchema,
    /** Where checkpoints go (created if missing). */
    out_dir: z.string().min(1),
    /** Seeds the initial weights and every batch. */
    seed: z.number().int().min(0).max(0xffff_ffff),
    model: TrainModelSchema,
    data: DataSchema,
    steps: positiveInt,
    batch_size: positiveInt,
    /** Tokens per sequence, BOS included; default the model's n_ctx. */
    seq_len: z.number().int().min(2).optional(),
    optimizer: OptimizerSchema,
    checkpoints: CheckpointScheduleSchema,
    /** Steps between progress lines on stderr. */
    log_every: positiveInt.default(25),
    backend: z.enum(['auto', ...BACKENDS]).default('auto'),
  })
  .superRefine((c, ctx) => {
    const seqLen = c.seq_len ?? c.model.n_ctx;
    if (seqLen > c.model.n_ctx) {
      ctx.addIssue({ code: 'custom', path: ['seq_len'], message: `seq_len ${seqLen} exceeds the model's n_ctx ${c.model.n_ctx}` });
    }
    const bos = c.model.bos_token_id;
    if (c.data.kind === 'synthetic') {
      if (bos === undefined || bos === null || bos >= c.model.d_vocab) {
        ctx.addIssue({ code: 'custom', path: ['model', 'bos_token_id'], message: `synthetic data needs a bos_token_id in [0, ${c.model.d_vocab})` });
      }
      const ids = c.model.d_vocab - 1;
      if (c.data.block_length[0] > seqLen - 1) {
        ctx.addIssue({ code: 'custom', path: ['data', 'block_length'], message: `a block of ${c.data.block_length[0]} does not fit in seq_len ${seqLen} after BOS` });
      }
      if (ids < 1) ctx.addIssue({ code: 'custom', path: ['model', 'd_vocab'], message: 'synthetic data needs at least one id besides BOS' });
    } else {
      const tok = TOKENIZERS[c.data.tokenizer];
      if (c.model.d_vocab < tok.vocabSize) {
        ctx.addIssue({ code: 'custom', path: ['model', 'd_vocab'], message: `tokenizer '${tok.name}' has ${tok.vocabSize} ids; d_vocab ${c.model.d_vocab} is too small` });
      }
      if (bos !== tok.bos) {
        ctx.addIssue({ code: 'custom', path: ['model', 'bos_token_id'], message: `must be ${tok.bos}, the BOS id of tokenizer '${tok.name}'` });
      }
    }
    const late = [...c.checkpoints.at, ...c.checkpoints.dense.map((d) => d.to)].findIndex((s) => s > c.steps);
    if (late >= 0) {
      ctx.addIssue({ code: 'custom', path: ['checkpoints'], message: `a checkpoint step is after the last step ${c.steps}` });
    }
  });

export type TrainConfig = z.infer<typeof TrainConfigSchema>;
export type SyntheticData = z.infer<typeof SyntheticDataSchema>;
export type CorpusData = z.infer<typeof CorpusDataSchema>;
export type OptimizerConfig = z.infer<typeof OptimizerSchema>;

/** A config as read from disk, with its paths made absolute. */
export interface LoadedTrainConfig {
  file: string;
  config: TrainConfig;
  /** Absolute `out_dir`. */
  outDir: string;
  /** Absolute `data.file` for corpus data, else null. */
  dataFile: string | null;
}

/** Parses YAML text; throws a `config`-stage HeadsweepError with one line per problem, each naming its YAML path and line. */
export function parseTrainConfig(text: string, file: string): TrainConfig {
  return parseYamlWith(TrainConfigSchema, text, file);
}

export function loadTrainConfig(file: string): LoadedTrainConfig {
  const config = parseTrainConfig(readConfigText(file), file);
  const dir = dirname(resolve(file));
  return {
    file,
    config,
    outDir: resolve(dir, config.out_dir),
    dataFile: config.data.kind === 'corpus' ? resolve(dir, config.data.file) : null,
  };
}

/** The sequence length actually trained on. */
export function seqLenOf(c: TrainConfig): number {
  return c.seq_len ?? c.model.n_ctx;
}

/** Sorted, distinct checkpoint steps of a run (see CheckpointScheduleSchema). */
export function checkpointSteps(c: TrainConfig): number[] {
  const s = c.checkpoints;
  const steps = new Set<number>([...s.at, c.steps]);
  if (s.log_spaced_until !== undefined) {
    steps.add(0);
    for (let p = 1; p <= s.log_spaced_until; p *= 2) steps.add(p);
  }
  if (s.every !== undefined) for (let k = s.every; k <= c.steps; k += s.every) steps.add(k);
  for (const d of s.dense) for (let k = d.from; k <= d.to; k += d.every) steps.add(k);
  return [...steps].filter((k) => k <= c.steps).sort((a, b) => a - b);
}
