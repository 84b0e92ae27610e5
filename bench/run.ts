/**
 * `npm run bench`: sweep speed and memory on seeded random-weight checkpoints of four
 * research shapes (attn-only-2L, GPT-2 small without and with MLPs, Pythia-160M), through
 * the real pipeline (config → pool → tables), each with every head score and then with
 * the loss scores too, beside the TransformerLens-style PyTorch figures where they were
 * measured; plus training throughput. Prints figures; asserts nothing. Checkpoints are
 * generated once into bench/.data (ignored by git) and reused.
 *
 *   npm run bench                      every case, default workers (available cores)
 *   npm run bench -- --case 2l --metrics loss --workers 1 --backend cpu --repeat 5
 *   npm run bench -- --case 2l --checkpoints 1     a lone checkpoint, shared by the workers
 *
 * Each sweep starts a cold pool, as a nightly run does; the median of `--repeat` sweeps
 * is printed with the spread, since a shared 2-core machine varies by ±15% run to run.
 * `--case startup` times the command line itself (bin/headsweep.js, the compiled build):
 * `--help`, and a sweep from process start to its first checkpoint started.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import yargs from 'yargs';
import { modelConfig, parameterCount, type ModelConfig } from '../src/model/config.ts';
import { writeSafetensors } from '../src/checkpoint/containers/safetensors.ts';
import { METRICS } from '../src/metrics/registry.ts';
import { BACKENDS, type BackendChoice } from '../src/names.ts';
import { initWeights } from '../src/train/init.ts';
import { loadConfig } from '../pipeline/config.ts';
import { buildPlan, type Plan } from '../pipeline/plan.ts';
import { runSweep } from '../pipeline/sweep.ts';
import { spawn, spawnSync } from 'node:child_process';
import { matMulRate, productGflop } from './floor.ts';

const DATA = resolve(import.meta.dirname, '.data');

interface Case {
  name: string;
  checkpoints: number;
  config: ModelConfig;
  /**
   * The same sweep done TransformerLens-style in PyTorch on this machine (cached forward,
   * head detection, factored-OV eigenvalues per head, dense composition; with logits and
   * the loss for the loss metrics), seconds per checkpoint, and the target set against it.
   */
  peer?: Partial<Record<MetricsChoice, { seconds: string; target: number }>>;
}

/** Every head score (the registry's scores per head or pair of heads), or those and the loss scores. */
type MetricsChoice = 'heads' | 'loss';

function metricNames(choice: MetricsChoice): string[] {
  const heads = METRICS.filter((m) => m.per === 'head' || m.per === 'head_pair').map((m) => m.name);
  return choice === 'heads' ? heads : [...heads, ...METRICS.filter((m) => m.kind === 'loss').map((m) => m.name)];
}

const LN_STANDARD = { attn_only: true, normalization_type: 'LN', positional_embedding_type: 'standard', eps: 1e-5, bos_token_id: 0 } as const;
const GPT2_SMALL = { n_layers: 12, n_heads: 12, d_model: 768, d_head: 64, n_ctx: 1024 } as const;

const CASES: Record<string, Case> = {
  // The attn-only-2L research model shape (TransformerLens `attn-only-2l`).
  '2l': {
    name: 'attn-only-2l', checkpoints: 4,
    config: modelConfig({ n_layers: 2, n_heads: 8, d_model: 512, d_head: 64, d_vocab: 48262, n_ctx: 1024, ...LN_STANDARD }),
    peer: { heads: { seconds: '2.4–2.6', target: 0.8 }, loss: { seconds: '6.4', target: 6.4 } },
  },
  // GPT-2 small's attention stack without MLPs.
  gpt2: { name: 'attn-only-gpt2-small', checkpoints: 2, config: modelConfig({ ...GPT2_SMALL, d_vocab: 50257, ...LN_STANDARD }), peer: { heads: { seconds: '274', target: 30 } } },
  // GPT-2 small itself.
  'gpt2-mlp': {
    name: 'gpt2-small', checkpoints: 2,
    config: modelConfig({ ...GPT2_SMALL, d_vocab: 50257, ...LN_STANDARD, attn_only: false, d_mlp: 3072, act_fn: 'gelu_new' }),
    peer: { heads: { seconds: '252', target: 36 } },
  },
  // Pythia-160M (GPT-NeoX): rotary on 16 of each head's 64 dimensions, attention and MLP in parallel.
  pythia: {
    name: 'pythia-160m', checkpoints: 2,
    config: modelConfig({
      ...GPT2_SMALL, n_ctx: 2048, d_vocab: 50304, ...LN_STANDARD, attn_only: false, d_mlp: 3072, act_fn: 'gelu',
      positional_embedding_type: 'rotary', rotary_dim: 16, parallel_attn_mlp: true,
    }),
  },
};

