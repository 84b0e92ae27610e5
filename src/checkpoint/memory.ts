/**
 * Whether a model fits a backend, asked before its weights are read: a model the backend
 * cannot hold is refused with its size, the limit and the way out, instead of failing
 * half-way through loading or scoring.
 *
 * The wasm backend keeps every tensor in one WebAssembly memory of at most 4 GiB (32-bit
 * addresses), so a model whose float32 weights alone exceed it cannot be scored there.
 * The cpu backend keeps tensors in JavaScript memory and tfjs-node in TensorFlow's, with
 * no limit of this kind.
 */
import { checkpointError } from '../errors.ts';
import { parameterCount, type ModelConfig } from '../model/config.ts';
import type { BackendName } from '../names.ts';

/** Bytes a backend can hold at most, for those that have such a limit. */
export const BACKEND_MEMORY_LIMITS: Readonly<Partial<Record<BackendName, number>>> = { wasm: 4 * 2 ** 30 };

export interface BackendFit {
  fits: boolean;
  /** The model's float32 weights, in bytes (activations come on top). */
  bytes: number;
  /** The backend's limit, or null when it has none. */
  limit: number | null;
}

export function backendFit(c: ModelConfig, backend: BackendName): BackendFit {
  const bytes = parameterCount(c) * 4;
  const limit = BACKEND_MEMORY_LIMITS[backend] ?? null;
  return { fits: limit === null || bytes < limit, bytes, limit };
}

function gigabytes(n: number): string {
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

/** Throws a HeadsweepError (stage 'load') naming `file` when the model does not fit the backend. */
export function assertFits(file: string, c: ModelConfig, backend: BackendName): void {
  const fit = backendFit(c, backend);
  if (fit.fits) return;
  throw checkpointError(
    file,
    `the model's float32 weights take ${gigabytes(fit.bytes)} (${parameterCount(c)} parameters), more than the ${gigabytes(fit.limit!)} ` +
      `the ${backend} backend can hold; score it with backend: tensorflow (@tensorflow/tfjs-node), which has no such limit`,
  );
}
