/**
 * Makes tfjs-core able to differentiate `forward()` on the backends headsweep ships.
 *
 * Two pieces are missing from the installed packages, and each is added here once:
 *
 * 1. Gradient functions. tfjs-core's CommonJS bundle (what `import '@tensorflow/tfjs-core'`
 *    loads in Node) registers no gradients; only the union package `@tensorflow/tfjs`
 *    imports `dist/register_all_gradients.js`. That file is ESM with extension-less
 *    relative imports (`'./gradients/Abs_grad'`), which Node's ESM resolver refuses, and
 *    one of them (`'../gradients'`) names both a file and a folder. A resolve hook that
 *    appends `.js` to relative specifiers inside tfjs-core's `dist/` makes it loadable.
 *    Its modules are a second copy of tfjs-core's ops, which is harmless: the engine and
 *    the gradient registry live on `globalThis`, so they register into the one engine.
 *
 * 2. `UnsortedSegmentSum` on wasm: the gradient of `tf.gather` (the embedding lookup)
 *    needs it and the wasm backend does not implement it. It is a scatter-add of rows
 *    into the embedding gradient, written here over the backend's heap.
 */
import { register } from 'node:module';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';

const RESOLVE_HOOK = `
export async function resolve(specifier, context, next) {
  const inCore = context.parentURL !== undefined && context.parentURL.includes('/@tensorflow/tfjs-core/dist/');
  if (inCore && specifier.startsWith('.') && !specifier.endsWith('.js')) return next(specifier + '.js', context);
  return next(specifier, context);
}`;

let gradientsLoaded: Promise<void> | null = null;

function loadGradients(): Promise<void> {
  gradientsLoaded ??= (async () => {
    register(`data:text/javascript,${encodeURIComponent(RESOLVE_HOOK)}`);
    const coreDir = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-core/package.json'));
    await import(pathToFileURL(join(coreDir, 'dist', 'register_all_gradients.js')).href);
  })();
  return gradientsLoaded;
}

interface WasmTensorInfo {
  shape: number[];
  dtype: tf.DataType;
  dataId: object;
}

/** The part of the wasm backend's interface a JS kernel uses. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): WasmTensorInfo;
  typedArrayFromHeap(t: WasmTensorInfo): Float32Array | Int32Array;
}

/**
 * out[segmentIds[i], ...] += x[i, ...]
 * x: [n, ...inner], segmentIds: [n] int32 -> [numSegments, ...inner]
 */
function unsortedSegmentSum(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap }): WasmTensorInfo {
  const backend = args.backend as WasmBackend;
  const x = args.inputs.x as unknown as WasmTensorInfo;
  const segmentIds = args.inputs.segmentIds as unknown as WasmTensorInfo;
  const numSegments = args.attrs.numSegments as number;
  const inner = x.shape.slice(1).reduce((a, b) => a * b, 1);
  const out = backend.makeOutput([numSegments, ...x.shape.slice(1)], x.dtype);
  // Views are taken after makeOutput: allocating may grow the heap and detach older views.
  const o = backend.typedArrayFromHeap(out);
  const xs = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  o.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= numSegments) continue; // TensorFlow drops out-of-range ids
    const dst = id * inner;
    const src = i * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += xs[src + j];
  }
  return out;
}

/** Call once after `initBackend`, before `tf.variableGrads`. Idempotent. */
export async function enableTraining(): Promise<void> {
  await loadGradients();
  if (tf.getBackend() === 'wasm' && tf.getKernel('UnsortedSegmentSum', 'wasm') === undefined) {
    tf.registerKernel({
      kernelName: 'UnsortedSegmentSum',
      backendName: 'wasm',
      kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc,
    });
  }
}
