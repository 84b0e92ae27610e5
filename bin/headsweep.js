#!/usr/bin/env node
// Entry point: the command line as compiled into dist/ by `npm run build` (which `npm ci`
// and `npm install` run in a checkout).
import { main } from '../dist/cli.mjs';

process.exitCode = await main(process.argv.slice(2));
