/**
 * From a validated config to the list of work: every checkpoint the globs match (a file or
 * a model folder, with its family, files, step and model config, src/checkpoint/source.ts),
 * the prompt sets built for each run's model, the bigram counts of the corpus bigram_kl
 * is measured against, and how many checkpoints may be in flight for the memory budget.
 * Planning reads only the small parts of checkpoints (headers, zip directories, pickles,
 * JSON files), the prompt files and the corpus; nothing is run through a model.
 *
 * A checkpoint that cannot be read, or that the backend cannot hold, stays in the plan
 * with its problem, so the sweep can report it as a row in `errors` while every other
 * checkpoint is scored.
 *
 * What would surprise a user but stops nothing is a warning of the plan (printed by
 * validate and the sweep, kept in the manifest): a glob that matches no file (a run whose
 * trainer has not written a checkpoint yet must not stop every other run's nightly;
 * only a config whose globs all match nothing is an error, unless a watch waits for
 * them), and icl positions a prompt set is too short for.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { glob } from 'tinyglobby';
import { inspectCheckpoint, type CheckpointInfo } from '../src/checkpoint/checkpoint.ts';
import type { FamilyName } from '../src/checkpoint/families/family.ts';
import { assertFits } from '../src/checkpoint/memory.ts';
import type { ContainerName } from '../src/checkpoint/source.ts';
import { parameterCount, type ModelConfig } from '../src/model/config.ts';
import type { BackendName } from '../src/names.ts';
import { configError, HeadsweepError, messageOf, summarise, type Stage } from '../src/errors.ts';
import { checkRegularFile, FileProblem } from '../src/files.ts';
import { countBigrams, type Bigrams } from '../src/metrics/bigrams.ts';
import { buildPromptSet, isBuiltinTokenizer, type PromptSet } from '../src/prompts/index.ts';
import { tokenizerJsonPath } from '../src/prompts/tokenizer.ts';
import { readCorpus, TOKENIZERS, type TokenizerName } from '../src/train/tokenizer.ts';
import { withOverrides, type BackendOption, type ConfigOverrides, type LoadedConfig, type SweepConfig } from './config.ts';
import { sha256File } from './hash.ts';
import { checkPromptSetSizes, memoryBudgetBytes as budgetOf, promptTokenLimit } from './limits.ts';
import type { NamedFile } from './state.ts';

export interface PlannedCheckpoint {
  run: string;
  /** The path as the config's glob resolved it: relative to the config folder, or absolute (a folder without its trailing slash). */
  path: string;
  /** Absolute path, for opening. */
  file: string;
  /** What the glob matched: a file, or a folder. */
  kind: 'file' | 'folder';
  /** The family the config forces on the run (`family:`); undefined: told from the files. */
  readAs: FamilyName | undefined;
  /** What it is read as (null when it cannot be read): family, container, and `family@version` of the conversion. */
  source: { family: FamilyName; container: ContainerName; converter: string } | null;
  /** Every file it is read from (empty when it cannot be read): what its identity and its state entry's stamps cover. */
  files: NamedFile[];
  /** Ids of the tokenizer.json beside its weights, when there is one that says. */
  tokenizerIds: number | null;
  step: number | null;
  tokensSeen: number | null;
  /** null when it could not be read (see `problem`). */
  config: ModelConfig | null;
  /** Estimated peak bytes while the checkpoint is scored (weights, activations, results). */
  bytes: number;
  /** Set when the checkpoint cannot be scored; it becomes a row in `errors`. */
  problem: { stage: Stage; message: string } | null;
}

export interface RunPlan {
  run: string;
  /** Ordered by step (unknown steps last), then path. */
  checkpoints: PlannedCheckpoint[];
  /** Built for the model config of the run's first readable checkpoint; empty if none is readable. */
  promptSets: PromptSet[];
  config: ModelConfig | null;
}

/** The corpus of `bigram`, counted once for the whole sweep: every run's checkpoints are scored against the same counts. */
export interface BigramCorpus {
  /** Absolute path. */
  file: string;
  /** Hex sha256 of the file: with the tokenizer, it keys the bigram_kl values (incremental.ts). */
  sha256: string;
  tokenizer: TokenizerName;
  /** [vocab, vocab] with vocab = the tokenizer's ids. */
  bigrams: Bigrams;
}

