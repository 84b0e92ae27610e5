/**
 * `headsweep sweep <config>`: scores every checkpoint the config names and writes the
 * tables. Progress goes to stderr, a short summary (the top prefix-matching heads of
 * each run) to stdout. Ctrl-C stops cleanly; a second Ctrl-C kills the process.
 */
import type { CommandModule } from 'yargs';
import { HeadsweepError } from '../../src/errors.ts';
import { EXIT, type CliState } from '../cli.ts';
import { plannedCheckpoints } from '../plan.ts';
import { Progress } from '../progress.ts';
import { runSweep, type SweepResult } from '../sweep.ts';
import { configOptions, planFromArgs, type ConfigArgs } from './validate.ts';

function summaryText(result: SweepResult, outDir: string): string {
  const m = result.manifest;
  const lines: string[] = [];
  if (result.summary.length > 0) {
    lines.push('top heads by prefix_matching (latest scored checkpoint of each run):');
    for (const s of result.summary) {
      const step = s.step === null ? 'step ?' : `step ${s.step}`;
      const heads = s.top.map((h) => `L${h.layer}H${h.head} ${h.prefixMatching.toFixed(3)}${h.label === null ? '' : ` ${h.label}`}`);
      lines.push(`  ${s.run}  ${step}  ${s.promptSet}:  ${heads.join('   ')}`);
    }
  }
  const failed = m.counts.failed > 0 ? `, ${m.counts.failed} failed (see ${outDir}/errors)` : '';
  const skipped = m.counts.checkpoints_planned - m.counts.scored - m.counts.failed;
  const notRun = skipped > 0 ? `, ${skipped} not run` : '';
  lines.push(`${m.status}: ${m.counts.scored}/${m.counts.checkpoints_planned} checkpoints scored${failed}${notRun} on ${m.backend}; tables in ${outDir}`);
  return `${lines.join('\n')}\n`;
}

export default function sweep(state: CliState): CommandModule {
  const module: CommandModule<object, ConfigArgs> = {
    command: 'sweep <config>',
    describe: 'Score every attention head of every checkpoint in a sweep config and write the tables',
    builder: configOptions,
    handler: async (args) => {
      const plan = await planFromArgs(state, args);
      const progress = new Progress(plannedCheckpoints(plan).length);
      const interrupt = new AbortController();
      // `once`: a second Ctrl-C finds no handler and ends the process the default way.
      const onSigint = () => {
        progress.note('headsweep: interrupted; finishing the files being written (Ctrl-C again to kill)');
        interrupt.abort();
      };
      process.once('SIGINT', onSigint);
      let result: SweepResult;
      try {
        result = await runSweep(plan, { signal: interrupt.signal, progress });
      } catch (err) {
        if (err instanceof HeadsweepError && err.stage === 'config') state.exitCode = EXIT.badConfig;
        throw err;
      } finally {
        process.off('SIGINT', onSigint);
      }
      for (const e of result.errors) process.stderr.write(`headsweep: ${e.run}: ${e.stage} failed: ${e.message}\n`);
      process.stdout.write(summaryText(result, plan.outDir));
      state.exitCode = result.exitCode;
    },
  };
  // yargs types a handler by its own arguments; cli.ts holds modules of every shape.
  return module as unknown as CommandModule;
}
