/**
 * Picks the tfjs backend. `auto` tries tfjs-node (native TensorFlow, an optional
 * dependency whose install needs a download), then wasm, then the pure-JS cpu backend.
 * All compute code imports only `@tensorflow/tfjs-core`.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { HeadsweepError } from './errors.ts';
import { BACKENDS, type BackendChoice, type BackendName } from './names.ts';

export { BACKENDS, type BackendChoice, type BackendName };

let nodeBackendTried = false;

async function tryLoadNodeBackend(): Promise<boolean> {
  if (!nodeBackendTried) {
    nodeBackendTried = true;
    try {
      // Registers the 'tensorflow' backend with the shared tfjs-core instance.
      await import('@tensorflow/tfjs-node' as string);
    } catch {
      return false;
    }
  }
  return tf.findBackendFactory('tensorflow') !== null;
}

async function trySet(name: BackendName): Promise<boolean> {
  if (name === 'tensorflow' && !(await tryLoadNodeBackend())) return false;
  try {
    return (await tf.setBackend(name)) && tf.getBackend() === name;
  } catch {
    return false;
  }
}

/** Activates a backend and returns the name of the one that runs. */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<BackendName> {
  // tfjs prints advice on stderr (the cpu backend's "install tfjs-node" banner) unless
  // PROD is set; headsweep reports the backend that ran in every manifest instead.
  tf.env().set('PROD', true);
  if (choice !== 'auto') {
    if (!(await trySet(choice))) {
      throw new HeadsweepError(
        `backend '${choice}' could not be started${choice === 'tensorflow' ? ' (is @tensorflow/tfjs-node installed with its native library?)' : ''}`,
        { stage: 'config', key: 'backend' },
      );
    }
    return choice;
  }
  for (const name of BACKENDS) {
    if (await trySet(name)) return name;
  }
  throw new HeadsweepError('no tfjs backend could be started', { stage: 'config', key: 'backend' });
}

export { tf };
