/**
 * Training throughput: a few AdamW steps of the committed 2-layer recipe
 * (configs/train-attn-only-2l.yaml) on each backend that loads, into a temp folder.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { BackendChoice, BackendName } from '../src/names.ts';
import { BACKENDS } from '../src/names.ts';
import { loadTrainConfig } from '../src/train/config.ts';
import { train } from '../src/train/train.ts';

/** Steps per backend: the pure-JS cpu backend takes tens of seconds a step. */
const STEPS: Record<BackendName, number> = { tensorflow: 20, wasm: 20, cpu: 2 };

export async function benchTraining(choice: BackendChoice): Promise<void> {
  const loaded = loadTrainConfig(resolve(import.meta.dirname, '../configs/train-attn-only-2l.yaml'));
  const c = loaded.config;
  console.log(`\ntraining ${c.run}: ${c.model.n_layers} layers × ${c.model.n_heads} heads, d_model ${c.model.d_model}, batch ${c.batch_size} × ${c.seq_len ?? c.model.n_ctx} tokens`);
  const backends: BackendName[] = choice === 'auto' ? ['wasm', 'cpu'] : [choice];
  for (const backend of backends) {
    if (!BACKENDS.includes(backend)) continue;
    const steps = STEPS[backend];
    const outDir = mkdtempSync(join(tmpdir(), 'headsweep-bench-train-'));
    try {
      const result = await train(
        { ...loaded, outDir, config: { ...c, steps, checkpoints: { at: [steps], dense: [] }, log_every: steps } },
        { backend, log: () => {} },
      );
      console.log(`  ${result.backend}: ${result.tokensPerSecond.toFixed(0)} tokens/s, ${(result.seconds / steps).toFixed(2)} s/step (${steps} steps)`);
    } catch (err) {
      console.log(`  ${backend}: not measured (${(err as Error).message})`);
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  }
}
