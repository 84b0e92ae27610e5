/**
 * The sweep config: one YAML file, one strict zod schema. `SweepConfig` is inferred from
 * the schema, so the schema is the only place a key, its type and its default are written.
 *
 * Relative paths inside a config (checkpoint globs, tokens and corpus files, the output folder)
 * resolve against the folder that holds the config file, so a config works from any
 * working directory; paths given on the command line (`--out`) resolve against the
 * working directory, as command-line paths do everywhere.
 */
import { statSync, type Stats } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { FAMILY_NAMES } from '../src/checkpoint/families/family.ts';
import { BACKENDS, METRIC_NAMES, type MetricName } from '../src/names.ts';
import { DEFAULT_RULES, RulesSchema } from '../src/classify.ts';
import { DIMENSION_LIMITS } from '../src/model/config.ts';
import { PromptSetSpecSchema } from '../src/prompts/index.ts';
import { TOKENIZER_NAMES } from '../src/train/tokenizer.ts';
import { configError, quote, shownPath } from '../src/errors.ts';
import { parseYamlWith, readConfigText } from '../src/yaml-config.ts';
import { OUTPUT_FORMATS, type OutputFormat } from './sinks/index.ts';


/** A whole number in [min, max], with a message that says the range and why there is one. */
const bounded = (min: number, max: number, why: string) =>
  z.number().int().min(min, { message: `must be at least ${min}` }).max(max, { message: `must be at most ${max} (${why})` });

/**
 * The ranges of the numbers a config sets: each far past any real use, and short of what
 * breaks (a timer that Node clamps to 1 ms, a million threads, a retry loop that never ends).
 */
export const CONFIG_LIMITS = {
  workers: 256,
  batch_size: 65536,
  memory_budget_mb: 2 ** 24,
  retries: 20,
  /** Node holds a timer of at most 2^31 − 1 ms; a longer one fires after 1 ms. */
  task_timeout_s: Math.floor((2 ** 31 - 1) / 1000),
  /** The longest run name: `run=<name>` is a folder, and a file system's names end at 255 bytes. */
  run_name: 128,
} as const;

/** Run names become hive folders (`run=<name>`), so no path separators or spaces. */
const RunNameSchema = z.string().max(CONFIG_LIMITS.run_name, { message: `a run name is at most ${CONFIG_LIMITS.run_name} characters (it names folders)` }).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, {
  message: 'a run name is letters, digits, ".", "_" and "-", starting with a letter or digit',
});

/** A path or glob: a NUL would end it early in every system call, so it is refused here. */
const PathSchema = z.string().min(1).refine((s) => !s.includes('\0'), { message: 'a path cannot hold a NUL character' });

const StepRegexSchema = z.string().min(1).superRefine((source, ctx) => {
  let re: RegExp;
  try {
    re = new RegExp(source);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `not a valid regular expression (${(err as Error).message})` });
    return;
  }
  // Count capture groups by matching the empty alternative the pattern is OR-ed with.
  const groups = new RegExp(`${re.source}|`).exec('')!.length - 1;
  if (groups < 1) ctx.addIssue({ code: 'custom', message: 'needs a capture group around the step digits, e.g. "step(\\\\d+)"' });
  // With two, which one holds the step would be a guess.
  if (groups > 1) {
    ctx.addIssue({ code: 'custom', message: `has ${groups} capture groups; it needs exactly one, around the step's digits (write (?:...) for any other group)` });
  }
});

export const CheckpointSourceSchema = z.strictObject({
  /** One training run or model; its checkpoints form one series. */
  run: RunNameSchema,
  /** Globs (tinyglobby syntax) of checkpoint files and model folders. */
  paths: z.array(PathSchema).min(1),
  /**
   * The step from the checkpoint's path (one capture group), over the step its folder or
   * file name implies; a step recorded inside the checkpoint (safetensors metadata,
   * nanoGPT's iter_num, trainer_state.json) wins over both.
   */
  step_regex: StepRegexSchema.optional(),
  /** Read every checkpoint of the run as this family, instead of telling it from config.json or the files. */
  family: z.enum(FAMILY_NAMES).optional(),
});

const OutputDirSchema = PathSchema;
const FormatsSchema = z.array(z.enum(OUTPUT_FORMATS)).min(1);

/**
 * Both formats by default: Arrow IPC for readers in memory (the report, pyarrow), Parquet
 * for DuckDB, which reads Arrow IPC files only through an extension it must download.
 */
const DEFAULT_FORMATS: OutputFormat[] = ['arrow', 'parquet'];