export interface Plan {
  configFile: string;
  config: SweepConfig;
  outDir: string;
  runs: RunPlan[];
  /** null when bigram_kl is not asked for. */
  bigram: BigramCorpus | null;
  memoryBudgetBytes: number;
  /** Checkpoints in flight at once: at least 1, at most one per worker plus one being written. */
  maxInFlight: number;
  /** What the user should know but that stops nothing, each once, in config order. */
  warnings: string[];
}

/** Every checkpoint of the plan, in output order (runs in config order, then by step). */
export function plannedCheckpoints(plan: Plan): PlannedCheckpoint[] {
  return plan.runs.flatMap((r) => r.checkpoints);
}

/** The step a checkpoint's path names through `step_regex`, or null. */
function stepFromPath(path: string, stepRegex: string | undefined): number | null {
  if (stepRegex === undefined) return null;
  const m = new RegExp(stepRegex).exec(path);
  const digits = m?.slice(1).find((g) => g !== undefined);
  return digits !== undefined && /^\d+$/.test(digits) ? Number(digits) : null;
}

/**
 * Peak bytes one checkpoint costs while scored: host weights, their tf copies and folded
 * weight products (about three float32 copies), plus one batch of activations: all
 * layers' patterns [batch, head, qPos, kPos], logits and log-softmax [batch, pos, d_vocab],
 * and a few residual-stream tensors [batch, pos, d_model].
 */
export function estimateBytes(c: ModelConfig, promptSets: readonly PromptSet[], batchSize: number): number {
  let T = 1;
  for (const s of promptSets) for (const q of s.sequences) T = Math.max(T, q.length);
  const weights = parameterCount(c) * 4 * 3;
  const perSequence = c.n_layers * c.n_heads * T * T + 2 * T * c.d_vocab + 8 * T * c.d_model;
  return weights + batchSize * perSequence * 4;
}

/** The prompt-relevant part of a model config: checkpoints of one run must agree on it. */
function promptShape(c: ModelConfig): string {
  return `d_vocab ${c.d_vocab}, n_ctx ${c.n_ctx}, bos_token_id ${c.bos_token_id ?? 'none'}`;
}

/** Why an existing path is not a regular file (`is a FIFO (named pipe), not a regular file`), or null. */
function notRegular(path: string): string | null {
  try {
    checkRegularFile(path);
  } catch (err) {
    if (err instanceof FileProblem && err.code === undefined) return err.reason;
  }
  return null;
}

interface Matched {
  path: string;
  kind: 'file' | 'folder';
}

/**
 * What a run's globs match, files and folders, and a `{path, reason}` for each glob that
 * matches none. A match inside a matched model folder (one with a config.json) is part
 * of that checkpoint, and a matched folder that is no model folder but holds other
 * matches only contains them, so `runs/**` gives each checkpoint once.
 */
async function resolveGlobs(loaded: LoadedConfig, i: number): Promise<{ matched: Matched[]; empty: { path: string; reason: string }[] }> {
  const src = loaded.config.checkpoints[i];
  const found = new Map<string, Matched>();
  const empty: { path: string; reason: string }[] = [];
  for (const [j, pattern] of src.paths.entries()) {
    const matches = await glob(pattern, {
      cwd: loaded.dir,
      absolute: isAbsolute(pattern),
      onlyFiles: false,
      expandDirectories: false,
    });
    if (matches.length === 0) {
      const where = isAbsolute(pattern) ? '' : ` (relative paths start at ${loaded.dir})`;
      // A glob lists regular files only: a path to a FIFO or a device is said to be one, never opened.
      const other = notRegular(resolve(loaded.dir, pattern));
      empty.push({ path: `checkpoints[${i}].paths[${j}]`, reason: other !== null ? `"${pattern}" ${other}` : `"${pattern}" matches no files${where}` });
    }
    // tinyglobby marks folders with a trailing slash.
    for (const m of matches) {
      const path = m.endsWith('/') && m.length > 1 ? m.slice(0, -1) : m;
      found.set(path, { path, kind: m.endsWith('/') ? 'folder' : 'file' });
    }
  }
  const all = [...found.values()];
  const folders = all.filter((m) => m.kind === 'folder');
  const isModelFolder = (f: Matched) => existsSync(join(resolve(loaded.dir, f.path), 'config.json'));
  const inside = (m: Matched, f: Matched) => m !== f && m.path.startsWith(`${f.path}/`);
  const kept = all.filter((m) => {
    if (folders.some((f) => inside(m, f) && isModelFolder(f))) return false;
    return !(m.kind === 'folder' && !isModelFolder(m) && all.some((o) => inside(o, m)));
  });
  return { matched: kept.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)), empty };
}

