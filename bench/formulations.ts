/**
 * How the forward pass's new pieces are formulated, measured: MLP products and
 * activations, rotary positions, grouped-query attention, the sliced unembedding of the
 * loss scores and the projection weights kept across batches. Each candidate computes the
 * same values on a realistic shape; the script prints CPU milliseconds per call (median of
 * several, after a warm-up) and asserts nothing. The choices in src/model/ cite these.
 *
 *   npx tsx bench/formulations.ts                 wasm (the default backend here)
 *   npx tsx bench/formulations.ts --backend cpu   (slow: small repeat counts)
 *
 * Shapes: GPT-2 small (d_model 768, d_mlp 3072, 12 heads × 64), Pythia-160M (the same
 * with rotary_dim 16), and a grouped-query 4:1 shape (12 query heads on 3 key/value
 * heads); batch 8 of 101 tokens, the sweep's default prompt set and batch size.
 */
import yargs from 'yargs';
import { initBackend, tf } from '../src/backend.ts';
import { BACKENDS } from '../src/names.ts';
import { ACTIVATIONS } from '../src/model/mlp.ts';
import { modelConfig } from '../src/model/config.ts';
import { stackedMatMul } from '../src/model/pieces.ts';
import { rotate, rotation } from '../src/model/rotary.ts';

const argv = await yargs(process.argv.slice(2))
  .option('backend', { choices: BACKENDS, default: 'wasm' as const })
  .option('repeat', { type: 'number', default: 9 })
  .option('batch', { type: 'number', default: 8, description: 'sequences of 101 tokens' })
  .option('only', { choices: ['mlp', 'rotary', 'gqa', 'unembed'] as const, description: 'one group of pieces' })
  .strict()
  .parseAsync();

const backend = await initBackend(argv.backend);
const [B, T, D, H, dH, M] = [argv.batch, 101, 768, 12, 64, 3072];
const rows = B * T;

/**
 * CPU milliseconds of one call of `f`, run in a tidy. Only the sum of its result is read
 * back: reading the whole of it into a fresh JavaScript array costs more than most of
 * the ops measured here on this machine (first touch of new memory, see the README's
 * Performance section), and the forward pass never reads these tensors back either.
 */
