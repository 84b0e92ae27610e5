/**
 * Builds the small hand-made series in data/demo/ and the prompts in data/prompts/ that
 * the sweep tests run on (`npx tsx pipeline/scripts/make-demo-data.ts`); `npm run sweep`
 * scores the trained series in data/checkpoints instead.
 *
 * - `planted-2l`: five checkpoints that move in a straight line from seeded noise to the
 *   hand-built induction model of test/fixtures/planted-induction-2l (METRICS.md §7):
 *   weights(α) = α · planted + (1 - α) · noise. The previous-token head L0H0 and the
 *   induction head L1H0 "form" along the steps, as in Olsson et al.'s phase change.
 * - `shortformer-1l`: the random one-layer fixture and a seeded perturbation of it: a
 *   second architecture (no norm, shortformer positions, three heads) in the same sweep.
 * - `prompts/nat.jsonl`: short sentences over a 15-word vocabulary (ids 1-15, BOS 0), so
 *   they fit both models (d_vocab 16 and 60): "natural" text with repeated phrases.
 *
 * Deterministic: the same script writes byte-identical files.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { loadCheckpoint } from '../../src/checkpoint/checkpoint.ts';
import { writeSafetensors, type TensorToWrite } from '../../src/checkpoint/containers/safetensors.ts';
import { seededRng, type Rng } from '../../src/prompts/rng.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'test/fixtures');
const OUT = join(ROOT, 'data');

/** Standard normal draws by Box–Muller over 24-bit uniform integers (exact on every machine). */
function gaussian(rng: Rng, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  const unit = () => (uniformInt(rng, 0, 2 ** 24 - 1) + 0.5) / 2 ** 24;
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(unit()));
    const theta = 2 * Math.PI * unit();
    out[i] = std * r * Math.cos(theta);
    if (i + 1 < n) out[i + 1] = std * r * Math.sin(theta);
  }
  return out;
}

/** A checkpoint's weights mixed with seeded noise: α · weights + (1 - α) · noise; biases get no noise. */
function series(fixture: string, run: string, points: { step: number; alpha: number }[], noiseStd: number, seed: number): void {
  const ck = loadCheckpoint(join(FIXTURES, `${fixture}.safetensors`));
  const dir = join(OUT, 'demo', run);
  mkdirSync(dir, { recursive: true });
  const rng = seededRng(seed);
  // One noise draw per tensor, in sorted key order, shared by every step of the series.
  const noise = new Map<string, Float32Array>();
  for (const key of [...ck.weights.keys()].sort()) {
    const w = ck.weights.get(key)!;
    noise.set(key, /\.b_[QKVOU]$/.test(key) ? new Float32Array(w.data.length) : gaussian(rng, w.data.length, noiseStd));
  }
  for (const { step, alpha } of points) {
    const tensors: Record<string, TensorToWrite> = {};
    for (const [key, w] of ck.weights) {
      const z = noise.get(key)!;
      tensors[key] = { shape: w.shape, data: w.data.map((v, i) => alpha * v + (1 - alpha) * z[i]) };
    }
    const metadata = {
      config: JSON.stringify(ck.config),
      step: String(step),
      tokens_seen: String(step * 16 * 64),
      format: 'headsweep-demo',
    };
    writeSafetensors(join(dir, `step${String(step).padStart(5, '0')}.safetensors`), tensors, metadata);
  }
}

const WORDS = ['the', 'cat', 'dog', 'sat', 'on', 'mat', 'ran', 'to', 'a', 'big', 'red', 'ball', 'and', 'saw', '.'];
const SENTENCES = [
  'the cat sat on the mat . the dog sat on the mat . the cat saw the dog .',
  'a big red ball . the dog ran to the ball . the cat ran to a big red ball .',
  'the dog saw a cat and the cat saw a dog . the dog and the cat sat on a mat .',
  'a cat ran to the mat and sat . a dog ran to the mat and sat . a big dog sat .',
  'the red ball sat on the mat . the big dog saw the red ball and ran to the ball .',
  'the cat and the dog ran . the cat and the dog sat . the cat and the dog saw a ball .',
  'a dog saw the big red ball on the mat . a cat saw the big red ball on the mat .',
  'the mat . the red mat . the big red mat . the cat sat on the big red mat .',
];

function prompts(): void {
  mkdirSync(join(OUT, 'prompts'), { recursive: true });
  const lines = SENTENCES.map((s) => JSON.stringify([0, ...s.split(' ').map((w) => WORDS.indexOf(w) + 1)]));
  writeFileSync(join(OUT, 'prompts', 'nat.jsonl'), `${lines.join('\n')}\n`);
}

series('planted-induction-2l', 'planted-2l', [
  // Chosen so the previous-token head forms first (α 0.6) and the induction head after it (α 0.7-0.8).
  { step: 0, alpha: 0 }, { step: 500, alpha: 0.55 }, { step: 1000, alpha: 0.65 }, { step: 1500, alpha: 0.75 }, { step: 2000, alpha: 1 },
], 0.1, 1);
series('random-1l-none-shortformer', 'shortformer-1l', [{ step: 0, alpha: 0.5 }, { step: 1000, alpha: 1 }], 0.1, 2);
prompts();
