/**
 * `npm run docs`: rewrites the generated blocks of README.md and docs/TABLES.md (score,
 * table and column lists, default rules) from the code; see pipeline/docs.ts.
 */
import { writeDocs } from '../docs.ts';

const written = writeDocs();
console.log(written.length === 0 ? 'docs are up to date' : `rewrote ${written.join(', ')}`);
