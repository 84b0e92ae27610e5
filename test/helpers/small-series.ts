/**
 * A sweep folder over copies of the hand-made demo series (data/demo/planted-2l): `files`
 * maps a name in `<dir>/ckpts/` to the demo step it copies ('00000', '01000', '02000', ...),
 * and `<dir>/sweep.yaml` sweeps them as run `r` with one tiny prompt set and the cheap
 * head metrics. `extra` lines (workers, retries, ...) end the config.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const DEMO = join(import.meta.dirname, '..', '..', 'data', 'demo', 'planted-2l');

export function demoCheckpoint(step: string): string {
  return join(DEMO, `step${step}.safetensors`);
}

export function smallSeries(dir: string, name: string, files: Record<string, string>, extra: readonly string[]): string {
  mkdirSync(join(dir, 'ckpts'), { recursive: true });
  for (const [file, step] of Object.entries(files)) copyFileSync(demoCheckpoint(step), join(dir, 'ckpts', file));
  const config = join(dir, 'sweep.yaml');
  writeFileSync(config, [
    `name: ${name}`,
    'output: out',
    'checkpoints:',
    '  - {run: r, paths: ["ckpts/*.safetensors"], step_regex: "step(\\\\d+)"}',
    'prompt_sets:',
    '  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 2, seed: 0}',
    'metrics: [prefix_matching, previous_token, copying]',
    ...extra,
  ].join('\n'));
  return config;
}