/** Seeded random checkpoints, written once. */
function ensureCheckpoints(c: Case, checkpoints: number): string {
  const dir = join(DATA, c.name);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < checkpoints; i++) {
    const file = join(dir, `step-${i}.safetensors`);
    if (existsSync(file)) continue;
    process.stderr.write(`bench: generating ${file} (${(parameterCount(c.config) / 1e6).toFixed(1)}M parameters)\n`);
    const tensors = Object.fromEntries(initWeights(c.config, 1000 + i));
    writeSafetensors(file, tensors, { config: JSON.stringify(c.config), step: String(i) });
  }
  return dir;
}

/** The sweep's checkpoint paths: the first `checkpoints` of the case's. */
function checkpointPaths(dir: string, checkpoints: number): string {
  return Array.from({ length: checkpoints }, (_, i) => JSON.stringify(join(dir, `step-${i}.safetensors`))).join(', ');
}

function sweepConfig(c: Case, dir: string, backend: BackendChoice, batchSize: number, metrics: MetricsChoice = 'heads', checkpoints = c.checkpoints): string {
  const file = join(DATA, `${c.name}.yaml`);
  writeFileSync(file, [
    `name: bench-${c.name}`,
    `output: out-${c.name}`,
    'checkpoints:',
    `  - run: ${c.name}`,
    `    paths: [${checkpointPaths(dir, checkpoints)}]`,
    'prompt_sets:',
    // The default prompt set of the issue: 64 × (1 + 25·4) tokens.
    '  - {name: rrt, kind: repeated_random, length: 25, repeats: 4, count: 64, seed: 0}',
    `metrics: [${metricNames(metrics).join(', ')}]`,
    `batch_size: ${batchSize}`,
    `backend: ${backend}`,
    '',
  ].join('\n'));
  return file;
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** One sweep of a case's checkpoints from a cold pool. */
interface SweepRun {
  wall: number;
  /** CPU seconds of the whole process (every worker thread), from the sweep's start to its end. */
  cpu: number;
  /** Seconds per checkpoint once every worker had finished its first (null with one checkpoint per worker). */
  warm: number | null;
  /** Mean per-checkpoint stage seconds, from the checkpoints table. */
  stages: Record<'load' | 'forward' | 'weight' | 'write', number>;
  backend: string;
  workers: number;
  n: number;
  exitCode: number;
  /** The sweep's plan: its model, prompt sets and settings. */
  plan: Plan;
}

async function sweepOnce(c: Case, metrics: MetricsChoice, checkpoints: number, workers: number, backend: BackendChoice, batchSize: number): Promise<SweepRun> {
  const dir = ensureCheckpoints(c, checkpoints);
  const configFile = sweepConfig(c, dir, backend, batchSize, metrics, checkpoints);
  const outDir = join(DATA, `out-${c.name}`);
  rmSync(outDir, { recursive: true, force: true });
  const plan = await buildPlan(loadConfig(configFile), { workers });

  const finished: number[] = [];
  const started = performance.now();
  const cpuStart = process.cpuUsage();
  const result = await runSweep(plan, { log: (e) => e.event === 'checkpoint_finished' && finished.push(performance.now()) });
  const wall = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpuStart);
  const cpu = (used.user + used.system) / 1e6;

  const files = readdirSync(join(outDir, 'checkpoints', `run=${c.name}`)).filter((f) => f.endsWith('.arrow'));
  const rows = files.map((f) => tableFromIPC(readFileSync(join(outDir, 'checkpoints', `run=${c.name}`, f))).get(0)!.toJSON());
  const stage = (k: string) => mean(rows.map((r) => Number(r[`${k}_seconds`])));
  const threads = result.manifest.workers;
  // Every worker's first checkpoint pays its start-up (heap growth, compilation); after
  // the first `threads` finish, what is left runs warm.
  const warm = rows.length > threads ? (wall - (finished[threads - 1] - started) / 1000) / (rows.length - threads) : null;
  return {
    wall, cpu, warm, n: rows.length, backend: result.manifest.backend, workers: threads, exitCode: result.exitCode, plan,
    stages: { load: stage('load'), forward: stage('forward'), weight: stage('weight'), write: stage('write') },
  };
}

