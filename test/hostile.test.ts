/**
 * Hostile and diverged inputs: each numbered failure mode of a sweep fed bad numbers,
 * device files, absurd headers and configs, or a second sweep on its root ends in a
 * clear message (the file or YAML path named, the exit code), never a hang, a blow-up or
 * a silent pass. The checks that could hang if they regressed (FIFOs, /dev/zero) run the
 * real CLI in child processes that are killed after a minute; the rest call the CLI's
 * `main` in this process, which is the same code without the start-up cost.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { loadCheckpoint, nonFiniteError } from '../src/checkpoint/checkpoint.ts';
import { HeadsweepError, MESSAGE_LIMIT } from '../src/errors.ts';
import { buildPromptSet } from '../src/prompts/index.ts';
import { readTokensFile } from '../src/prompts/tokens-file.ts';
import { scoreCheckpoint } from '../src/score.ts';
import { initBackend } from '../src/backend.ts';
import { EXIT, main } from '../pipeline/cli.ts';
import { compactOutput } from '../pipeline/compact.ts';
import { loadConfig } from '../pipeline/config.ts';
import { Lock } from '../pipeline/lock.ts';
import { buildPlan } from '../pipeline/plan.ts';
import { assemble, tempDir, tinyParts, TINY_CONFIG, type Parts } from './helpers/safetensors.ts';
import { storedZip, zipRecords } from './helpers/torch-zip.ts';

const REPO = join(import.meta.dirname, '..');
const DEMO = join(REPO, 'data', 'demo');
const REAL = join(REPO, 'test', 'fixtures', 'real');
const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** `main(args)` with stdout and stderr captured (the real CLI code, in this process). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => { stdout += String(chunk); return true; });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => { stderr += String(chunk); return true; });
  try {
    return { code: await main(args), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

/** The real CLI in a child process, killed if it has not ended after `killAfterMs`. */
function spawnCli(args: string[], killAfterMs = 60_000): Promise<{ code: number | null; killed: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'headsweep.js'), ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => { killed = true; child.kill('SIGKILL'); }, killAfterMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, killed, stdout, stderr }); });
  });
}

/** A sweep config in `dir` (created) over `paths`, with `extra` lines; returns its path. */
function sweepConfig(dir: string, extra: string[] = [], paths = [`${DEMO}/planted-2l/step00000.safetensors`]): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'sweep.yaml');
  writeFileSync(file, [
    'name: hostile',
    ...(extra.some((l) => l.startsWith('output:')) ? [] : ['output: out']),
    'checkpoints:',
    `  - {run: r, paths: [${paths.map((p) => JSON.stringify(p)).join(', ')}]}`,
    ...(extra.some((l) => l.startsWith('prompt_sets:')) ? [] : ['prompt_sets:', '  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 2, seed: 0}']),
    ...extra,
  ].join('\n'));
  return file;
}

/** A copy of a demo checkpoint with `values` written into tensors at element offsets: `{ 'blocks.0.attn.W_V': [[0, NaN]] }`. */
function demoWith(file: string, edits: Record<string, [number, number][]>, source = `${DEMO}/planted-2l/step00000.safetensors`): string {
  const bytes = readFileSync(source);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  for (const [key, values] of Object.entries(edits)) {
    const begin = 8 + n + header[key].data_offsets[0];
    for (const [i, v] of values) bytes.writeFloatLE(v, begin + 4 * i);
  }
  writeFileSync(file, bytes);
  return file;
}

function arrowRows(dir: string): Record<string, unknown>[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('.arrow')).sort()
    .flatMap((f) => tableFromIPC(readFileSync(join(dir, f))).toArray().map((r) => r.toJSON() as Record<string, unknown>));
}

/** A header-only change of the tiny valid file. */
function tinyFile(name: string, change: (p: Parts) => void, text?: (json: string) => string): string {
  const parts = tinyParts();
  change(parts);
  const json = JSON.stringify(parts.header);
  return tmp.file(name, assemble(parts, { headerText: text?.(json) ?? json }));
}

/** The load error of `file`: a HeadsweepError naming the file, on one line of a sane length. */
function loadError(file: string): HeadsweepError {
  try {
    loadCheckpoint(file);
  } catch (err) {
    expect(err).toBeInstanceOf(HeadsweepError);
    const e = err as HeadsweepError;
    expect(e.message.startsWith(`${file}: `), e.message).toBe(true);
    expect(e.message).not.toMatch(/[\n\r\u001b]/);
    expect(e.message.length).toBeLessThanOrEqual(MESSAGE_LIMIT);
    return e;
  }
  throw new Error(`${file} loaded`);
}

