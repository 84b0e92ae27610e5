// piscina loads its worker from a file name, and worker threads do not inherit the tsx
// loader of the main thread: register it here, then hand piscina the TypeScript worker.
import { register } from 'tsx/esm/api';

register();
const { default: runTask } = await import('./worker.ts');
export default runTask;
