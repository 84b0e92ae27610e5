/**
 * Sweep configs: a bad config stops the real CLI with exit code 2 and a message naming the
 * YAML path at fault; good configs parse with their defaults and plan as documented.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, describe, expect, test } from 'vitest';
import { EXIT } from '../pipeline/cli.ts';
import { planFromArgs, type ConfigArgs } from '../pipeline/commands/validate.ts';
import { loadConfig, parseConfig } from '../pipeline/config.ts';
import type { Manifest } from '../pipeline/manifest.ts';
import { buildPlan } from '../pipeline/plan.ts';
import { loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { writeSafetensors } from '../src/checkpoint/containers/safetensors.ts';
import { DEFAULT_RULES } from '../src/classify.ts';
import { HeadsweepError } from '../src/errors.ts';
import { METRIC_NAMES } from '../src/score.ts';
import { headsweep } from './helpers/cli.ts';
import { tempDir } from './helpers/safetensors.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const DEMO = resolve('data/demo/planted-2l');
const NAT = resolve('data/prompts/nat.jsonl');
const CORPUS = resolve('data/corpus/npm-readmes.txt');
const FIXTURES = resolve('test/fixtures');

/** A valid config (absolute paths, so it holds wherever it is written); `edit` breaks one thing. */
function configText(edit: (lines: string[]) => string[] = (l) => l): string {
  return edit([
    'name: t',
    'output: out',
    'checkpoints:',
    '  - run: planted-2l',
    `    paths: ["${DEMO}/*.safetensors"]`,
    'prompt_sets:',
    '  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 4, seed: 0}',
    `  - {name: nat, kind: tokens, path: "${NAT}"}`,
    'workers: 1',
  ]).join('\n');
}

describe('a bad config: the real CLI exits 2 and names the YAML path', () => {
  const cases: { name: string; command: string; edit: (l: string[]) => string[]; expected: RegExp }[] = [
    {
      name: 'unknown key',
      command: 'validate',
      edit: (l) => [...l.map((x) => x.replace('seed: 0}', 'seed: 0, sed: 1}')), 'worker: 2'],
      expected: /bad\.yaml → at prompt_sets\[0\]\.sed: unknown key \(did you mean 'seed'\?\) \(line 7\)\n.*bad\.yaml → at worker: unknown key \(did you mean 'workers'\?\) \(line 10\)/,
    },
    {
      // The line of the key, also when its value is a block starting on the next line.
      name: 'block values and misspelt keys',
      command: 'validate',
      edit: (l) => [
        ...l.map((x) => x.replace('output: out', 'output:\n  dir: out\n  format: [arrow]')),
        'memory_budget:', '  mb: 100',
        'classify:', '  label: induction',
      ],
      expected: new RegExp([
        String.raw`bad\.yaml → at output\.format: unknown key \(did you mean 'formats'\?\) \(line 4\)`,
        String.raw`.*bad\.yaml → at classify: expected array, received object \(line 14\)`,
        String.raw`.*bad\.yaml → at memory_budget: unknown key \(did you mean 'memory_budget_mb'\?\) \(line 12\)`,
      ].join('\n')),
    },
    {
      name: 'wrong type',
      command: 'validate',
      edit: (l) => [...l.slice(0, 7), '  - {name: rr2, kind: repeated_random, count: 4, seed: zero}', ...l.slice(8)],
      expected: /bad\.yaml → at prompt_sets\[1\]\.seed: expected number, received string \(line 8\)/,
    },
    {
      // Through `sweep`: the config is refused before any worker starts.
      name: 'missing tokens file',
      command: 'sweep',
      edit: (l) => l.map((x) => x.replace(NAT, `${NAT}.missing`)),
      expected: new RegExp(`bad\\.yaml → at prompt_sets\\[1\\]\\.path: no such file: ${NAT}\\.missing`),
    },
    {
      name: 'bigram_kl without a corpus',
      command: 'validate',
      edit: (l) => [...l, 'metrics: [prefix_matching, bigram_kl]'],
      expected: /bad\.yaml → at metrics\[1\]: bigram_kl needs a corpus: add bigram: \{path: <text file>, tokenizer: byte\|char64\} \(line 10\)/,
    },
    {
      name: 'no glob matching anything',
      command: 'sweep',
      // Every glob is named, not only the first.
      edit: (l) => l.flatMap((x) => (x.includes(DEMO)
        ? ['    paths: ["nowhere/*.safetensors", "nor-here/*.st"]', '  - {run: later, paths: ["later/*.safetensors"]}']
        : [x])),
      expected: /bad\.yaml → at checkpoints\[0\]\.paths\[0\]: "nowhere\/\*\.safetensors" matches no files .*\n.*bad\.yaml → at checkpoints\[0\]\.paths\[1\]: "nor-here\/\*\.st" matches no files .*\n.*bad\.yaml → at checkpoints\[1\]\.paths\[0\]: "later\/\*\.safetensors" matches no files/,
    },
  ];

  test.concurrent.each(cases)('$name', async ({ name, command, edit, expected }) => {
    const dir = name.replace(/\W+/g, '-');
    mkdirSync(join(tmp.dir, dir));
    const file = tmp.file(join(dir, 'bad.yaml'), configText(edit));
    const run = await headsweep([command, file]);
    expect(run.stderr).toMatch(expected);
    expect(run.code).toBe(EXIT.badConfig);
    expect(run.stdout).toBe('');
    expect(existsSync(join(tmp.dir, dir, 'out'))).toBe(false);
  });
});