/** What a sweep costs per checkpoint: once every worker is past its first when there are more, else wall over checkpoints. */
function perCheckpoint(r: SweepRun): number {
  return r.warm ?? r.wall / r.n;
}

/** Sweeps a case `repeat` times from a cold pool and prints the median run, and the spread. */
async function benchSweep(c: Case, metrics: MetricsChoice, checkpoints: number, workers: number, backend: BackendChoice, batchSize: number, repeat: number): Promise<void> {
  const runs: SweepRun[] = [];
  for (let i = 0; i < repeat; i++) runs.push(await sweepOnce(c, metrics, checkpoints, workers, backend, batchSize));
  // Measured once, after the first sweeps, alone, so that it takes no memory or time from them.
  const rate = await matMulRate(backend);
  runs.sort((a, b) => a.wall - b.wall);
  const median = runs[Math.floor((runs.length - 1) / 2)];
  const { n, stages } = median;
  const tokens = 64 * 101 * n;
  const heads = c.config.n_layers * c.config.n_heads * n;
  const s2 = (x: number) => x.toFixed(2);
  const { d_mlp: dMlp } = c.config;
  const shape = [
    `${c.config.n_layers} layers × ${c.config.n_heads} heads`, `d_model ${c.config.d_model}`, dMlp === null ? 'attention only' : `d_mlp ${dMlp} ${c.config.act_fn}`,
    `d_vocab ${c.config.d_vocab}`, c.config.positional_embedding_type === 'rotary' ? `rotary_dim ${c.config.rotary_dim}` : c.config.positional_embedding_type,
    ...(c.config.parallel_attn_mlp ? ['parallel blocks'] : []),
  ];
  console.log(`\n${c.name} (${shape.join(', ')}): ${metricNames(metrics).join(', ')}`);
  console.log(`  backend ${median.backend}, workers ${median.workers}, batch ${batchSize}, checkpoints ${n} (exit ${median.exitCode}), median of ${runs.length} sweep${runs.length === 1 ? '' : 's'}`);
  console.log(`  per checkpoint, worker time (summed over the threads that shared it): load ${s2(stages.load)} s, forward ${s2(stages.forward)} s, weight scores ${s2(stages.weight)} s, write ${s2(stages.write)} s`);
  console.log(`  wall ${median.wall.toFixed(1)} s = ${s2(median.wall / n)} s per checkpoint (all ${runs.length}: ${runs.map((r) => s2(r.wall / r.n)).join(', ')}); ${(tokens / median.wall).toFixed(0)} tokens/s; ${(heads / median.wall).toFixed(1)} heads/s`);
  // Other processes stretch wall time; CPU time is what the sweep itself used (on a quiet machine, about wall time × workers).
  const cpu = runs.map((r) => r.cpu / r.n);
  console.log(`  CPU time, all threads: ${s2(medianOf(cpu))} s per checkpoint (all: ${cpu.map(s2).join(', ')}), i.e. ${s2(medianOf(cpu) / median.workers)} s per checkpoint with a core per worker`);
  const warm = runs.map((r) => r.warm).filter((w): w is number => w !== null);
  if (warm.length > 0) console.log(`  after each worker's first checkpoint: ${s2(medianOf(warm))} s per checkpoint (all: ${warm.map(s2).join(', ')})`);
  // The floor (floor.ts): the matrix products alone at the fastest rate this backend multiplies at here.
  const work = productGflop(median.plan);
  const gflop = work.forward + work.unembed + work.weights;
  const floor = gflop / (rate.gflops * median.workers);
  console.log(`  matrix products per checkpoint: ${gflop.toFixed(1)} GFLOP (forward ${work.forward.toFixed(1)}, unembedding ${work.unembed.toFixed(1)}, weight scores ${work.weights.toFixed(1)}); at ${rate.gflops.toFixed(1)} GFLOP/s per thread (${rate.backend}'s best 2-D matMul here, just measured) they alone take ${s2(gflop / rate.gflops)} s on one thread: a floor of ${s2(floor)} s per checkpoint on ${median.workers} workers`);
  // The peer's figures are per checkpoint of a sweep of the case's size, what the target compares.
  const peer = n === c.checkpoints ? c.peer?.[metrics] : undefined;
  if (peer !== undefined) {
    const ours = medianOf(runs.map(perCheckpoint));
    const verdict = ours <= peer.target ? 'met' : 'NOT met';
    const belowFloor = peer.target < floor ? ', below the floor' : '';
    console.log(`  TransformerLens-style PyTorch on this machine: ${peer.seconds} s per checkpoint; here ${s2(ours)} s (target ≤ ${peer.target} s${belowFloor}: ${verdict})`);
  }
  console.log(`  peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB (whole process, all worker threads)`);
}