/**
 * icl_score is null on a prompt set with a sequence that has no token at `icl.late`: one
 * warning per such prompt set, with its shortest sequence over every run.
 */
function iclWarnings(config: SweepConfig, runs: readonly RunPlan[]): string[] {
  if (!config.metrics.includes('icl_score')) return [];
  const need = config.icl.late + 1;
  return config.prompt_sets.flatMap((spec) => {
    const lengths = runs.flatMap((r) => r.promptSets.find((s) => s.name === spec.name)?.sequences.map((q) => q.length) ?? []);
    const shortest = lengths.reduce((a, b) => Math.min(a, b), Infinity);
    if (lengths.length === 0 || shortest >= need) return [];
    return [`prompt set '${spec.name}' has sequences of ${shortest} tokens, fewer than icl.late + 1 = ${need}: its icl_score will be null (lower icl.late, or leave icl_score out of metrics)`];
  });
}

/**
 * The step of a checkpoint: one recorded inside it (safetensors metadata, nanoGPT's
 * iter_num, trainer_state.json) first, then `step_regex` on its path, then the step its
 * folder or file name implies (`checkpoint-N`, `stepN`, TL's `*_N.pth`).
 */
function stepOf(info: CheckpointInfo, path: string, stepRegex: string | undefined): number | null {
  // Source.stepSource names where the step came from; names are `folder name …` and `file name …`.
  const fromName = info.stepSource !== null && /^(folder|file) name /.test(info.stepSource);
  if (info.step !== null && !fromName) return info.step;
  return stepFromPath(path, stepRegex) ?? info.step;
}

/**
 * The backend a sweep will run on, as far as the plan can tell: `auto` is the native
 * backend when @tensorflow/tfjs-node is installed, else wasm (the pool checks again
 * with the backend it started).
 */
function expectedBackend(choice: BackendOption): BackendName {
  if (choice !== 'auto') return choice;
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node');
    return 'tensorflow';
  } catch {
    return 'wasm';
  }
}

function planCheckpoint(loaded: LoadedConfig, config: SweepConfig, i: number, m: Matched): PlannedCheckpoint {
  const { run, step_regex: stepRegex, family: readAs } = config.checkpoints[i];
  const { path, kind } = m;
  const file = resolve(loaded.dir, path);
  const unread = { run, path, file, kind, readAs, source: null, files: [], tokenizerIds: null, tokensSeen: null, config: null, bytes: 0 };
  let info: CheckpointInfo;
  try {
    info = inspectCheckpoint(file, { family: readAs });
  } catch (err) {
    const stage = err instanceof HeadsweepError ? err.stage : 'load';
    return { ...unread, step: stepFromPath(path, stepRegex), problem: { stage, message: messageOf(err) } };
  }
  let problem: PlannedCheckpoint['problem'] = null;
  try {
    assertFits(file, info.config, expectedBackend(config.backend));
  } catch (err) {
    const auto = config.backend === 'auto' ? ' (backend auto runs wasm here: @tensorflow/tfjs-node is not installed)' : '';
    problem = { stage: 'load', message: `${messageOf(err)}${auto}` };
  }
  return {
    ...unread,
    source: { family: info.family, container: info.container, converter: info.converter },
    files: info.files.map((f) => ({ path: f.path, name: f.name })),
    tokenizerIds: info.tokenizer?.vocabSize ?? null,
    step: stepOf(info, path, stepRegex),
    tokensSeen: info.tokensSeen,
    config: info.config,
    problem,
  };
}

/**
 * The model a run's prompt sets are built for: the prompt shape most of its readable
 * checkpoints share (the earliest such checkpoint's config; on a tie, the shape that
 * comes first in step order). So one checkpoint of another shape, at any step, fails
 * alone instead of failing every other checkpoint of its run.
 */
