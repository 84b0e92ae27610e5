/**
 * The floor under a sweep's time: the work of its matrix products, counted from the model
 * config and the prompt set, divided by the fastest rate this backend multiplies at here.
 *
 * Nearly all of a checkpoint's arithmetic is in 2-D matrix products, and on the wasm
 * backend every one of them runs in the same XNNPACK kernel, so however the products are
 * arranged, a checkpoint costs at least (its product GFLOP) / (that kernel's rate) on one
 * thread, and that over the workers when every worker has a checkpoint. The bench prints
 * this beside the measured time and the target, so that a target below the floor reads
 * as what it is. Elementwise work (norms, activations, softmax), the eigenvalues, reading
 * the file and writing tables all come on top.
 *
 * The products are counted by `workCosts` (src/work.ts), the count the pool already cuts
 * shared checkpoints by, for the sweep's own plan: its prompt sets as built, its metrics,
 * batch size and icl positions.
 */
import { initBackend, tf } from '../src/backend.ts';
import type { BackendChoice } from '../src/names.ts';
import { workCosts } from '../src/work.ts';
import type { Plan } from '../pipeline/plan.ts';

/** GFLOP of a checkpoint's matrix products, by stage. */
export interface ProductWork {
  forward: number;
  unembed: number;
  weights: number;
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** GFLOP of the matrix products of one checkpoint of the plan's (single) run, by stage. */
export function productGflop(plan: Plan): ProductWork {
  const [run] = plan.runs;
  const { metrics, batch_size: batchSize, icl } = plan.config;
  const costs = workCosts(run.config!, run.promptSets, metrics, batchSize, icl);
  const unembed = sum(costs.unembed);
  return { forward: (sum(costs.batches) - unembed) / 1e9, unembed: unembed / 1e9, weights: costs.weights / 1e9 };
}

/**
 * The fastest GFLOP/s of one thread's 2-D matMul on `backend` here: the best of several
 * calls on four shapes the sweeps run most (an MLP input product, a Q/K/V projection, a
 * vocabulary slice of W_U·W_E and one of the unembedding), each operand uploaded once as
 * the sweep does. Measured once per process, so that every case and metrics choice of a
 * bench run is held to the same rate.
 */
export function matMulRate(backend: BackendChoice): Promise<{ backend: string; gflops: number }> {
  measured ??= measureMatMulRate(backend);
  return measured;
}

let measured: Promise<{ backend: string; gflops: number }> | undefined;

async function measureMatMulRate(backend: BackendChoice): Promise<{ backend: string; gflops: number }> {
  const name = await initBackend(backend);
  let best = 0;
  for (const [m, k, n] of [[808, 768, 3072], [808, 768, 2304], [768, 2048, 768], [808, 769, 2048]]) {
    const a = tf.randomNormal([m, k], 0, 0.05, 'float32', 1) as tf.Tensor2D;
    const b = tf.randomNormal([k, n], 0, 0.05, 'float32', 2) as tf.Tensor2D;
    for (let i = 0; i < 12; i++) {
      const start = performance.now();
      tf.tidy(() => tf.sum(tf.matMul(a, b)).dataSync());
      const seconds = (performance.now() - start) / 1000;
      if (i >= 2) best = Math.max(best, (2 * m * k * n) / 1e9 / seconds);
    }
    a.dispose();
    b.dispose();
  }
  return { backend: name, gflops: best };
}
