/**
 * `headsweep report <out> --html <file> [--step N]`: one self-contained HTML page of
 * charts and tables from a sweep's output folder.
 */
import { renameSync, writeFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { command, EXIT, type CliState } from '../cli.ts';
import { readSweepOutput } from '../report/read.ts';
import { HeadsweepError } from '../../src/errors.ts';

interface ReportArgs {
  out: string;
  html: string;
  step?: number;
}

export default function report(state: CliState): CommandModule {
  const module: CommandModule<object, ReportArgs> = {
    builder: (yargs) => yargs
      .positional('out', { type: 'string', demandOption: true, describe: 'Sweep output folder (the config\'s `output`)' })
      .option('html', { type: 'string', demandOption: true, describe: 'HTML file to write' })
      .option('step', { type: 'number', describe: 'Step shown by the heatmaps and the classified-heads table (default: each run\'s last)' })
      .check((args) => {
        if (args.step !== undefined && !(Number.isInteger(args.step) && args.step >= 0)) {
          throw new Error(`--step must be a whole number >= 0, got ${args.step}`);
        }
        return true;
      }),
    handler: async (args) => {
      const output = await readSweepOutput(args.out);
      // vega and vega-lite take seconds to load; every other command would pay for them
      // if this module imported them, since cli.ts loads all commands to build --help.
      const { buildReport } = await import('../report/html.ts');
      const { html, charts } = await buildReport(output, { step: args.step }).catch((err: unknown) => {
        // A --step no run has is bad usage (exit 2), not a failure to report.
        if (err instanceof HeadsweepError && err.stage === 'config') state.exitCode = EXIT.badConfig;
        throw err;
      });
      // Written beside the target and renamed, so a failed run never leaves half a page.
      const tmp = `${args.html}.${process.pid}.tmp`;
      try {
        writeFileSync(tmp, html);
        renameSync(tmp, args.html);
      } catch (cause) {
        throw new HeadsweepError(`${args.html}: cannot write the report`, { stage: 'write', file: args.html, cause });
      }
      process.stdout.write(`wrote ${args.html} (${charts} charts)\n`);
    },
  };
  // yargs types a handler by its own arguments; cli.ts holds modules of every shape.
  return command(module);
}