function cpuMs(f: () => tf.Tensor): number {
  const start = process.cpuUsage();
  tf.tidy(() => tf.sum(f()).dataSync());
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

/**
 * Times each candidate of a group and prints its median CPU milliseconds, its time
 * relative to the first candidate, and how far its values are from the first's.
 *
 * CPU time of this process rather than wall time, and the candidates interleaved (one
 * call of each per round, after two warm-up rounds): the machine is shared, and other
 * processes stretch wall time several-fold and unevenly; interleaving makes a slow
 * stretch hit every candidate alike, so the ratios hold even when the absolute figures
 * do not. `gflop`: the work of one call, where all candidates do the same, for a rate.
 */
function report(title: string, cases: Record<string, () => tf.Tensor>, gflop?: number): void {
  console.log(`\n${title}`);
  const entries = Object.entries(cases);
  const reference = tf.tidy(() => entries[0][1]().dataSync());
  const runs = entries.map((): number[] => []);
  for (let round = 0; round < argv.repeat + 2; round++) {
    entries.forEach(([, f], i) => {
      const ms = cpuMs(f);
      if (round >= 2) runs[i].push(ms);
    });
  }
  const medians = runs.map((r) => r.sort((a, b) => a - b)[Math.floor(r.length / 2)]);
  entries.forEach(([name, f], i) => {
    const got = tf.tidy(() => f().dataSync());
    let diff = 0;
    for (let j = 0; j < got.length; j++) diff = Math.max(diff, Math.abs(got[j] - reference[j]));
    const rate = gflop === undefined ? '' : `  ${((gflop / medians[i]) * 1000).toFixed(1)} GFLOP/s`;
    console.log(`  ${name.padEnd(66)} ${medians[i].toFixed(1).padStart(8)} ms CPU  ×${(medians[i] / medians[0]).toFixed(2)}${rate}   (max |Δ| vs first ${diff.toExponential(1)})`);
  });
}

const randn = (shape: number[], scale = 1) => tf.mul(tf.randomNormal(shape, 0, 1, 'float32', 1), scale);

console.log(`formulations on ${backend}, batch ${B} × ${T} tokens, median of ${argv.repeat}`);

const run = (group: NonNullable<typeof argv.only>) => argv.only === undefined || argv.only === group;

// ---- MLP: [batch·pos, d_model] × [d_model, d_mlp] → act → × [d_mlp, d_model]
if (run('mlp')) {
  const x = randn([rows, D]);
  const wIn = randn([D, M], 1 / Math.sqrt(D));
  const wGate = randn([D, M], 1 / Math.sqrt(D));
  const bIn = randn([M], 0.1);
  const wOut = randn([M, D], 1 / Math.sqrt(M));
  const bOut = randn([D], 0.1);
  const x3 = tf.reshape(x, [B, T, D]);
  const wIn3 = tf.tile(tf.reshape(wIn, [1, D, M]), [B, 1, 1]);
  const gflop = (2 * rows * D * M) / 1e9; // per product
  report(
    `MLP products, [${rows}, ${D}] × [${D}, ${M}]`,
    {
      '2-D matMul + bias': () => tf.add(tf.matMul(x, wIn), bIn),
      'fused matMul with bias (tf.fused.matMul)': () => tf.fused.matMul({ a: x, b: wIn, bias: bIn }),
      'batched [batch, pos, d_model] × [batch, d_model, d_mlp]': () => tf.reshape(tf.add(tf.matMul(x3, wIn3), bIn), [rows, M]),
      'transposed operand (x · (W_inᵀ)ᵀ)': () => tf.add(tf.matMul(x, tf.transpose(wIn), false, true), bIn),
    },
    gflop,
  );
  const h = tf.add(tf.matMul(x, wIn), bIn);
  const c = Math.sqrt(2 / Math.PI);
  report(`gelu_new on [${rows}, ${M}]`, {
    'ACTIVATIONS.gelu_new (mlp.ts): h·sigmoid(2√(2/π) h (1 + 0.044715 h²))': () => ACTIVATIONS.gelu_new(h),
    'written with tanh: 0.5·h·(1 + tanh(√(2/π)(h + 0.044715·h²·h)))': () => tf.mul(tf.mul(h, 0.5), tf.add(1, tf.tanh(tf.mul(tf.add(h, tf.mul(tf.mul(tf.square(h), h), 0.044715)), c)))),
    'written with tanh and tf.pow(h, 3)': () => tf.mul(tf.mul(h, 0.5), tf.add(1, tf.tanh(tf.mul(tf.add(h, tf.mul(tf.pow(h, 3), 0.044715)), c)))),
  });
  report(`the other activations on [${rows}, ${M}] (values differ: cost only)`, {
    'gelu (erf)': () => ACTIVATIONS.gelu(h),
    gelu_fast: () => ACTIVATIONS.gelu_fast(h),
    silu: () => ACTIVATIONS.silu(h),
    relu: () => ACTIVATIONS.relu(h),
  });
  const wBoth = tf.concat([wGate, wIn], 1);
  const bBoth = tf.concat([tf.zeros([M]), bIn]);
  report(`gated MLP, both input products (silu)`, {
    'two 2-D matMuls': () => {
      const g = tf.matMul(x, wGate);
      return tf.mul(tf.mul(g, tf.sigmoid(g)), tf.add(tf.matMul(x, wIn), bIn));
    },
    'one [d_model, 2·d_mlp] matMul, then split': () => {
      const [g, lin] = tf.split(tf.add(tf.matMul(x, wBoth), bBoth), 2, 1);
      return tf.mul(tf.mul(g, tf.sigmoid(g)), lin);
    },
  });
  const act = tf.relu(h);
  report(`MLP output product, [${rows}, ${M}] × [${M}, ${D}]`, { '2-D matMul + bias': () => tf.add(tf.matMul(act, wOut), bOut) }, gflop);
}

// ---- Rotary on q (or k), as the projection leaves it: [batch·pos, head·d_head]
for (const rd of run('rotary') ? [16, 64] : []) {
  const c = modelConfig({ n_layers: 1, n_heads: H, d_model: D, d_head: dH, d_vocab: 2, n_ctx: T, positional_embedding_type: 'rotary', rotary_dim: rd });
  const r = rotation(c, T); // cos, sin: (T, dh); swap R: (dh, dh)
  const x = randn([rows, D]);
  const w = randn([D, H * dH], 1 / Math.sqrt(D));
  const q = tf.matMul(x, w); // (B·T, H·dh)
  const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, T, H, dH]), [0, 2, 1, 3]) as tf.Tensor4D; // (B, T, H, dh) -> (B, H, T, dh)
  const cosT = tf.reshape(r.cos, [T, 1, dH]); // broadcast over (B, T, H, dh)
  const sinT = tf.reshape(r.sin, [T, 1, dH]);
  const cosFull = tf.reshape(tf.tile(tf.reshape(r.cos, [1, T, 1, dH]), [B, 1, H, 1]), [rows * H, dH]);
  const sinFull = tf.reshape(tf.tile(tf.reshape(r.sin, [1, T, 1, dH]), [B, 1, H, 1]), [rows * H, dH]);
  const n = rd / 2;
  // W R per head, for the folded formulation: (dm·H, dh) × (dh, dh)
  const wR = tf.reshape(tf.matMul(tf.reshape(w, [D * H, dH]), r.swap), [D, H * dH]);
  report(`rotary on q, rotary_dim ${rd} of ${dH}, ${H} heads → [batch, head, pos, d_head]`, {
    'rotate() (rotary.ts): x·cos + (x R)·sin after the transpose': () => rotate(r, heads(q)),
    'slices + concat on [batch, pos, head, d_head] (TL/HF style)': () => {
      const q4 = tf.reshape(q, [B, T, H, dH]);
      const rot = tf.slice(q4, [0, 0, 0, 0], [B, T, H, rd]);
      const x1 = tf.slice(rot, [0, 0, 0, 0], [B, T, H, n]);
      const x2 = tf.slice(rot, [0, 0, 0, n], [B, T, H, n]);
      const half = tf.concat([tf.neg(x2), x1], 3);
      const y = tf.add(tf.mul(rot, tf.slice(cosT, [0, 0, 0], [T, 1, rd])), tf.mul(half, tf.slice(sinT, [0, 0, 0], [T, 1, rd])));
      const out = rd === dH ? y : tf.concat([y, tf.slice(q4, [0, 0, 0, rd], [B, T, H, dH - rd])], 3);
      return tf.transpose(out, [0, 2, 1, 3]);
    },
    'x·cos + (x R)·sin before the transpose, broadcast (pos, 1, d_head)': () => {
      const swapped = tf.reshape(tf.matMul(tf.reshape(q, [rows * H, dH]), r.swap), [B, T, H, dH]);
      return tf.transpose(tf.add(tf.mul(tf.reshape(q, [B, T, H, dH]), cosT), tf.mul(swapped, sinT)), [0, 2, 1, 3]);
    },
    'x·cos + (x R)·sin before the transpose, cos/sin tiled to [batch·pos·head, d_head]': () => {
      const rows2 = tf.reshape(q, [rows * H, dH]);
      return heads(tf.add(tf.mul(rows2, cosFull), tf.mul(tf.matMul(rows2, r.swap), sinFull)));
    },
    'R folded into the projection: x W·cos + x (W R)·sin': () => {
      const y = tf.add(tf.mul(tf.reshape(q, [B, T, H, dH]), cosT), tf.mul(tf.reshape(tf.matMul(x, wR), [B, T, H, dH]), sinT));
      return tf.transpose(y, [0, 2, 1, 3]);
    },
    'no rotary (the transpose alone, for scale)': () => heads(q),
  });
}

