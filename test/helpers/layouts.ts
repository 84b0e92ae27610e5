/**
 * The folders researchers' trainers write, made from the real-format fixtures: a Pythia
 * run of revision folders, an HF Trainer output folder, a nanoGPT out folder, TL
 * checkpoints, and broken ones of each kind.
 */
import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GPT2, REAL, writeShardedGpt2 } from './real.ts';

export const NEOX = join(REAL, 'pythia-like-neox');
export const NANOGPT = join(REAL, 'nanogpt-ckpt', 'ckpt-2000.pt');
export const TL_PTH = join(REAL, 'tl-gelu-2l-pth');

/** A copy of a fixture folder at `to` (parents made), timestamps kept. */
export function copyFolder(from: string, to: string): string {
  mkdirSync(join(to, '..'), { recursive: true });
  cpSync(from, to, { recursive: true, preserveTimestamps: true });
  // The folder's own times too: filling it in set them to now.
  const { atime, mtime } = statSync(from);
  utimesSync(to, atime, mtime);
  return to;
}

/** Rewrites a folder's config.json through `edit`. */
export function editConfig(folder: string, edit: (config: Record<string, unknown>) => Record<string, unknown>): void {
  const file = join(folder, 'config.json');
  writeFileSync(file, JSON.stringify(edit(JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>)));
}

/** An HF Trainer `checkpoint-N` folder of the GPT-2 fixture, with its trainer_state.json. */
export function trainerCheckpoint(out: string, step: number): string {
  const dir = copyFolder(GPT2, join(out, `checkpoint-${step}`));
  writeFileSync(join(dir, 'trainer_state.json'), JSON.stringify({ global_step: step, epoch: 1, log_history: [] }));
  return dir;
}

/** TL's saved checkpoints: `model_<N>.pth` beside one Neel-style config.json. */
export function tlCheckpoints(dir: string, counts: number[]): void {
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(TL_PTH, 'config.json'), join(dir, 'config.json'));
  for (const n of counts) copyFileSync(join(TL_PTH, 'model_final.pth'), join(dir, `model_${n}.pth`));
}

/**
 * One of each way a checkpoint is broken, in `dir`: a cut-off torch zip, a sharded folder
 * missing a shard, a config.json that is not JSON, an unknown model_type, and a folder
 * without a config.json. Returns, for each, its name in `dir` and the file its error names.
 */
export function brokenCheckpoints(dir: string): Record<string, { at: string; reason: RegExp }> {
  mkdirSync(dir, { recursive: true });
  const zip = readFileSync(NANOGPT);
  writeFileSync(join(dir, 'truncated.pt'), zip.subarray(0, Math.floor(zip.length / 2)));
  mkdirSync(join(dir, 'missing-shard'));
  writeShardedGpt2(join(dir, 'missing-shard'));
  rmSync(join(dir, 'missing-shard', 'model-00002-of-00002.safetensors'));
  editConfig(copyFolder(GPT2, join(dir, 'bert')), (c) => ({ ...c, model_type: 'bert' }));
  copyFolder(GPT2, join(dir, 'bad-config'));
  writeFileSync(join(dir, 'bad-config', 'config.json'), '{"model_type": "gpt2",');
  mkdirSync(join(dir, 'notes'));
  writeFileSync(join(dir, 'notes', 'readme.txt'), 'not a model');
  copyFileSync(join(GPT2, 'model.safetensors'), join(dir, 'notes', 'weights.safetensors'));
  return {
    'truncated.pt': { at: join(dir, 'truncated.pt'), reason: /: truncated zip: no end-of-central-directory record at the end of the file/ },
    'missing-shard': { at: join(dir, 'missing-shard', 'model.safetensors.index.json'), reason: /: names shard 'model-00002-of-00002\.safetensors' \(for tensor '[^']+' and others\), which does not exist$/ },
    'bert': { at: join(dir, 'bert', 'config.json'), reason: /: model_type 'bert' is not a family headsweep reads/ },
    'bad-config': { at: join(dir, 'bad-config', 'config.json'), reason: /: is not valid JSON \(/ },
    'notes': {
      at: join(dir, 'notes'),
      reason: /: is a folder without a config\.json, so not a model folder \(it holds readme\.txt, weights\.safetensors\); to read its weights file, give the file \(.*notes\/weights\.safetensors\)$/,
    },
  };
}
