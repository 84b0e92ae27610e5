/**
 * A small synthetic sweep output folder, written by the sweep's own table builders and
 * sinks (pipeline/tables.ts, pipeline/sinks), for tests that read or render outputs
 * without scoring real checkpoints.
 *
 * Run `induction-2l` (2 layers × 4 heads, 5 steps, two prompt sets) has a phase change
 * at step 500: L1H2's prefix_matching jumps from 0.05 to 0.9 and its copying from 0 to
 * 0.8, L0H1 becomes a previous-token head that K-composes into L1H2, and the loss and
 * icl_score drop. Run `shortformer-1l` (1 layer × 2 heads) has one checkpoint of unknown
 * step, no composition pairs (a single layer) and one failed checkpoint in `errors`.
 */
import { createHash } from 'node:crypto';
import { packageVersions, writeManifest } from '../../pipeline/manifest.ts';
import { writeTableFile, type OutputFormat } from '../../pipeline/sinks/index.ts';
import {
  checkpointId, checkpointTables, errorsTable, promptsTable, type CheckpointRowInfo, type TableName,
} from '../../pipeline/tables.ts';
import { modelConfig } from '../../src/model/config.ts';
import type { CheckpointScores, CompositionKind, CompositionScores, PromptSetScores } from '../../src/score.ts';

export interface SampleRun {
  name: string;
  nLayers: number;
  nHeads: number;
  dModel: number;
  steps: (number | null)[];
  promptSets: string[];
}

export const SAMPLE_RUNS: readonly SampleRun[] = [
  { name: 'induction-2l', nLayers: 2, nHeads: 4, dModel: 64, steps: [0, 250, 500, 750, 1000], promptSets: ['repeated', 'natural'] },
  { name: 'shortformer-1l', nLayers: 1, nHeads: 2, dModel: 32, steps: [null], promptSets: ['repeated'] },
];
export const PHASE_CHANGE_STEP = 500;
export const INDUCTION_HEAD = { layer: 1, head: 2 };
export const PREVIOUS_TOKEN_HEAD = { layer: 0, head: 1 };
export const BROKEN_CHECKPOINT = 'checkpoints/shortformer-1l/truncated.safetensors';

/**
 * Writes the sample under `root` (created if absent) in `formats` and returns `root`.
 * Tables named in `omit` get no folder at all, as when a sweep did not compute them.
 */
export async function writeSampleOutput(root: string, omit: readonly TableName[] = [], formats: readonly OutputFormat[] = ['arrow']): Promise<string> {
  const rows: Record<TableName, number> = { heads: 0, composition: 0, checkpoint_scores: 0, checkpoints: 0, prompts: 0, errors: 0 };
  const write = async (table: TableName, run: string, stem: string, data: Parameters<typeof writeTableFile>[4]) => {
    if (omit.includes(table)) return;
    await writeTableFile(root, table, run, stem, data, formats);
    rows[table] += data.numRows;
  };
  for (const run of SAMPLE_RUNS) {
    for (const [index, step] of run.steps.entries()) {
      const ctx = { run, step, index };
      const info = rowInfo(ctx);
      const tables = checkpointTables(info, scores(ctx), labels(ctx));
      for (const [table, data] of Object.entries(tables)) await write(table as TableName, run.name, checkpointId(step, info.sha256), data);
    }
    const prompts = run.promptSets.map((name) => ({ name, sequences: [0, 1].map((seq) => Int32Array.of(0, 10 + seq, 11, 12, 10 + seq, 11, 12)) }));
    await write('prompts', run.name, 'prompts', promptsTable(run.name, prompts));
  }
  await write('errors', 'shortformer-1l', checkpointId(null, sha256(BROKEN_CHECKPOINT)), errorsTable([{
    run: 'shortformer-1l',
    path: BROKEN_CHECKPOINT,
    stage: 'load',
    message: `${BROKEN_CHECKPOINT}: header length 4096 exceeds the file size 1024`,
  }]));
  await writeManifest(root, {
    name: 'sample-sweep',
    status: 'finished',
    config: {},
    config_path: 'configs/sample.yaml',
    started_at: '2025-01-01T00:00:00.000Z',
    finished_at: '2025-01-01T00:01:00.000Z',
    backend: 'cpu',
    workers: 1,
    versions: packageVersions(),
    counts: { checkpoints_planned: 7, scored: 6, failed: 1, rows },
    exit_code: 3,
  });
  return root;
}

interface Context {
  run: SampleRun;
  step: number | null;
  /** Position of the checkpoint in its run, 0-based. */
  index: number;
}