// ---- Grouped-query attention: 12 query heads on 3 key/value heads (4:1)
if (run('gqa')) {
  const kv = 3;
  const g = H / kv;
  const x = randn([rows, D]);
  const wQ = randn([D, H * dH], 1 / Math.sqrt(D));
  const wK = randn([kv, D, dH], 1 / Math.sqrt(D));
  const heads = (t: tf.Tensor, n: number) => tf.transpose(tf.reshape(t, [B, T, n, dH]), [0, 2, 1, 3]); // (B, n, T, dh)
  const side = (w: tf.Tensor) => tf.reshape(tf.transpose(w, [1, 0, 2]), [D, -1]); // (n, dm, dh) -> (dm, n·dh)
  const repeatIndex = tf.tensor1d(Array.from({ length: H }, (_, h) => Math.floor(h / g)), 'int32');
  const q = heads(tf.matMul(x, wQ), H); // (B, H, T, dh)
  const scoresOf = (bmm: (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D) => ({
    'grouped queries (attention.ts): [batch·kv, group·pos, d_head] × [batch·kv, d_head, pos]': () => {
      const k = heads(tf.matMul(x, side(wK)), kv); // (B, kv, T, dh)
      return tf.reshape(bmm(tf.reshape(q, [B * kv, g * T, dH]) as tf.Tensor3D, tf.reshape(tf.transpose(k, [0, 1, 3, 2]), [B * kv, dH, T]) as tf.Tensor3D), [B, H, T, T]);
    },
    'repeat W_K to every query head (gather), full-head products': () => {
      const k = heads(tf.matMul(x, side(tf.gather(wK, repeatIndex))), H); // (B, H, T, dh)
      return tf.reshape(bmm(tf.reshape(q, [B * H, T, dH]) as tf.Tensor3D, tf.reshape(tf.transpose(k, [0, 1, 3, 2]), [B * H, dH, T]) as tf.Tensor3D), [B, H, T, T]);
    },
    'repeat K after projecting (gather on the head axis)': () => {
      const k = tf.gather(heads(tf.matMul(x, side(wK)), kv), repeatIndex, 1); // (B, H, T, dh)
      return tf.reshape(bmm(tf.reshape(q, [B * H, T, dH]) as tf.Tensor3D, tf.reshape(tf.transpose(k, [0, 1, 3, 2]), [B * H, dH, T]) as tf.Tensor3D), [B, H, T, T]);
    },
  });
  report(`GQA scores q·kᵀ, ${H} heads on ${kv} kv heads, d_model ${D}: pieces cut apart on the host (inference)`, scoresOf(stackedMatMul));
  report(`GQA scores q·kᵀ, the same with one batched tf.matMul (training)`, scoresOf((a, b) => tf.matMul(a, b)));
}

// ---- The loss scores' unembedding: log Σ exp of each row's logits, never all logits at once (unembed.ts)
if (run('unembed')) {
  const V = 16384; // a third of GPT-2's vocabulary, enough to show the slice width's effect
  const x = randn([rows, D + 1]) as tf.Tensor2D; // the final residual with a column of ones for b_U
  const wU = randn([D + 1, V], 1 / Math.sqrt(D));
  // One tensor per slice, as the scorer uploads them (here kept across calls, so packed once).
  const slices = (n: number) => Array.from({ length: V / n }, (_, i) => tf.keep(tf.slice(wU, [0, i * n], [D + 1, n]) as tf.Tensor2D));
  const bySlice = new Map([512, 2048, 8192].map((n) => [n, slices(n)]));
  const sliceLse = (z: tf.Tensor2D) => tf.sub(tf.max(z, 1), tf.log(tf.max(tf.softmax(z), 1))); // (rows)
  const sliced = (n: number) => () => tf.logSumExp(tf.stack(bySlice.get(n)!.map((w) => sliceLse(tf.matMul(x, w))), 1), 1); // (rows, slices) -> (rows)
  report(
    `log-sum-exp of [${rows}, ${D + 1}] × [${D + 1}, ${V}] logits, by vocabulary slice`,
    {
      'slices of 2048 (VOCAB_SLICE)': sliced(2048),
      'slices of 512': sliced(512),
      'slices of 8192': sliced(8192),
      'whole, one product and tf.logSumExp': () => tf.logSumExp(tf.matMul(x, wU), 1),
    },
    (2 * rows * (D + 1) * V) / 1e9,
  );
  const z = tf.matMul(x, bySlice.get(2048)![0]) as tf.Tensor2D; // (rows, 2048)
  report(`log-sum-exp of one [${rows}, 2048] slice`, {
    'max − log max softmax (unembed.ts)': () => sliceLse(z),
    'tf.logSumExp': () => tf.logSumExp(z, 1),
  });
  const w = randn([H, D, dH], 1 / Math.sqrt(D)); // W_Q: (H, dm, dh)
  const side = (t: tf.Tensor) => tf.reshape(tf.transpose(t, [1, 0, 2]), [D, H * dH]) as tf.Tensor2D; // (dm, H·dh)
  const kept = side(w);
  const xq = randn([rows, D]);
  report(`projection [${rows}, ${D}] × [${D}, ${H * dH}], heads side by side`, {
    'weight rearranged once and kept (WeightLayouts, forward.ts)': () => tf.matMul(xq, kept),
    'weight rearranged anew per batch': () => tf.matMul(xq, side(w)),
  }, (2 * rows * D * H * dH) / 1e9);
}