/** `output: out/x` or `output: {dir: out/x, formats: [arrow]}`; normalised to the object. */
export const OutputSchema = z
  .union([
    OutputDirSchema,
    z.strictObject({ dir: OutputDirSchema, formats: FormatsSchema.default([...DEFAULT_FORMATS]) }),
  ])
  .transform((o) => (typeof o === 'string' ? { dir: o, formats: [...DEFAULT_FORMATS] } : o));

/**
 * The corpus bigram_kl compares each model's direct path with: a text file, read whole
 * through `tokenizer` (its ids must fit every run's d_vocab).
 */
export const BigramSourceSchema = z.strictObject({
  path: PathSchema,
  tokenizer: z.enum(TOKENIZER_NAMES),
});

/** Every metric the config can compute: bigram_kl only when it names a corpus. */
function defaultMetrics(bigram: unknown): MetricName[] {
  return METRIC_NAMES.filter((m) => m !== 'bigram_kl' || bigram !== undefined);
}

export const SweepConfigSchema = z
  .strictObject({
    name: z.string().min(1).max(256),
    /** Required unless `--out` names the folder (withOverrides). */
    output: OutputSchema.optional(),
    checkpoints: z.array(CheckpointSourceSchema).min(1),
    prompt_sets: z.array(PromptSetSpecSchema).min(1),
    /** Default: every metric, bigram_kl only with `bigram`. */
    metrics: z.array(z.enum(METRIC_NAMES)).min(1).optional(),
    bigram: BigramSourceSchema.optional(),
    /** 0-based positions for icl_score (METRICS.md §6). */
    icl: z.strictObject({ early: bounded(1, DIMENSION_LIMITS.n_ctx, 'the longest n_ctx'), late: bounded(2, DIMENSION_LIMITS.n_ctx, 'the longest n_ctx') }).default({ early: 10, late: 90 }),
    /** Head labels; the first matching rule wins (src/classify.ts). */
    classify: RulesSchema.default([...DEFAULT_RULES]),
    /** Worker threads; default: every core the process may use. */
    workers: bounded(1, CONFIG_LIMITS.workers, 'each is a thread with its own tfjs backend').default(() => Math.min(CONFIG_LIMITS.workers, availableParallelism())),
    /** Sequences per forward batch. */
    batch_size: bounded(1, CONFIG_LIMITS.batch_size, 'one batch is one tensor per layer').default(8),
    backend: z.enum(['auto', ...BACKENDS]).default('auto'),
    /** Bytes of checkpoints in flight at once; default a quarter of the machine's memory. */
    memory_budget_mb: bounded(1, CONFIG_LIMITS.memory_budget_mb, '16 TiB').optional(),
    /** Attempts after the first for a checkpoint whose worker threw, timed out or died (pipeline/pool.ts). */
    retries: bounded(0, CONFIG_LIMITS.retries, 'a checkpoint that fails this often fails every time').default(2),
    /** Seconds one attempt at a checkpoint may run before its thread is stopped. */
    task_timeout_s: z.number()
      .min(1, { message: 'must be at least 1 second (a thread takes longer than that to start a checkpoint)' })
      .max(CONFIG_LIMITS.task_timeout_s, { message: `must be at most ${CONFIG_LIMITS.task_timeout_s} s, about 24.8 days (Node's timers hold at most 2^31 − 1 ms; a longer one would fire at once)` })
      .default(600),
  })
  .superRefine((c, ctx) => {
    if (c.icl.early >= c.icl.late) {
      ctx.addIssue({ code: 'custom', path: ['icl', 'late'], message: `late (${c.icl.late}) must be after early (${c.icl.early})` });
    }
    const firstRun = new Map<string, number>();
    c.checkpoints.forEach((src, i) => {
      const seen = firstRun.get(src.run);
      if (seen === undefined) firstRun.set(src.run, i);
      else ctx.addIssue({ code: 'custom', path: ['checkpoints', i, 'run'], message: `run '${src.run}' is already listed at checkpoints[${seen}]; put all its globs in one paths list` });
    });
    const firstSet = new Map<string, number>();
    c.prompt_sets.forEach((set, i) => {
      const seen = firstSet.get(set.name);
      if (seen === undefined) firstSet.set(set.name, i);
      else ctx.addIssue({ code: 'custom', path: ['prompt_sets', i, 'name'], message: `prompt set '${set.name}' is already defined at prompt_sets[${seen}]` });
    });
    const metrics = new Set<string>();
    c.metrics?.forEach((m, i) => {
      if (metrics.has(m)) ctx.addIssue({ code: 'custom', path: ['metrics', i], message: `metric '${m}' is listed twice` });
      if (m === 'bigram_kl' && c.bigram === undefined) {
        ctx.addIssue({ code: 'custom', path: ['metrics', i], message: 'bigram_kl needs a corpus: add bigram: {path: <text file>, tokenizer: byte|char64}' });
      }
      metrics.add(m);
    });
  })
  .transform((c) => ({ ...c, metrics: c.metrics ?? defaultMetrics(c.bigram) }));

