/**
 * Weight-based scores (METRICS.md §5) against the golden fixtures, computed by an
 * independent float64 implementation. Tolerance 1e-3 absolute, METRICS.md §7's bound for
 * float32 compute: the vocabulary-sized product R_final(W_U) W_E and the Gram matrices
 * are float32 sums over d_vocab and d_model terms.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf, type BackendName } from '../src/backend.ts';
import { loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { compositionScores } from '../src/metrics/composition.ts';
import { copyingScores } from '../src/metrics/copying.ts';
import { disposeParams, uploadParams } from '../src/model/forward.ts';
import type { CompositionScores } from '../src/score.ts';
import type { ExpectedWeights } from './helpers/fixtures.ts';
import { compositionMisses, copyingMisses } from './helpers/golden.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');

interface Computed {
  nHeads: number;
  copying: Float64Array;
  composition: CompositionScores;
  expected: ExpectedWeights;
  /** Live tensors after scoring minus before uploading the weights. */
  leaked: number;
}

function scoreFixture(name: string): Computed {
  const ckpt = loadCheckpoint(join(FIXTURES, `${name}.safetensors`));
  const expected = JSON.parse(readFileSync(join(FIXTURES, `${name}.expected.json`), 'utf8')) as ExpectedWeights;
  const before = tf.memory().numTensors;
  const params = uploadParams(ckpt.weights);
  const copying = copyingScores(params, ckpt);
  const composition = compositionScores(params, ckpt.config);
  disposeParams(params);
  return { nHeads: ckpt.config.n_heads, copying, composition, expected, leaked: tf.memory().numTensors - before };
}

function goldenSuite(backend: BackendName, fixtures: readonly string[]): void {
  describe(`weight scores on ${backend}`, () => {
    beforeAll(async () => {
      await initBackend(backend);
    });

    it.each(fixtures)('%s: copying and composition match the golden values, no tensor leaks', (name) => {
      const r = scoreFixture(name);
      expect(copyingMisses(r.copying, r.nHeads, r.expected.copying)).toEqual([]);
      expect(compositionMisses(r.composition, r.expected.composition)).toEqual([]);
      expect(r.leaked).toBe(0);
    });
  });
}

goldenSuite('wasm', ['planted-induction-2l', 'random-2l-ln-standard', 'random-1l-none-shortformer']);

describe('planted-induction-2l circuit (wasm)', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('L1H0 copies, L0H0 anti-copies, L1H0 reads L0H0 through its keys', () => {
    const r = scoreFixture('planted-induction-2l');
    expect(r.copying[1 * r.nHeads + 0]).toBeCloseTo(1.0, 3);
    expect(r.copying[0 * r.nHeads + 0]).toBeCloseTo(-1.0, 3);
    const c = r.composition;
    const row = (kind: string) =>
      Array.from(c.score.keys()).find(
        (i) => c.src_layer[i] === 0 && c.src_head[i] === 0 && c.dst_layer[i] === 1 && c.dst_head[i] === 0 && c.kind[i] === kind,
      )!;
    expect(c.score[row('K')]).toBeCloseTo(0.25, 3);
    expect(c.score[row('Q')]).toBeCloseTo(0, 3);
    expect(c.score[row('V')]).toBeCloseTo(0, 3);
  });

  it('a one-layer model has no composition rows', () => {
    const r = scoreFixture('random-1l-none-shortformer');
    expect(r.composition.score.length).toBe(0);
    expect(r.composition.kind).toEqual([]);
    expect(r.composition.baseline).toBeCloseTo(0.14433756729740643, 12); // 1 / √48, d_model of this fixture
  });
});

goldenSuite('cpu', ['random-2l-ln-standard']);