function runModel(checkpoints: readonly PlannedCheckpoint[]): { model: ModelConfig | null; tokenizerIds: number | null; share: string } {
  const byShape = new Map<string, { first: PlannedCheckpoint; model: ModelConfig; count: number }>();
  let readable = 0;
  for (const c of checkpoints) {
    if (c.config === null) continue;
    readable++;
    const entry = byShape.get(promptShape(c.config));
    if (entry === undefined) byShape.set(promptShape(c.config), { first: c, model: c.config, count: 1 });
    else entry.count++;
  }
  let best: { first: PlannedCheckpoint; model: ModelConfig; count: number } | null = null;
  for (const entry of byShape.values()) if (best === null || entry.count > best.count) best = entry;
  return {
    model: best?.model ?? null,
    // The tokenizer beside that checkpoint's weights, if any, gives the ids prompt sets draw from.
    tokenizerIds: best?.first.tokenizerIds ?? null,
    share: best === null ? '' : `the shape of ${best.count} of its ${readable} readable checkpoints`,
  };
}

function byStepThenPath(a: PlannedCheckpoint, b: PlannedCheckpoint): number {
  if (a.step !== b.step) {
    if (a.step === null) return 1;
    if (b.step === null) return -1;
    return a.step - b.step;
  }
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/**
 * Builds each prompt set for a model (`tokenizerIds`: of the tokenizer beside its
 * weights; `fileTokens`: how many ids the tokens files may hold together); a set that
 * does not fit the model is a config error at its YAML path.
 */
function buildPromptSets(
  loaded: LoadedConfig, config: SweepConfig, run: string, model: ModelConfig,
  tokenizerIds: number | null, fileTokens: { tokens: number; reason: string },
): PromptSet[] {
  // The limit is for all tokens files together: each takes its ids from what is left.
  let used = 0;
  return config.prompt_sets.map((spec, i) => {
    try {
      const reason = used === 0 ? fileTokens.reason : `the tokens files before it hold ${used} of the ${fileTokens.tokens} left for them; ${fileTokens.reason}`;
      const set = buildPromptSet(spec, model, { baseDir: loaded.dir, tokenizerIds, maxTokens: fileTokens.tokens - used, maxTokensReason: reason });
      if (spec.kind === 'tokens') used += set.sequences.reduce((n, s) => n + s.length, 0);
      return set;
    } catch (err) {
      throw configError(loaded.file, `prompt_sets[${i}]`, `${messageOf(err)} (for run '${run}': ${promptShape(model)})`);
    }
  });
}

/**
 * Reads and counts the corpus of `bigram` when bigram_kl is asked for (a missing or
 * unreadable file is a config error at `bigram.path`); only checks that the file is
 * there when it is not.
 */
async function planBigram(loaded: LoadedConfig, config: SweepConfig): Promise<BigramCorpus | null> {
  if (config.bigram === undefined) return null;
  const file = resolve(loaded.dir, config.bigram.path);
  if (!existsSync(file)) throw configError(loaded.file, 'bigram.path', `no such file: ${file}`);
  if (!config.metrics.includes('bigram_kl')) return null;
  const { tokenizer } = config.bigram;
  let tokens: Int32Array;
  try {
    tokens = readCorpus(file, tokenizer);
  } catch (err) {
    throw configError(loaded.file, 'bigram.path', messageOf(err));
  }
  // The whole file is one sequence: every adjacent pair in it counts.
  const bigrams = countBigrams([tokens], TOKENIZERS[tokenizer].vocabSize);
  if (bigrams.total === 0) throw configError(loaded.file, 'bigram.path', `${file} has fewer than two tokens, so no adjacent pairs`);
  return { file, sha256: await sha256File(file), tokenizer, bigrams };
}

/** bigram_kl needs every corpus id to be one of the model's: a config error naming the run otherwise. */
function checkBigramVocab(loaded: LoadedConfig, corpus: BigramCorpus | null, run: string, model: ModelConfig): void {
  if (corpus === null || corpus.bigrams.vocab <= model.d_vocab) return;
  throw configError(
    loaded.file, 'bigram.tokenizer',
    `tokenizer '${corpus.tokenizer}' has ${corpus.bigrams.vocab} ids but run '${run}' has d_vocab ${model.d_vocab}; bigram_kl needs a tokenizer whose ids fit every run`,
  );
}

export interface PlanOptions {
  /** Accept a glob that matches nothing yet (a watching sweep waits for its files). */
  allowEmptyGlobs?: boolean;
}

/** Resolves globs, reads headers, builds prompt sets. Throws config-stage errors naming the YAML path. */
export async function buildPlan(loaded: LoadedConfig, overrides: ConfigOverrides = {}, opts: PlanOptions = {}): Promise<Plan> {
  const { config, outDir } = withOverrides(loaded, overrides);

  config.prompt_sets.forEach((spec, i) => {
    if (spec.kind === 'tokens' && !existsSync(resolve(loaded.dir, spec.path))) {
      throw configError(loaded.file, `prompt_sets[${i}].path`, `no such file: ${resolve(loaded.dir, spec.path)}`);
    }
    const tokenizer = spec.kind === 'tokens' ? undefined : spec.tokenizer;
    if (tokenizer !== undefined && !isBuiltinTokenizer(tokenizer) && !existsSync(tokenizerJsonPath(tokenizer, loaded.dir))) {
      const path = resolve(loaded.dir, tokenizer);
      const what = existsSync(path) ? `the folder ${path} holds no tokenizer.json` : `no such file or folder: ${path}`;
      throw configError(loaded.file, `prompt_sets[${i}].tokenizer`, `${what} (a tokenizer is byte, char64, a tokenizer.json or a model folder holding one)`);
    }
  });

  const bigram = await planBigram(loaded, config);
  const memoryBudgetBytes = budgetOf(config);
  const tokenLimit = promptTokenLimit(config, memoryBudgetBytes);
  const fileTokens = { tokens: checkPromptSetSizes(loaded, config, tokenLimit), reason: tokenLimit.reason };

  const runs: RunPlan[] = [];
  const warnings: string[] = [];
  const emptyGlobs: { path: string; reason: string }[] = [];
  for (const [i, src] of config.checkpoints.entries()) {
    const { matched, empty } = await resolveGlobs(loaded, i);
    emptyGlobs.push(...empty);
    if (matched.length === 0) warnings.push(`run '${src.run}' has no checkpoints yet: ${empty.map((e) => `${e.path}: ${e.reason}`).join('; ')}`);
    else warnings.push(...empty.map((e) => `${e.path}: ${e.reason}`));
    const checkpoints = matched.map((m) => planCheckpoint(loaded, config, i, m)).sort(byStepThenPath);
    const { model, tokenizerIds, share } = runModel(checkpoints);
    const promptSets = model === null ? [] : buildPromptSets(loaded, config, src.run, model, tokenizerIds, fileTokens);
    if (model !== null) checkBigramVocab(loaded, bigram, src.run, model);
    for (const c of checkpoints) {
      if (c.config === null || model === null || c.problem !== null) continue;
      if (promptShape(c.config) !== promptShape(model)) {
        c.problem = {
          stage: 'load',
          message: `${c.path}: model has ${promptShape(c.config)} but run '${src.run}' was planned for ${promptShape(model)} (${share}); give it its own run`,
        };
        continue;
      }
      c.bytes = estimateBytes(c.config, promptSets, config.batch_size);
    }
    runs.push({ run: src.run, checkpoints, promptSets, config: model });
  }
  if (runs.every((r) => r.checkpoints.length === 0) && !(opts.allowEmptyGlobs ?? false)) {
    const lines = emptyGlobs.map((e) => configError(loaded.file, e.path, e.reason).message);
    throw new HeadsweepError(lines.join('\n'), { stage: 'config', file: loaded.file, key: emptyGlobs[0].path });
  }
  warnings.push(...iclWarnings(config, runs));

  const largest = runs.reduce((m, r) => r.checkpoints.reduce((n, c) => Math.max(n, c.bytes), m), 1);
  // One more than the workers keeps every worker busy while a finished result is written.
  const maxInFlight = Math.max(1, Math.min(config.workers + 1, Math.floor(memoryBudgetBytes / largest)));
  return { configFile: loaded.file, config, outDir, runs, bigram, memoryBudgetBytes, maxInFlight, warnings };
}

function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** The plan as `validate` prints it: runs, checkpoints with steps, prompt sets, heads, rough work. */
export function describePlan(plan: Plan): string {
  const c = plan.config;
  const lines: string[] = [];
  const all = plannedCheckpoints(plan);
  const bad = all.filter((p) => p.problem !== null);
  lines.push(`sweep '${c.name}' from ${plan.configFile}`);
  lines.push(`  output   ${plan.outDir} (${c.output.formats.join(', ')})`);
  lines.push(`  metrics  ${c.metrics.join(', ')}`);
  if (plan.bigram !== null) {
    lines.push(`  bigram   ${plan.bigram.file} (${plan.bigram.tokenizer}, ${formatCount(plan.bigram.bigrams.total)} token pairs)`);
  }
  lines.push(`  compute  backend ${c.backend}, ${c.workers} worker(s), batch ${c.batch_size}, up to ${plan.maxInFlight} checkpoint(s) in flight (budget ${formatBytes(plan.memoryBudgetBytes)})`);
  let totalTokenLayers = 0;
  let totalHeads = 0;
  for (const r of plan.runs) {
    lines.push('');
    if (r.checkpoints.length === 0) {
      lines.push(`run ${r.run}: no checkpoints yet`);
    } else if (r.config === null) {
      lines.push(`run ${r.run}: ${r.checkpoints.length} checkpoint(s), none readable`);
    } else {
      const m = r.config;
      const heads = m.n_layers * m.n_heads;
      lines.push(`run ${r.run}: ${r.checkpoints.length} checkpoint(s); ${plural(m.n_layers, 'layer')} × ${plural(m.n_heads, 'head')} = ${plural(heads, 'head')}, d_model ${m.d_model}, d_vocab ${m.d_vocab}, n_ctx ${m.n_ctx}`);
      for (const s of r.promptSets) {
        const tokens = s.sequences.reduce((a, q) => a + q.length, 0);
        const lengths = s.sequences.map((q) => q.length);
        const [shortest, longest] = lengths.reduce(([lo, hi], n) => [Math.min(lo, n), Math.max(hi, n)], [Infinity, 0]);
        const len = shortest === longest ? `${shortest}` : `${shortest}-${longest}`;
        lines.push(`  prompt set ${s.name}: ${s.sequences.length} sequences × ${len} tokens = ${formatCount(tokens)} tokens`);
      }
      const tokens = r.promptSets.reduce((a, s) => a + s.sequences.reduce((b, q) => b + q.length, 0), 0);
      const good = r.checkpoints.filter((p) => p.problem === null).length;
      totalTokenLayers += good * tokens * m.n_layers;
      totalHeads += good * heads;
      lines.push(`  work: ${good} × ${formatCount(tokens)} tokens × ${plural(m.n_layers, 'layer')} = ${formatCount(good * tokens * m.n_layers)} token-layers, ${formatCount(good * heads * r.promptSets.length)} head scores`);
    }
    for (const p of r.checkpoints) {
      const step = p.step === null ? 'step ?' : `step ${p.step}`;
      const read = p.source === null ? '' : `${p.source.family}, ${p.source.container}; `;
      const size = p.problem === null ? `${read}~${formatBytes(p.bytes)} peak` : `UNREADABLE (${p.problem.stage}): ${p.problem.message}`;
      lines.push(`  ${step.padEnd(14)} ${p.path}  ${size}`);
    }
  }
  lines.push('');
  lines.push(`total: ${all.length} checkpoint(s) in ${plan.runs.length} run(s), ${formatCount(totalHeads)} heads, ${formatCount(totalTokenLayers)} token-layers${bad.length > 0 ? `; ${bad.length} unreadable` : ''}`);
  for (const w of summarise(plan.warnings, 'warnings')) lines.push(`warning: ${w}`);
  if (bad.length > 0) {
    const names = bad.slice(0, 3).map((p) => p.path).join(', ') + (bad.length > 3 ? ', ...' : '');
    lines.push(`warning: ${plural(bad.length, 'checkpoint')} cannot be read (${names}): a sweep records ${bad.length === 1 ? 'it' : 'them'} in errors and exits 3`);
  }
  return lines.join('\n');
}