const BIN = resolve(import.meta.dirname, '..', 'bin', 'headsweep.js');

function medianOf(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** Seconds from spawning `headsweep <args>` until `until(stderr so far)` holds, or until it exits; the process is then stopped. */
function timeCli(args: string[], until?: (stderr: string) => boolean): Promise<number> {
  return new Promise((done, fail) => {
    const started = performance.now();
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let seconds: number | null = null;
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (seconds === null && until?.(stderr)) {
        seconds = (performance.now() - started) / 1000;
        child.kill('SIGTERM');
      }
    });
    child.on('error', fail);
    child.on('close', (code) => {
      if (seconds !== null) return done(seconds);
      if (until !== undefined || code !== 0) return fail(new Error(`headsweep ${args.join(' ')} exited ${code}: ${stderr}`));
      done((performance.now() - started) / 1000);
    });
  });
}

/** What a user waits for before anything happens: `--help`, and a cold sweep up to its first checkpoint. */
async function benchStartup(c: Case, workers: number, backend: BackendChoice, batchSize: number, repeat: number): Promise<void> {
  const config = sweepConfig(c, ensureCheckpoints(c, c.checkpoints), backend, batchSize);
  const out = join(DATA, 'out-startup');
  const help: number[] = [];
  const first: number[] = [];
  for (let i = 0; i < repeat; i++) help.push(await timeCli(['--help']));
  for (let i = 0; i < repeat; i++) {
    rmSync(out, { recursive: true, force: true });
    first.push(await timeCli(['sweep', config, '--out', out, '--workers', String(workers), '--log-format', 'json'], (e) => e.includes('"event":"checkpoint_started"')));
  }
  rmSync(out, { recursive: true, force: true });
  const spread = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
  console.log(`\nstart-up of bin/headsweep.js (compiled), median of ${repeat}:`);
  console.log(`  --help: ${medianOf(help).toFixed(2)} s wall (all: ${spread(help)})`);
  console.log(`  sweep ${c.name}, ${workers} workers: ${medianOf(first).toFixed(2)} s from process start to the first checkpoint started (all: ${spread(first)})`);
}

const SWEEPS = Object.keys(CASES) as (keyof typeof CASES)[];
const argv = await yargs(process.argv.slice(2))
  .option('case', { choices: ['startup', ...SWEEPS, 'train', 'all'], default: 'all' })
  .option('metrics', { choices: ['heads', 'loss'] as const, description: 'every head score, or those and the loss scores; default: both in turn' })
  .option('checkpoints', { type: 'number', description: "checkpoints per sweep (default the case's: 4 for 2l, else 2); 1 shows a lone checkpoint shared by the workers" })
  .option('workers', { type: 'number', default: availableParallelism() })
  .option('backend', { choices: ['auto', ...BACKENDS] as const, default: 'auto' as const })
  .option('batch-size', { type: 'number', default: 8, description: 'sequences per forward pass (the config default)' })
  .option('repeat', { type: 'number', description: 'sweeps per case (the median is reported); default 3' })
  .strict()
  .parseAsync();

if (argv.case === 'all') {
  // One process per case, so each peak RSS is that case's alone.
  console.log(`headsweep bench on ${availableParallelism()} cores, Node ${process.version}`);
  for (const name of ['startup', ...SWEEPS, 'train']) {
    const args = [...process.execArgv, process.argv[1], '--case', name, '--workers', String(argv.workers), '--backend', argv.backend, '--batch-size', String(argv['batch-size'])];
    for (const key of ['metrics', 'checkpoints', 'repeat'] as const) if (argv[key] !== undefined) args.push(`--${key}`, String(argv[key]));
    const child = spawnSync(process.execPath, args, { stdio: 'inherit' });
    if (child.status !== 0) process.exitCode = child.status ?? 1;
  }
} else if (argv.case === 'startup') {
  await benchStartup(CASES['2l'], argv.workers, argv.backend, argv['batch-size'], argv.repeat ?? 5);
} else if (argv.case === 'train') {
  const { benchTraining } = await import('./train.ts');
  await benchTraining(argv.backend);
} else {
  const c = CASES[argv.case];
  for (const metrics of argv.metrics === undefined ? (['heads', 'loss'] as const) : [argv.metrics]) {
    await benchSweep(c, metrics, argv.checkpoints ?? c.checkpoints, argv.workers, argv.backend, argv['batch-size'], argv.repeat ?? 3);
  }
}