/** A config as its file says it; `output` may be left to `--out`. */
export type SweepConfigFile = z.infer<typeof SweepConfigSchema>;
export type OutputConfig = z.infer<typeof OutputSchema>;
/** The config a sweep runs with: the file's, overrides applied, an output folder known. */
export type SweepConfig = Omit<SweepConfigFile, 'output'> & { output: OutputConfig };
export type BackendOption = SweepConfig['backend'];

/** A config as read from disk, with where it came from (for resolving and for messages). */
export interface LoadedConfig {
  /** The config file as the user named it (used in messages). */
  file: string;
  /** Absolute folder of the config file: relative paths inside it resolve here. */
  dir: string;
  config: SweepConfigFile;
}

/** Parses and validates a sweep config's YAML text. */
export function parseConfig(text: string, file: string): SweepConfigFile {
  return parseYamlWith(SweepConfigSchema, text, file);
}

/** Reads a config file. */
export function loadConfig(file: string): LoadedConfig {
  return { file, dir: dirname(resolve(file)), config: parseConfig(readConfigText(file), file) };
}

/** Command-line values that replace config values (checked by `overridesFromArgs` in commands/validate.ts). */
export interface ConfigOverrides {
  /** Resolved against the working directory. */
  out?: string;
  workers?: number;
  backend?: BackendOption;
  formats?: OutputFormat[];
  batchSize?: number;
}

/**
 * Applies overrides; returns the config the sweep runs with and its absolute output
 * folder. `--out` replaces `output.dir`, or stands in for a config without `output`.
 */
export function withOverrides(loaded: LoadedConfig, o: ConfigOverrides): { config: SweepConfig; outDir: string } {
  const c = loaded.config;
  if (c.output === undefined && o.out === undefined) {
    throw configError(loaded.file, 'output', 'required: the folder the tables go to (or give --out)');
  }
  const where = o.out !== undefined ? '--out' : 'output';
  if (o.out !== undefined) checkOutputPath(loaded.file, where, o.out);
  const output = c.output ?? OutputSchema.parse(o.out!);
  const formats = o.formats && o.formats.length > 0 ? [...new Set(o.formats)] : output.formats;
  const config: SweepConfig = {
    ...c,
    output: { dir: o.out ?? output.dir, formats },
    workers: o.workers ?? c.workers,
    backend: o.backend ?? c.backend,
    batch_size: o.batchSize ?? c.batch_size,
  };
  const outDir = o.out !== undefined ? resolve(o.out) : resolve(loaded.dir, output.dir);
  checkOutputPath(loaded.file, where, outDir);
  return { config, outDir };
}

/** The longest name one folder of a path may have (Linux, macOS and Windows file systems: 255 bytes). */
const NAME_MAX_BYTES = 255;
/** The longest path the system calls take (Linux PATH_MAX, less room for the table files below it). */
const PATH_MAX_BYTES = 3800;

/**
 * Refuses, as a config error at `key` (the YAML path, or `--out`), an output path no sweep
 * could write into: one holding a NUL, a name or a path too long for the file system,
 * or something that exists and is not a folder (a regular file, /dev/null).
 */
function checkOutputPath(file: string, key: string, dir: string): void {
  const bad = (reason: string) => configError(file, key, reason);
  if (dir.includes('\0')) throw bad('a path cannot hold a NUL character');
  const long = dir.split(/[\\/]/).find((name) => Buffer.byteLength(name) > NAME_MAX_BYTES);
  if (long !== undefined) throw bad(`the folder name ${quote(long, 60)} is ${Buffer.byteLength(long)} bytes; file systems allow ${NAME_MAX_BYTES}`);
  if (Buffer.byteLength(dir) > PATH_MAX_BYTES) throw bad(`the path is ${Buffer.byteLength(dir)} bytes; at most ${PATH_MAX_BYTES} leave room for the table files under it`);
  let st: Stats;
  try {
    st = statSync(dir);
  } catch {
    return;
  }
  if (!st.isDirectory()) throw bad(`${shownPath(dir)} exists and is not a folder (${st.isFile() ? 'a regular file' : 'a device, FIFO or socket'}); the tables go into a folder`);
}