function rowInfo({ run, step }: Context): CheckpointRowInfo {
  const checkpoint = `checkpoints/${run.name}/step${step ?? 'final'}.safetensors`;
  const oneLayer = run.nLayers === 1;
  return {
    run: run.name,
    step,
    tokensSeen: step === null ? null : step * 4096,
    checkpoint,
    sha256: sha256(checkpoint),
    config: modelConfig({
      n_layers: run.nLayers, n_heads: run.nHeads, d_model: run.dModel, d_head: run.dModel / run.nHeads,
      d_vocab: 100, n_ctx: 64,
      normalization_type: oneLayer ? null : 'LN',
      positional_embedding_type: oneLayer ? 'shortformer' : 'standard',
    }),
    seconds: { load: 0.01, forward: 0.02, weights: 0.005, write: 0.001 },
  };
}

/** The unknown-step checkpoint stands for a trained model. */
function trained(ctx: Context): boolean {
  return ctx.step === null || ctx.step >= PHASE_CHANGE_STEP;
}

function is(head: { layer: number; head: number }, layer: number, h: number): boolean {
  return head.layer === layer && head.head === h;
}

/** Small deterministic background score in [0.02, 0.05] that differs per head and step. */
function background(layer: number, head: number, index: number): number {
  return 0.02 + 0.01 * ((layer * 5 + head * 3 + index) % 4);
}

/** A per-head array, indexed `layer * n_heads + head` like every score array. */
function perHead(run: SampleRun, score: (layer: number, head: number) => number): Float64Array {
  const values = new Float64Array(run.nLayers * run.nHeads);
  for (let layer = 0; layer < run.nLayers; layer++) {
    for (let head = 0; head < run.nHeads; head++) values[layer * run.nHeads + head] = score(layer, head);
  }
  return values;
}

function scores(ctx: Context): CheckpointScores {
  const { run, index } = ctx;
  const on = trained(ctx);
  const progress = ctx.step === null ? 1 : index / (run.steps.length - 1);
  const promptSets = run.promptSets.map((promptSet): PromptSetScores => ({
    promptSet,
    prefix_matching: perHead(run, (l, h) => {
      if (!is(INDUCTION_HEAD, l, h)) return background(l, h, index);
      return on ? (promptSet === 'repeated' ? 0.9 : 0.6) : 0.05;
    }),
    duplicate_token: perHead(run, (l, h) => background(h, l, index)),
    previous_token: perHead(run, (l, h) => {
      if (!is(PREVIOUS_TOKEN_HEAD, l, h)) return background(l, h, index + 1);
      return on ? 0.85 : 0.1;
    }),
    mean_loss: 6 - 2.5 * progress - (on ? 0.8 : 0) + (promptSet === 'natural' ? 0.5 : 0),
    icl_score: (on ? -1.2 : -0.1) * (promptSet === 'natural' ? 0.5 : 1),
  }));
  return {
    nLayers: run.nLayers,
    nHeads: run.nHeads,
    promptSets,
    copying: perHead(run, (l, h) => (is(INDUCTION_HEAD, l, h) ? (on ? 0.8 : 0) : 2 * background(l, h, index) - 0.07)),
    composition: composition(ctx),
    seconds: { forward: 0.02, weights: 0.005 },
  };
}

/** Every (source, destination, kind) with source layer < destination layer. */
function composition(ctx: Context): CompositionScores {
  const { run } = ctx;
  const rows: { sl: number; sh: number; dl: number; dh: number; kind: CompositionKind }[] = [];
  for (let sl = 0; sl < run.nLayers; sl++) {
    for (let sh = 0; sh < run.nHeads; sh++) {
      for (let dl = sl + 1; dl < run.nLayers; dl++) {
        for (let dh = 0; dh < run.nHeads; dh++) {
          for (const kind of ['Q', 'K', 'V'] as const) rows.push({ sl, sh, dl, dh, kind });
        }
      }
    }
  }
  const circuit = (r: (typeof rows)[number]): boolean =>
    r.kind === 'K' && is(PREVIOUS_TOKEN_HEAD, r.sl, r.sh) && is(INDUCTION_HEAD, r.dl, r.dh);
  return {
    src_layer: Int32Array.from(rows, (r) => r.sl),
    src_head: Int32Array.from(rows, (r) => r.sh),
    dst_layer: Int32Array.from(rows, (r) => r.dl),
    dst_head: Int32Array.from(rows, (r) => r.dh),
    kind: rows.map((r) => r.kind),
    score: Float64Array.from(rows, (r) => (circuit(r) && trained(ctx) ? 0.6 : 0.08 + background(r.sh, r.dh, ctx.index))),
    baseline: 1 / Math.sqrt(run.dModel),
  };
}

/** [prompt set][layer * n_heads + head]: the trained model's two circuit heads. */
function labels(ctx: Context): (string | null)[][] {
  const { run } = ctx;
  const perSet: (string | null)[] = [];
  for (let layer = 0; layer < run.nLayers; layer++) {
    for (let head = 0; head < run.nHeads; head++) {
      if (!trained(ctx)) perSet.push(null);
      else if (is(INDUCTION_HEAD, layer, head)) perSet.push('induction');
      else perSet.push(is(PREVIOUS_TOKEN_HEAD, layer, head) ? 'previous_token' : null);
    }
  }
  return run.promptSets.map(() => perSet);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
