// piscina loads its worker from a file name, and worker threads do not inherit the tsx
// loader of the main thread: register it here, then hand piscina the TypeScript worker.
// Fault-injection fixtures (test/fixtures/workers) import taskHandler and scoreTask from here.
import { register } from 'tsx/esm/api';

register();
const worker = await import('./worker.ts');
export const { taskHandler, scoreTask } = worker;
export default worker.default;
