/**
 * Whether a model fits a backend, asked before its weights are read: a model the backend
 * cannot hold is refused with its size, the limit and the way out, instead of failing
 * half-way through loading or scoring.
 *
 * The wasm backend keeps every tensor in one WebAssembly memory of at most 4 GiB (32-bit
 * addresses). The cpu backend keeps tensors in JavaScript memory and tfjs-node in
 * TensorFlow's, with no limit of this kind.
 *
 * What scoring holds on the device: never W_E or W_U whole unless bigram_kl reads them
 * (embeddings are looked up on the host, the unembedding streams in vocabulary slices),
 * and each weight a product multiplies by about three times over (the weight, the
 * backend's packed copy of it, and for attention its heads laid side by side). A model
 * whose weights fit so is scored with every layer on the device; one that does not, a
 * layer at a time (score.ts), which needs the largest layer so, and, for the weight
 * scores, every layer's attention weights (twice over) at once.
 */
import { checkpointError } from '../errors.ts';
import { expectedTensors, parameterCount, type ModelConfig } from '../model/config.ts';
import type { BackendName } from '../names.ts';

/** Bytes a backend can hold at most, for those that have such a limit. */
export const BACKEND_MEMORY_LIMITS: Readonly<Partial<Record<BackendName, number>>> = { wasm: 4 * 2 ** 30 };

/** Device bytes per weight byte a product multiplies (see the file comment). */
const COPIES = 3;

export interface BackendFit {
  fits: boolean;
  /** Every layer's weights on the device at once; false: one layer at a time, if `fits`. */
  whole: boolean;
  /** The model's float32 weights, in bytes (activations come on top). */
  bytes: number;
  /** What scoring needs on the device at once, in bytes: whole, or else a layer at a time. */
  deviceBytes: number;
  limit: number | null;
}

/** The two vocabulary-sized matrices: left in the file and read a slice at a time, unless bigram_kl reads them whole. */
export const VOCABULARY_MATRICES: readonly string[] = ['embed.W_E', 'unembed.W_U'];

/** What goes to the device only for bigram_kl: the vocabulary matrices and b_U. */
export const VOCABULARY_TENSORS: readonly string[] = [...VOCABULARY_MATRICES, 'unembed.b_U'];

const VOCABULARY = new Set(VOCABULARY_TENSORS);

/**
 * `vocabularyOnDevice`: W_E and W_U go to the device whole (bigram_kl reads them so, and a
 * checkpoint loaded without leaving them in its file holds them in memory whole).
 */
export function backendFit(c: ModelConfig, backend: BackendName, vocabularyOnDevice = true): BackendFit {
  const bytes = parameterCount(c) * 4;
  const limit = BACKEND_MEMORY_LIMITS[backend] ?? null;
  let vocabulary = 0;
  let attention = 0;
  const layers = new Map<string, number>();
  for (const [key, spec] of expectedTensors(c)) {
    const n = spec.shape.reduce((a, b) => a * b, 1) * 4;
    if (VOCABULARY.has(key)) vocabulary += n;
    const layer = /^blocks\.(\d+)\.(\w+)/.exec(key);
    if (layer === null) continue;
    layers.set(layer[1], (layers.get(layer[1]) ?? 0) + n);
    if (layer[2] === 'attn' || layer[2] === 'ln1') attention += n;
  }
  const onDevice = vocabularyOnDevice ? vocabulary : 0;
  const whole = COPIES * (bytes - vocabulary) + onDevice;
  const byLayer = Math.max(COPIES * Math.max(0, ...layers.values()), 2 * attention) + (bytes - vocabulary - [...layers.values()].reduce((a, b) => a + b, 0)) + onDevice;
  if (limit === null) return { fits: true, whole: true, bytes, deviceBytes: whole, limit };
  if (whole <= limit) return { fits: true, whole: true, bytes, deviceBytes: whole, limit };
  return { fits: byLayer <= limit, whole: false, bytes, deviceBytes: byLayer, limit };
}

function gigabytes(n: number): string {
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

/** Throws a HeadsweepError (stage 'load') naming `file` when the model does not fit the backend. */
export function assertFits(file: string, c: ModelConfig, backend: BackendName, vocabularyOnDevice = true): void {
  const fit = backendFit(c, backend, vocabularyOnDevice);
  if (fit.fits) return;
  const size = `the model's float32 weights take ${gigabytes(fit.bytes)} (${parameterCount(c)} parameters)`;
  const need = fit.bytes > fit.limit! ? size : `${size}, and scoring it a layer at a time needs ${gigabytes(fit.deviceBytes)} at once`;
  throw checkpointError(
    file,
    `${need}, more than the ${gigabytes(fit.limit!)} the ${backend} backend can hold; ` +
      'score it with backend: tensorflow (@tensorflow/tfjs-node), which has no such limit',
  );
}