describe('more config errors, through the same functions the CLI calls', () => {
  /** The message `validate` would print for a config text. */
  async function failure(text: string, args: Partial<ConfigArgs> = {}): Promise<{ message: string; exitCode: number }> {
    const state = { exitCode: EXIT.ok };
    const file = tmp.file(`lib-${Math.random().toString(36).slice(2)}.yaml`, text);
    const err = await planFromArgs(state, { config: file, ...args }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(HeadsweepError);
    expect((err as HeadsweepError).stage).toBe('config');
    return { message: (err as HeadsweepError).message, exitCode: state.exitCode };
  }

  test('an unknown output format names the list item', async () => {
    const { message, exitCode } = await failure(configText((l) => l.map((x) => x.replace('output: out', 'output: {dir: out, formats: [arrow, csv]}'))));
    expect(message).toMatch(/→ at output\.formats\[1\]: .*"arrow"\|"parquet" \(line 2\)/);
    expect(exitCode).toBe(EXIT.badConfig);
  });

  test('a prompt set that does not fit the model names the prompt set', async () => {
    const { message } = await failure(configText((l) => l.map((x) => x.replace('repeats: 4', 'repeats: 6'))));
    expect(message).toMatch(/→ at prompt_sets\[0\]: .*1 \+ 12 × 6 = 73 tokens exceed the model's n_ctx 64/);
  });

  test('a run listed twice and icl positions out of order', async () => {
    const { message } = await failure(configText((l) => [
      ...l.slice(0, 5), '  - {run: planted-2l, paths: ["x"]}', ...l.slice(5), 'icl: {early: 60, late: 20}',
    ]));
    expect(message).toMatch(/→ at checkpoints\[1\]\.run: run 'planted-2l' is already listed at checkpoints\[0\]/);
    expect(message).toMatch(/→ at icl\.late: late \(20\) must be after early \(60\)/);
  });

  test('a step_regex with two capture groups is refused: which one is the step?', async () => {
    const { message, exitCode } = await failure(configText((l) => l.map((x) => (x.startsWith('    paths:') ? `${x}\n    step_regex: "(step|iter)(\\\\d+)"` : x))));
    expect(message).toMatch(/→ at checkpoints\[0\]\.step_regex: has 2 capture groups; it needs exactly one, around the step's digits \(write \(\?:\.\.\.\) for any other group\) \(line 6\)/);
    expect(exitCode).toBe(EXIT.badConfig);
    // Named and non-capturing groups are fine.
    const ok = parseConfig(configText((l) => l.map((x) => (x.startsWith('    paths:') ? `${x}\n    step_regex: "(?:step|iter)(?<step>\\\\d+)"` : x))), 'ok.yaml');
    expect(ok.checkpoints[0].step_regex).toBe('(?:step|iter)(?<step>\\d+)');
  });

  test('a missing bigram corpus names bigram.path', async () => {
    const { message, exitCode } = await failure(configText((l) => [...l, `bigram: {path: "${CORPUS}.missing", tokenizer: char64}`]));
    expect(message).toMatch(new RegExp(`→ at bigram\\.path: no such file: ${CORPUS}\\.missing$`));
    expect(exitCode).toBe(EXIT.badConfig);
  });

  test('a bigram tokenizer with more ids than a run has names the run and bigram.tokenizer', async () => {
    const { message } = await failure(configText((l) => [...l, `bigram: {path: "${CORPUS}", tokenizer: char64}`]));
    expect(message).toMatch(/→ at bigram\.tokenizer: tokenizer 'char64' has 64 ids but run 'planted-2l' has d_vocab 16/);
  });

  test('--workers 0 is refused with exit code 2', async () => {
    const { message, exitCode } = await failure(configText(), { workers: 0 });
    expect(message).toBe('--workers must be a whole number >= 1, got 0');
    expect(exitCode).toBe(EXIT.badConfig);
  });
});

describe('good configs', () => {
  test('defaults fill every optional key; a plain output folder means Arrow and Parquet files', () => {
    const c = parseConfig(configText((l) => l.filter((x) => x !== 'workers: 1')), 'inline.yaml');
    expect(c.output).toEqual({ dir: 'out', formats: ['arrow', 'parquet'] });
    // Every metric but bigram_kl, which needs a corpus; with one it is among the defaults.
    expect(c.metrics).toEqual(METRIC_NAMES.filter((m) => m !== 'bigram_kl'));
    const withCorpus = parseConfig(configText((l) => [...l, 'bigram: {path: corpus.txt, tokenizer: byte}']), 'inline.yaml');
    expect(withCorpus.metrics).toEqual([...METRIC_NAMES]);
    expect(withCorpus.bigram).toEqual({ path: 'corpus.txt', tokenizer: 'byte' });
    expect(c.icl).toEqual({ early: 10, late: 90 });
    expect(c.classify).toEqual(DEFAULT_RULES);
    expect(c.batch_size).toBe(8);
    expect(c.backend).toBe('auto');
    expect(c.workers).toBeGreaterThanOrEqual(1);
    expect(c.prompt_sets[0]).toMatchObject({ kind: 'repeated_random', length: 12, repeats: 4, count: 4, seed: 0 });
  });

  test('the commented nightly example and the demo config follow the schema', () => {
    const nightly = parseConfig(readFileSync('configs/nightly.example.yaml', 'utf8'), 'configs/nightly.example.yaml');
    expect(nightly.output).toEqual({ dir: '../out/nightly', formats: ['arrow', 'parquet'] });
    expect(nightly.checkpoints.map((c) => c.run)).toEqual(['attn-only-2l', 'attn-only-1l']);
    expect(nightly.memory_budget_mb).toBe(8192);
    const demo = loadConfig('configs/demo.yaml');
    expect(demo.config.checkpoints.map((c) => c.run)).toEqual(['attn-only-1l', 'attn-only-2l', 'gelu-2l']);
  });

  test('the commented nightly example validates and sweeps the bundled data, with no warning', async () => {
    const validated = await headsweep(['validate', 'configs/nightly.example.yaml']);
    expect(validated.code, validated.stdout + validated.stderr).toBe(EXIT.ok);
    expect(validated.stdout).not.toContain('warning:');
    expect(validated.stdout).toContain('total: 44 checkpoint(s) in 2 run(s)');
    // step_regex agrees with the steps the headers carry.
    for (const step of [0, 575, 1500]) expect(validated.stdout).toMatch(new RegExp(`step ${step} +\\.\\./data/checkpoints/attn-only-2l/step-${String(step).padStart(6, '0')}\\.safetensors`));
    const out = join(tmp.dir, 'nightly-example');
    const swept = await headsweep(['sweep', 'configs/nightly.example.yaml', '--out', out]);
    expect(swept.code, swept.stderr).toBe(EXIT.ok);
    expect(swept.stderr).not.toContain('warning');
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;
    expect(manifest.counts).toMatchObject({ checkpoints_planned: 44, scored: 44, failed: 0 });
    // icl_score has a value on every prompt set of every checkpoint.
    const scores = readdirSync(join(out, 'checkpoint_scores', 'run=attn-only-2l')).filter((f) => f.endsWith('.arrow'))
      .flatMap((f) => tableFromIPC(readFileSync(join(out, 'checkpoint_scores', 'run=attn-only-2l', f))).toArray());
    expect(scores.length).toBeGreaterThan(0);
    expect(scores.filter((r) => typeof r.icl_score !== 'number')).toEqual([]);
  });

  test.concurrent('validate prints the demo plan: runs, steps, prompt sets, heads, work', async () => {
    const run = await headsweep(['validate', 'configs/demo.yaml', '--workers', '2']);
    expect(run.code).toBe(EXIT.ok);
    const out = run.stdout;
    expect(out).toContain("sweep 'demo' from configs/demo.yaml");
    expect(out).toContain('run attn-only-1l: 22 checkpoint(s); 1 layer × 4 heads = 4 heads');
    expect(out).toContain('run attn-only-2l: 22 checkpoint(s); 2 layers × 4 heads = 8 heads');
    expect(out).toContain('run gelu-2l: 12 checkpoint(s); 2 layers × 4 heads = 8 heads');
    // 1 BOS + 20 × 4 = 81 tokens; text windows are 95 tokens after BOS.
    expect(out).toMatch(/prompt set rrt: 16 sequences × 81 tokens = 1296 tokens/);
    expect(out).toMatch(/prompt set readmes: 32 sequences × 96 tokens = 3072 tokens/);
    for (const step of [0, 500, 575, 1500]) expect(out).toMatch(new RegExp(`step ${step} +\\.\\./data/checkpoints/attn-only-2l/step-${String(step).padStart(6, '0')}\\.safetensors`));
    // 22 × 4368 tokens × 1 layer + (22 + 12) × 4368 × 2 layers = 393.1k; 22 × 4 + (22 + 12) × 8 = 360 heads
    expect(out).toContain('total: 56 checkpoint(s) in 3 run(s), 360 heads, 393.1k token-layers');
  });

  test('relative paths start at the config folder; step_regex names steps the header lacks', async () => {
    const dir = join(tmp.dir, 'relative');
    mkdirSync(join(dir, 'ckpts'), { recursive: true });
    // A checkpoint without `step` metadata, so only its file name says the step.
    const ck = loadCheckpoint(join(DEMO, 'step00500.safetensors'));
    writeSafetensors(join(dir, 'ckpts', 'model-step77.safetensors'), Object.fromEntries(ck.weights), { config: JSON.stringify(ck.config) });
    copyFileSync(join(DEMO, 'step01000.safetensors'), join(dir, 'ckpts', 'model-step999.safetensors'));
    copyFileSync(NAT, join(dir, 'nat.jsonl'));
    const file = tmp.file('relative/sweep.yaml', [
      'name: rel',
      'output: out',
      'checkpoints:',
      '  - {run: r, paths: ["ckpts/*.safetensors"], step_regex: "step(\\\\d+)"}',
      'prompt_sets:',
      '  - {name: nat, kind: tokens, path: nat.jsonl}',
      'workers: 1',
    ].join('\n'));
    const plan = await buildPlan(loadConfig(file));
    expect(plan.outDir).toBe(join(dir, 'out'));
    // Header metadata wins over the file name (999 in the name, 1000 in the header).
    expect(plan.runs[0].checkpoints.map((c) => [c.path, c.step])).toEqual([
      ['ckpts/model-step77.safetensors', 77],
      ['ckpts/model-step999.safetensors', 1000],
    ]);
    expect(plan.runs[0].promptSets[0].sequences).toHaveLength(8);
    // --out is a command-line path: it starts at the working directory.
    expect((await buildPlan(loadConfig(file), { out: 'elsewhere' })).outDir).toBe(resolve('elsewhere'));
  });

  test('--out stands in for a config without output; with neither, exit 2 names output and --out', async () => {
    const file = tmp.file('no-output.yaml', configText((l) => l.filter((x) => !x.startsWith('output:'))));
    const given = await headsweep(['validate', file, '--out', join(tmp.dir, 'given-out')]);
    expect(given.code, given.stderr).toBe(EXIT.ok);
    expect(given.stdout).toContain(`output   ${join(tmp.dir, 'given-out')} (`);
    const swept = await headsweep(['sweep', file, '--out', join(tmp.dir, 'given-out'), '--format', 'arrow']);
    expect(swept.code, swept.stderr).toBe(EXIT.ok);
    expect(existsSync(join(tmp.dir, 'given-out', 'manifest.json'))).toBe(true);
    const neither = await headsweep(['validate', file]);
    expect(neither.code).toBe(EXIT.badConfig);
    expect(neither.stderr).toMatch(/no-output\.yaml → at output: required: the folder the tables go to \(or give --out\)/);
  });

  test('a run with no checkpoints yet is a warning in the plan and the manifest; the sweep scores the others', async () => {
    const file = tmp.file('not-yet.yaml', configText((l) => [
      ...l.flatMap((x) => (x.includes(DEMO) ? [`    paths: ["${DEMO}/step0000*.safetensors", "${DEMO}/none-*.safetensors"]`, '  - {run: later, paths: ["later/*.safetensors"]}'] : [x])),
      'metrics: [prefix_matching, previous_token]',
    ]));
    const validated = await headsweep(['validate', file]);
    expect(validated.code, validated.stderr).toBe(EXIT.ok);
    const emptyGlob = `checkpoints[0].paths[1]: "${DEMO}/none-*.safetensors" matches no files`;
    const noneYet = `run 'later' has no checkpoints yet: checkpoints[1].paths[0]: "later/*.safetensors" matches no files (relative paths start at ${tmp.dir})`;
    expect(validated.stdout).toContain(`warning: ${emptyGlob}`);
    expect(validated.stdout).toContain(`warning: ${noneYet}`);
    expect(validated.stdout).toContain('run later: no checkpoints yet');
    const swept = await headsweep(['sweep', file, '--out', join(tmp.dir, 'not-yet-out')]);
    expect(swept.code, swept.stderr).toBe(EXIT.ok);
    expect(swept.stderr).toContain(`headsweep: warning: ${noneYet}`);
    expect(swept.stdout).toMatch(/^finished: 1\/1 checkpoints scored on /m);
    const manifest = JSON.parse(readFileSync(join(tmp.dir, 'not-yet-out', 'manifest.json'), 'utf8')) as Manifest;
    expect(manifest.warnings).toEqual([emptyGlob, noneYet]);
  });

  test('icl positions past a prompt set are said once per prompt set; the defaults fit the default prompt set', async () => {
    // Two runs, both scored on nat (21-24 tokens) and the default repeated_random set.
    const file = tmp.file('icl.yaml', [
      'name: icl',
      'output: out',
      'checkpoints:',
      `  - {run: a, paths: ["${FIXTURES}/random-2l-ln-standard.safetensors"]}`,
      `  - {run: b, paths: ["${FIXTURES}/random-2l-ln-standard.safetensors"]}`,
      'prompt_sets:',
      '  - {name: default, kind: repeated_random, count: 2, seed: 0}',
      `  - {name: nat, kind: tokens, path: "${NAT}"}`,
      'metrics: [mean_loss, icl_score]',
      'workers: 1',
    ].join('\n'));
    const icl = parseConfig(readFileSync(file, 'utf8'), file).icl;
    const validated = await headsweep(['validate', file]);
    expect(validated.code, validated.stderr).toBe(EXIT.ok);
    const warning = `prompt set 'nat' has sequences of 21 tokens, fewer than icl.late + 1 = ${icl.late + 1}: its icl_score will be null (lower icl.late, or leave icl_score out of metrics)`;
    expect(validated.stdout.split('\n').filter((l) => l.includes('icl.late'))).toEqual([`warning: ${warning}`]);
    const out = join(tmp.dir, 'icl-out');
    const swept = await headsweep(['sweep', file, '--out', out, '--format', 'arrow']);
    expect(swept.code, swept.stderr).toBe(EXIT.ok);
    expect(swept.stderr.split('\n').filter((l) => l.includes('icl.late'))).toEqual([`headsweep: warning: ${warning}`]);
    const scores = readdirSync(join(out, 'checkpoint_scores', 'run=a')).flatMap((f) => tableFromIPC(readFileSync(join(out, 'checkpoint_scores', 'run=a', f))).toArray());
    expect(scores.map((r) => [r.prompt_set, typeof r.icl_score])).toEqual([['default', 'number'], ['nat', 'object']]);
  });

  test('the memory budget bounds the checkpoints in flight, never below one', async () => {
    let n = 0;
    const plan = async (extra: string[]) => {
      const file = tmp.file(`budget-${n++}.yaml`, configText((l) => [...l.filter((x) => x !== 'workers: 1'), ...extra]));
      return buildPlan(loadConfig(file));
    };
    const roomy = await plan(['workers: 3', 'memory_budget_mb: 4096']);
    expect(roomy.maxInFlight).toBe(4); // one per worker and one being written
    const largest = Math.max(...roomy.runs[0].checkpoints.map((c) => c.bytes));
    // planted-2l (108,496 parameters): three float32 copies of the weights, plus one batch of
    // 8 sequences (the default) × 49 tokens: patterns of 2 layers × 2 heads, logits twice, 8 residual streams.
    expect(largest).toBe(3 * 4 * 108_496 + 8 * 4 * (2 * 2 * 49 * 49 + 2 * 49 * 16 + 8 * 49 * 96));
    const tight = await plan(['workers: 3', `memory_budget_mb: ${Math.ceil((2 * largest) / 2 ** 20)}`]);
    expect(tight.maxInFlight).toBe(2);
    expect((await plan(['workers: 3', 'memory_budget_mb: 1'])).maxInFlight).toBe(1);
  });
});