describe('hangs', () => {
  test('1. NaN and Inf weights are one errors row each, naming the tensor and the counts; a zero head still scores (composition 0)', async () => {
    const dir = join(tmp.dir, 'nan');
    const ckpts = join(dir, 'ckpts');
    mkdirSync(ckpts, { recursive: true });
    demoWith(join(ckpts, 'nan-wv.safetensors'), { 'blocks.0.attn.W_V': [[0, NaN], [5, NaN], [7, NaN]] });
    demoWith(join(ckpts, 'inf-bu.safetensors'), { 'unembed.b_U': [[3, -Infinity]] });
    demoWith(join(ckpts, 'nan-wpos.safetensors'), { 'pos_embed.W_pos': [[0, NaN], [1, Infinity]] });
    // Every attention weight of layer 0 zero: its heads compose with nothing.
    const zeros: Record<string, [number, number][]> = {};
    for (const w of ['W_Q', 'W_K', 'W_V', 'W_O']) zeros[`blocks.0.attn.${w}`] = Array.from({ length: 2 * 96 * 64 }, (_, i) => [i, 0]);
    demoWith(join(ckpts, 'zero-l0.safetensors'), zeros);
    const config = sweepConfig(dir, ['metrics: [prefix_matching, copying, composition, mean_loss]', 'workers: 1', 'retries: 0'], ['ckpts/*.safetensors']);

    const run = await cli(['sweep', config, '--format', 'arrow', '--log-format', 'text']);
    expect(run.code, run.stderr).toBe(EXIT.partial);
    const errors = arrowRows(join(dir, 'out', 'errors'));
    const byFile = Object.fromEntries(errors.map((e) => [String(e.path).replace(/^ckpts\//, ''), e]));
    expect(Object.keys(byFile).sort()).toEqual(['inf-bu.safetensors', 'nan-wpos.safetensors', 'nan-wv.safetensors']);
    for (const e of errors) expect(e.stage).toBe('load');
    expect(byFile['nan-wv.safetensors'].message).toMatch(/nan-wv\.safetensors: non-finite weights .*tensor 'blocks\.0\.attn\.W_V' holds 3 NaN of 12288 values/);
    expect(byFile['inf-bu.safetensors'].message).toMatch(/tensor 'unembed\.b_U' holds 1 -Inf of 16 values/);
    expect(byFile['nan-wpos.safetensors'].message).toMatch(/tensor 'pos_embed\.W_pos' holds 1 NaN, 1 \+Inf of 6144 values/);
    // No infinite loss and no all-null scores for them: they are not in the scored tables at all.
    const scored = arrowRows(join(dir, 'out', 'checkpoints')).map((r) => String(r.path));
    expect(scored).toEqual(['ckpts/zero-l0.safetensors']);
    const composition = arrowRows(join(dir, 'out', 'composition'));
    expect(composition.length).toBeGreaterThan(0);
    // The layer-0 heads are the sources of every pair the 2-layer model has.
    for (const row of composition) expect(row.score).toBe(0);
    expect(arrowRows(join(dir, 'out', 'checkpoint_scores')).every((r) => r.mean_loss === null || Number.isFinite(r.mean_loss))).toBe(true);
  });

  test('1. finite weights whose products overflow float32 are refused naming the prompt set and the layer, not scored as nulls', async () => {
    // Every entry of layer 1's W_Q and W_K at 1e20: each q·k is about 1e40 · 64 terms, past float32's 3.4e38.
    const big: Record<string, [number, number][]> = {};
    for (const w of ['W_Q', 'W_K']) big[`blocks.1.attn.${w}`] = Array.from({ length: 2 * 96 * 64 }, (_, i) => [i, 1e20]);
    const file = demoWith(join(tmp.dir, 'overflow-l1.safetensors'), big);
    await initBackend('wasm');
    const ck = loadCheckpoint(file);
    expect(nonFiniteError(ck)).toBeNull();
    const set = buildPromptSet({ kind: 'repeated_random', name: 'rrt', length: 12, repeats: 4, count: 2, seed: 0 }, ck.config);
    await expect(scoreCheckpoint(ck, [set], { metrics: ['prefix_matching'], batchSize: 2, icl: { early: 10, late: 40 } })).rejects.toThrow(
      `the forward pass on prompt set 'rrt' gives non-finite attention patterns in layer 1 although every weight is finite`,
    );
  });

  test('1. the same counts from a torch zip (a nanoGPT ckpt.pt) and from BF16 weights (a Llama folder), read through their own decoders', () => {
    const dir = join(tmp.dir, 'nan-formats');
    // nanoGPT: a NaN in the first storage record, the archive rebuilt around it.
    const records = zipRecords(readFileSync(join(REAL, 'nanogpt-ckpt', 'ckpt-2000.pt')));
    const at = records.findIndex((r) => r.name === 'ckpt-2000/data/0');
    const data = Uint8Array.from(records[at].data);
    new DataView(data.buffer).setFloat32(4 * 7, NaN, true);
    records[at] = { name: records[at].name, data };
    mkdirSync(join(dir, 'nanogpt'), { recursive: true });
    const pt = join(dir, 'nanogpt', 'ckpt-2000.pt');
    writeFileSync(pt, storedZip(records, { align: 64 }));
    const values = data.byteLength / 4; // the record's float32 values, from the archive itself
    expect(nonFiniteError(loadCheckpoint(pt))?.message).toMatch(
      new RegExp(`ckpt-2000\\.pt: non-finite weights .*record 'ckpt-2000/data/0' \\(read as embed\\.W_E, unembed\\.W_U\\) holds 1 NaN of ${values} values`),
    );
    // Llama, BF16: a NaN (0x7FC0) and a -Inf (0xFF80) in lm_head.weight.
    const folder = join(dir, 'llama');
    mkdirSync(folder, { recursive: true });
    copyFileSync(join(REAL, 'llama-gqa-bf16', 'config.json'), join(folder, 'config.json'));
    const bytes = readFileSync(join(REAL, 'llama-gqa-bf16', 'model.safetensors'));
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    expect(header['lm_head.weight'].dtype).toBe('BF16');
    const lmHead = header['lm_head.weight'].shape.reduce((a, b) => a * b, 1); // from the file's own header
    const begin = 8 + n + header['lm_head.weight'].data_offsets[0];
    bytes.writeUInt16LE(0x7fc0, begin + 2 * 3);
    bytes.writeUInt16LE(0xff80, begin + 2 * 11);
    writeFileSync(join(folder, 'model.safetensors'), bytes);
    expect(nonFiniteError(loadCheckpoint(folder))?.message).toMatch(new RegExp(`tensor 'lm_head\\.weight' \\(read as unembed\\.W_U\\) holds 1 NaN, 1 -Inf of ${lmHead} values`));
    // The untouched files count nothing.
    expect(nonFiniteError(loadCheckpoint(join(REAL, 'nanogpt-ckpt', 'ckpt-2000.pt')))).toBeNull();
    expect(nonFiniteError(loadCheckpoint(join(REAL, 'llama-gqa-bf16')))).toBeNull();
  });

  test('2. a FIFO or a link to /dev/zero among the checkpoints, as a checkpoint to inspect or as a tokens file ends at once with a message', async () => {
    const dir = join(tmp.dir, 'devices');
    const ckpts = join(dir, 'ckpts');
    mkdirSync(ckpts, { recursive: true });
    copyFileSync(`${DEMO}/planted-2l/step00000.safetensors`, join(ckpts, 'good.safetensors'));
    symlinkSync('/dev/zero', join(ckpts, 'zero.safetensors'));
    expect(spawnSync('mkfifo', [join(ckpts, 'fifo.bin')]).status).toBe(0);
    expect(spawnSync('mkfifo', [join(dir, 'tokens.jsonl')]).status).toBe(0);
    const config = sweepConfig(dir, ['workers: 1'], ['ckpts/*.safetensors', 'ckpts/fifo.bin']);
    const tokens = sweepConfig(join(dir, 'tokens'), ['prompt_sets:', `  - {name: t, kind: tokens, path: ${JSON.stringify(join(dir, 'tokens.jsonl'))}}`]);

    const [swept, inspected, validated] = await Promise.all([
      spawnCli(['sweep', config, '--format', 'arrow']),
      spawnCli(['inspect', join(ckpts, 'fifo.bin')]),
      spawnCli(['validate', tokens]),
    ]);
    expect(swept.killed).toBe(false);
    expect(swept.code, swept.stderr).toBe(EXIT.partial);
    expect(swept.stderr).toContain(`${join(ckpts, 'zero.safetensors')}: is a character device, not a regular file`);
    // A glob lists regular files and links only: the FIFO is never opened, and said to be one.
    expect(swept.stderr).toContain('checkpoints[0].paths[1]: "ckpts/fifo.bin" is a FIFO (named pipe), not a regular file');
    expect(arrowRows(join(dir, 'out', 'errors')).map((e) => e.path)).toEqual(['ckpts/zero.safetensors']);
    expect(inspected.killed).toBe(false);
    expect(inspected.code).toBe(EXIT.failure);
    expect(inspected.stderr).toContain('fifo.bin: is a FIFO (named pipe), not a regular file');
    expect(validated.killed).toBe(false);
    expect(validated.code).toBe(EXIT.badConfig);
    expect(validated.stderr).toMatch(/→ at prompt_sets\[0\]: .*tokens\.jsonl: is a FIFO \(named pipe\), not a regular file/);
  });

  test('3. a task_timeout_s Node would clamp to 1 ms is a config error at its YAML path', async () => {
    const config = sweepConfig(join(tmp.dir, 'timeout'), ['task_timeout_s: 2147484']);
    const run = await cli(['validate', config]);
    expect(run.code).toBe(EXIT.badConfig);
    expect(run.stderr).toContain(`${config} → at task_timeout_s: must be at most 2147483 s`);
  });
});

describe('memory and stack', () => {
  test('4. a small header whose config asks for 1e9 layers, or 4096 layers of a huge width, is refused at once naming the file', () => {
    const huge = tinyFile('layers-1e9.safetensors', (p) => {
      (p.header.__metadata__ as Record<string, string>).config = JSON.stringify({ ...TINY_CONFIG, n_layers: 1e9 });
    });
    expect(loadError(huge).message).toMatch(/n_layers/);
    const wide = tinyFile('layers-4096.safetensors', (p) => {
      (p.header.__metadata__ as Record<string, string>).config = JSON.stringify({ ...TINY_CONFIG, n_layers: 4096, d_model: 1 << 20, d_head: 1 << 16 });
    });
    // Refused at the first tensor against the config, before any weight is read: W_E is [d_vocab 5, d_model 4] in the file, [5, 2^20] by the config.
    expect(loadError(wide).message).toMatch(/tensor 'embed\.W_E' has shape \[5, 4\] but the config expects \[5, 1048576\]/);
  });

  test('5. prompt sets past the memory budget and over-long tokens lines are config errors; a large count within it plans', async () => {
    const dir = join(tmp.dir, 'prompts');
    const bigCount = sweepConfig(join(dir, 'count'), ['prompt_sets:', '  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 1000000000, seed: 0}']);
    let run = await cli(['validate', bigCount]);
    expect(run.code).toBe(EXIT.badConfig);
    expect(run.stderr).toMatch(/→ at prompt_sets\[0\]\.count: 1000000000 sequences are 49000000000 token ids; at most \d+ token ids fit/);

    // 150000 sequences used to overflow the stack in planning (a spread over every length).
    const plan = await buildPlan(loadConfig(sweepConfig(join(dir, 'many'), ['prompt_sets:', '  - {name: rrt, kind: repeated_random, length: 2, repeats: 2, count: 150000, seed: 0}'])));
    expect(plan.runs[0].promptSets[0].sequences).toHaveLength(150000);

    writeFileSync(join(dir, 'lines.jsonl'), '[1, 2]\n'.repeat(50_000));
    const manyLines = sweepConfig(join(dir, 'lines'), ['memory_budget_mb: 1', 'workers: 1', 'prompt_sets:', `  - {name: t, kind: tokens, path: ${JSON.stringify(join(dir, 'lines.jsonl'))}}`]);
    run = await cli(['validate', manyLines]);
    expect(run.code).toBe(EXIT.badConfig);
    expect(run.stderr).toMatch(/→ at prompt_sets\[0\]: .*lines\.jsonl holds more than 43690 token ids by line 21846 \(.*memory_budget_mb 1/);
    // Two files of 30000 ids each: the limit is for both together, 43690 - 30000 = 13690 left for the second.
    writeFileSync(join(dir, 'half.jsonl'), '[1, 2]\n'.repeat(15_000));
    const twoFiles = sweepConfig(join(dir, 'two'), ['memory_budget_mb: 1', 'workers: 1', 'prompt_sets:', ...['a', 'b'].map((n) => `  - {name: ${n}, kind: tokens, path: ${JSON.stringify(join(dir, 'half.jsonl'))}}`)]);
    run = await cli(['validate', twoFiles]);
    expect(run.code).toBe(EXIT.badConfig);
    expect(run.stderr).toMatch(/→ at prompt_sets\[1\]: .*half\.jsonl holds more than 13690 token ids by line 6846 \(the tokens files before it hold 30000 of the 43690 left for them; .*memory_budget_mb 1/);

    writeFileSync(join(dir, 'long.jsonl'), `[${'1,'.repeat(9_000_000)}1]\n`);
    const longLine = sweepConfig(join(dir, 'long'), ['prompt_sets:', `  - {name: t, kind: tokens, path: ${JSON.stringify(join(dir, 'long.jsonl'))}}`]);
    run = await cli(['validate', longLine]);
    expect(run.code).toBe(EXIT.badConfig);
    expect(run.stderr).toMatch(/long\.jsonl line 1: longer than 16777216 characters/);
  });

  test('6. a header of 400000 empty entries and a metrics list of 20000 bad names give one short message each; the warnings of a plan stop after a dozen', async () => {
    const entries = Array.from({ length: 400_000 }, (_, i) => `"t${i}":{}`).join(',');
    const file = tinyFile('empty-objects.safetensors', () => {}, () => `{${entries}}`);
    expect(loadError(file).message).toMatch(/header is not a safetensors header: it holds more than 393218 objects and arrays/);

    const config = sweepConfig(join(tmp.dir, 'metrics'), [`metrics: [${Array(20_000).fill('nope').join(', ')}]`]);
    const run = await cli(['validate', config]);
    expect(run.code).toBe(EXIT.badConfig);
    const lines = run.stderr.trim().split('\n');
    expect(lines.length).toBeLessThanOrEqual(13);
    expect(run.stderr).toContain(`${config} → at metrics[0]:`);
    expect(run.stderr).toMatch(/… and 19989 more problems/);

    // Thirty globs that match nothing: the plan lists a dozen warnings, then counts.
    const globs = [`${DEMO}/planted-2l/step00000.safetensors`, ...Array.from({ length: 30 }, (_, i) => `nothing-${i}/*.safetensors`)];
    const plan = await cli(['validate', sweepConfig(join(tmp.dir, 'globs'), [], globs)]);
    expect(plan.code, plan.stderr).toBe(EXIT.ok);
    const warnings = plan.stdout.split('\n').filter((l) => l.startsWith('warning: '));
    expect(warnings).toHaveLength(12);
    expect(warnings.at(-1)).toMatch(/^warning: … and \d+ more warnings$/);
  });
});

describe('messages', () => {
  test('7. a 100000-deep shape names the file instead of overflowing the stack', () => {
    const file = tinyFile('deep.safetensors', () => {}, (json) => json.replace('"shape":[5]', `"shape":${'['.repeat(100_000)}${']'.repeat(100_000)}`));
    expect(loadError(file).message).toMatch(/nests deeper than 3 levels/);
  });

  test('8. a metadata step and a tokens line from a file are escaped and cut in their messages, as names are', () => {
    const step = tinyFile('step.safetensors', (p) => { (p.header.__metadata__ as Record<string, string>).step = `1\u001b[31m${'9'.repeat(20_000)}x`; });
    const e = loadError(step);
    expect(e.message).toContain('metadata \'step\' is "1\\u001b[31m999');
    expect(e.message).toMatch(/…\(\+\d+ characters\), not a decimal integer/);

    const tokens = join(tmp.dir, 'forged-tokens.jsonl');
    writeFileSync(tokens, `[1, 2, \u001b[31m${'3'.repeat(20_000)}\n`);
    let message = '';
    try {
      readTokensFile({ kind: 'tokens', name: 't', path: tokens });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/forged-tokens\.jsonl line 1: not valid JSON \(/);
    expect(message).not.toMatch(/[\u0000-\u001f]/);
    expect(message.length).toBeLessThanOrEqual(MESSAGE_LIMIT);
  });

  test('8. a tensor name with a forged line, terminal escapes and 20 MB is escaped and cut, in messages and in inspect', async () => {
    const name = `x\nheadsweep: all fine\u001b[32m${'a'.repeat(20_000_000)}`;
    const file = tinyFile('forged.safetensors', (p) => { p.header[name] = p.header['unembed.b_U']; delete p.header['unembed.b_U']; });
    const e = loadError(file);
    expect(e.message).toContain("'x\\nheadsweep: all fine\\x1b[32maaa");
    expect(e.message).toMatch(/…\(\+\d+ characters\)'/);

    // inspect shows metadata as it is when printable, escaped and cut when not.
    const note = tinyFile('note.safetensors', (p) => { (p.header.__metadata__ as Record<string, string>).note = `fine\nheadsweep: forged\u001b[0m${'b'.repeat(1000)}`; });
    const shown = await cli(['inspect', note]);
    expect(shown.code, shown.stderr).toBe(EXIT.ok);
    const line = shown.stdout.split('\n').find((l) => l.trimStart().startsWith('note '))!;
    expect(line).toContain("'fine\\nheadsweep: forged\\x1b[0mbbb");
    expect(shown.stdout).not.toMatch(/^headsweep: forged/m);
    expect(shown.stdout).not.toContain('\u001b');
  });

  test('9. alias bombs, unknown aliases, bad output paths and over-long run names exit 2 with the YAML path', async () => {
    const dir = join(tmp.dir, 'configs');
    writeFileSync(join(tmp.dir, 'a-file'), 'x');
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`)];
    const cases: [string, string[], RegExp][] = [
      ['bomb', bomb, /: its aliases expand to more than 100 copies.*\(line \d+\)/],
      ['alias', ['batch_size: *nowhere'], /: alias \*nowhere names no anchor set before it \(line \d+\)/],
      ['nul', ['output: "out\\0x"'], /→ at output(\.dir)?: a path cannot hold a NUL character/],
      ['file', [`output: ${JSON.stringify(join(tmp.dir, 'a-file'))}`], /→ at output: .*a-file exists and is not a folder \(a regular file\)/],
      ['devnull', ['output: /dev/null'], /→ at output: \/dev\/null exists and is not a folder \(a device, FIFO or socket\)/],
    ];
    for (const [name, lines, message] of cases) {
      const config = sweepConfig(join(dir, name), lines);
      const run = await cli(['validate', config]);
      expect(run.code, `${name}: ${run.stderr}`).toBe(EXIT.badConfig);
      expect(run.stderr, name).toContain(config);
      expect(run.stderr, name).toMatch(message);
    }
    const long = join(dir, 'long', 'sweep.yaml');
    mkdirSync(join(dir, 'long'), { recursive: true });
    writeFileSync(long, readFileSync(sweepConfig(join(dir, 'long')), 'utf8').replace('run: r', `run: ${'r'.repeat(300)}`));
    const run = await cli(['validate', long]);
    expect(run.code).toBe(EXIT.badConfig);
    expect(run.stderr).toContain(`${long} → at checkpoints[0].run: a run name is at most 128 characters`);
  });

  test('10. eps 1e308 in a checkpoint, and absurd workers, retries and task_timeout_s, are refused with a range', async () => {
    const file = tinyFile('eps.safetensors', (p) => {
      (p.header.__metadata__ as Record<string, string>).config = JSON.stringify({ ...TINY_CONFIG, eps: 1e308 });
    });
    expect(loadError(file).message).toMatch(/eps/);
    const cases: [string, string, RegExp][] = [
      ['workers', 'workers: 1000000', /→ at workers: must be at most 256/],
      ['retries', 'retries: 1000000000000000', /→ at retries: must be at most 20/],
      ['timeout', 'task_timeout_s: 0.000000001', /→ at task_timeout_s: must be at least 1 second/],
    ];
    for (const [name, line, message] of cases) {
      const run = await cli(['validate', sweepConfig(join(tmp.dir, 'ranges', name), [line])]);
      expect(run.code, run.stderr).toBe(EXIT.badConfig);
      expect(run.stderr).toMatch(message);
    }
  });
});

describe('concurrency and compaction', () => {
  const dir = join(tmp.dir, 'locked');
  const out = join(dir, 'out');

  test('11. a sweep on a root another live process holds stops at once naming the holder; a dead holder\'s lock is taken over', async () => {
    const config = sweepConfig(dir, ['workers: 1', 'metrics: [prefix_matching]']);
    const held = Lock.acquire(out, '.headsweep.lock', `the output folder ${out}`);
    try {
      const run = await cli(['sweep', config, '--format', 'arrow', '--log-format', 'text']);
      expect(run.code).toBe(EXIT.failure);
      expect(run.stderr).toContain(`the output folder ${out} is being written by process ${process.pid} on ${hostname()}`);
      expect(readdirSync(out)).toEqual(['.headsweep.lock']);
    } finally {
      held.release();
    }
    // A holder that died without releasing (SIGKILL): its pid no longer runs here.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    writeFileSync(join(out, '.headsweep.lock'), JSON.stringify({ pid: Number(dead), host: hostname(), started_at: '2020-01-01T00:00:00Z', command: 'sweep', token: 'gone' }));
    const run = await cli(['sweep', config, '--format', 'arrow', '--log-format', 'text']);
    expect(run.code, run.stderr).toBe(EXIT.ok);
    expect(existsSync(join(out, '.headsweep.lock'))).toBe(false);

    // A shard excludes a whole-root sweep, not another shard.
    const shard = Lock.acquire(out, '.headsweep.shard-0-of-2.lock', `shard 0/2 of the output folder ${out}`);
    try {
      const whole = await cli(['sweep', config, '--format', 'arrow', '--log-format', 'text']);
      expect(whole.code).toBe(EXIT.failure);
      expect(whole.stderr).toContain(`the output folder ${out} is being written by process ${process.pid} on ${hostname()}`);
      const other = await cli(['sweep', config, '--format', 'arrow', '--log-format', 'text', '--shard', '1/2']);
      expect(other.code, other.stderr).toBe(EXIT.ok);
    } finally {
      shard.release();
    }
    expect(readdirSync(out).filter((n) => n.endsWith('.lock'))).toEqual([]);
  });

  test('12. a compaction finds one whole compaction after a killed one, and removes what it left', async () => {
    await compactOutput(out);
    const link = join(out, 'compacted');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const first = readlinkSync(link);
    // What an earlier layout's compaction killed between its two renames left: the old folder aside, a half-written one, no compacted.
    renameSync(join(out, first), join(out, 'compacted.4242.old'));
    renameSync(link, join(out, 'compacted.4243.link'));
    mkdirSync(join(out, 'compacted.4242.tmp'));
    mkdirSync(join(out, '.compactions', 'killed-version'), { recursive: true });
    await compactOutput(out);
    expect(readdirSync(out).filter((n) => n.startsWith('compacted')).sort()).toEqual(['compacted']);
    expect(readdirSync(join(out, '.compactions'))).toEqual([readlinkSync(link).split('/').pop()]);
    expect(JSON.parse(readFileSync(join(link, 'manifest.json'), 'utf8')).counts.rows.heads).toBeGreaterThan(0);

    // A FIFO among the partitions is refused by its name, never opened; the last compaction stands.
    const fifo = join(out, 'heads', 'run=r', 'step-x.arrow');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    await expect(compactOutput(out)).rejects.toThrow(`${fifo}: is a FIFO (named pipe), not a regular file`);
    expect(readdirSync(join(out, '.compactions'))).toEqual([readlinkSync(link).split('/').pop()]);
  });

  // An immutable file (chattr +i) is one the compaction cannot remove, even as root.
  test.skipIf(!canMakeImmutable())('12. a version that cannot be removed once the new one is linked leaves the new one linked and whole; the next compaction removes it', async () => {
    const root = join(tmp.dir, 'stuck');
    mkdirSync(root);
    cpSync(join(out, 'heads'), join(root, 'heads'), { recursive: true, filter: (from) => !lstatSync(from).isFIFO() }); // test 12 left a FIFO there
    await compactOutput(root);
    const link = join(root, 'compacted');
    const stuck = join(root, readlinkSync(link), 'manifest.json');
    expect(spawnSync('chattr', ['+i', stuck]).status).toBe(0);
    try {
      const { manifest } = await compactOutput(root);
      // compacted links to the new version, which is whole, and the old one is still there.
      expect(readlinkSync(link)).not.toBe(relative(root, dirname(stuck)));
      expect(JSON.parse(readFileSync(join(link, 'manifest.json'), 'utf8'))).toEqual(manifest);
      expect(existsSync(stuck)).toBe(true);
    } finally {
      spawnSync('chattr', ['-i', stuck]);
    }
    await compactOutput(root);
    expect(readdirSync(join(root, '.compactions'))).toEqual([readlinkSync(link).split('/').pop()]);
  });

  test('13. one checkpoint of another shape at the lowest step fails alone', async () => {
    const dir13 = join(tmp.dir, 'shapes');
    mkdirSync(join(dir13, 'ckpts'), { recursive: true });
    copyFileSync(`${DEMO}/shortformer-1l/step00000.safetensors`, join(dir13, 'ckpts', 'ck-000.safetensors'));
    for (const step of ['100', '200', '300']) copyFileSync(`${DEMO}/planted-2l/step00000.safetensors`, join(dir13, 'ckpts', `ck-${step}.safetensors`));
    const config = join(dir13, 'sweep.yaml');
    writeFileSync(config, readFileSync(sweepConfig(dir13), 'utf8').replace(/paths: \[.*\]/, 'paths: ["ckpts/*.safetensors"], step_regex: "ck-(\\\\d+)"'));
    const plan = await buildPlan(loadConfig(config));
    const problems = plan.runs[0].checkpoints.map((c) => [c.path, c.problem?.message ?? null]);
    expect(problems.slice(1)).toEqual([['ckpts/ck-100.safetensors', null], ['ckpts/ck-200.safetensors', null], ['ckpts/ck-300.safetensors', null]]);
    expect(problems[0][1]).toMatch(/ck-000\.safetensors: model has .* but run 'r' was planned for .* \(the shape of 3 of its 4 readable checkpoints\); give it its own run/);
  });
});

test('fuzz: 300 seeded mutations of a valid header each load or fail with one line naming the file', () => {
  const rng = xoroshiro128plus(12);
  const int = (lo: number, hi: number) => uniformInt(rng, lo, hi);
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)];
  const wild = [-1, 0, 1, 1.5, 2 ** 31, 2 ** 53, 1e308, -1e308, '3', null, true, [], {}, [[1]], 'F32', '\u001b[31m', 'x'.repeat(1000)];
  const base = JSON.stringify(tinyParts().header);
  let loaded = 0;
  for (let i = 0; i < 300; i++) {
    const parts = tinyParts();
    // The header's shapes are the helper's own arrays: mutate a copy.
    parts.header = structuredClone(parts.header);
    const entries = Object.keys(parts.header).filter((k) => k !== '__metadata__');
    let text: string | undefined;
    for (let m = int(1, 3); m > 0; m--) {
      const key = pick(entries);
      const entry = parts.header[key] as Record<string, unknown> | undefined;
      // An entry deleted or replaced by an earlier mutation of this case: nothing left to change in it.
      if (entry === undefined || !Array.isArray(entry.shape) || !Array.isArray(entry.data_offsets)) continue;
      switch (int(0, 7)) {
        case 0: entry[pick(['dtype', 'shape', 'data_offsets'])] = pick(wild); break;
        case 1: (entry.shape as unknown[])[0] = pick(wild); break;
        case 2: (entry.data_offsets as unknown[])[int(0, 1)] = pick(wild); break;
        case 3: delete parts.header[key]; break;
        case 4: parts.header[`${key}${pick(['\n', '\u0000', '.x', ''])}`] = entry; break;
        case 5: (parts.header.__metadata__ as Record<string, unknown>)[pick(['config', 'step', 'n_tokens_seen'])] = pick(wild); break;
        case 6: (parts.header.__metadata__ as Record<string, unknown>).config = JSON.stringify({ ...TINY_CONFIG, [pick(Object.keys(TINY_CONFIG))]: pick(wild) }); break;
        default: {
          // A byte of the JSON text changed: most of these are not JSON any more.
          const json = text ?? base;
          const at = int(0, json.length - 1);
          text = json.slice(0, at) + pick(['{', '}', '[', ']', '"', ',', '0', '9', '-', 'e', ' ']) + json.slice(at + 1);
        }
      }
    }
    const file = tmp.file(`fuzz-${i}.safetensors`, assemble(parts, text === undefined ? {} : { headerText: text }));
    try {
      loadCheckpoint(file);
      loaded++;
    } catch (err) {
      expect(err, `case ${i}`).toBeInstanceOf(HeadsweepError);
      const message = (err as Error).message;
      expect(message.startsWith(`${file}: `), `case ${i}: ${message}`).toBe(true);
      expect(message, `case ${i}`).not.toMatch(/[\n\r\u001b\u0000]/);
      expect(message.length, `case ${i}`).toBeLessThanOrEqual(MESSAGE_LIMIT);
    }
  }
  // Some mutations leave a valid file (a changed step, a duplicate name under a dropped one): both outcomes occur.
  expect(loaded).toBeGreaterThan(0);
  expect(loaded).toBeLessThan(300);
});

/** Whether `chattr +i` works here (root on a file system with the immutable attribute). */
function canMakeImmutable(): boolean {
  const probe = join(tmp.dir, 'immutable-probe');
  writeFileSync(probe, '');
  const ok = spawnSync('chattr', ['+i', probe]).status === 0;
  spawnSync('chattr', ['-i', probe]);
  return ok;
}
