/**
 * `headsweep sweep <config>`: scores every checkpoint the config names that the output
 * does not already hold, and writes the tables. Progress goes to stderr (lines a person
 * reads, or JSON events with `--log-format json`), a short summary (the top
 * prefix-matching heads of each run) to stdout. `--watch` follows training runs as they
 * write checkpoints; `--shard i/n` (or a batch scheduler's environment) scores one
 * shard. Ctrl-C or SIGTERM stops cleanly; a second Ctrl-C kills the process.
 */
import type { Argv, CommandModule } from 'yargs';
import { HeadsweepError, summarise } from '../../src/errors.ts';
import { command, EXIT, type CliState } from '../cli.ts';
import { CONFIG_LIMITS, loadConfig, type LoadedConfig } from '../config.ts';
import { jsonLog, TextLog, type EventLog } from '../events.ts';
import { parseShard, shardFromEnv, type Shard } from '../shard.ts';
import { runSweep, watchSweep, type SweepOptions, type SweepResult } from '../sweep.ts';
import { configOptions, overridesFromArgs, planFromArgs, type ConfigArgs } from './validate.ts';

const LOG_FORMATS = ['text', 'json'] as const;

interface SweepArgs extends ConfigArgs {
  force?: boolean;
  watch?: boolean;
  'poll-seconds': number;
  'until-idle'?: number;
  shard?: string;
  'log-format': (typeof LOG_FORMATS)[number];
}

function sweepOptions(yargs: Argv): Argv<SweepArgs> {
  return configOptions(yargs)
    .option('force', { type: 'boolean', describe: 'Score every checkpoint again, even those the output already holds under the same bytes and settings' })
    .option('watch', { type: 'boolean', describe: 'Keep polling the checkpoint globs and score each new checkpoint once it is completely written' })
    .option('poll-seconds', { type: 'number', default: 30, describe: 'With --watch: seconds between polls' })
    .option('until-idle', { type: 'number', describe: 'With --watch: stop after this many minutes in which no new checkpoint appeared (default: run until Ctrl-C or SIGTERM)' })
    .option('shard', { type: 'string', describe: 'Score shard i of n (i/n, from 0); default: from JOB_COMPLETION_INDEX/JOB_COMPLETIONS or SLURM_ARRAY_TASK_*, else everything' })
    .option('log-format', { type: 'string', choices: [...LOG_FORMATS], default: 'text', describe: 'stderr: progress lines (text) or one JSON event per line (json)' }) as unknown as Argv<SweepArgs>;
}

/** The options that only make sense together, checked before anything is read. */
function checkWatchArgs(args: SweepArgs): void {
  const bad = (key: string, reason: string) => new HeadsweepError(`--${key} ${reason}`, { stage: 'config', key: `--${key}` });
  if (!(args['poll-seconds'] > 0)) throw bad('poll-seconds', `must be a number of seconds > 0, got ${args['poll-seconds']}`);
  // A longer delay than Node's timers hold (2^31 − 1 ms) would fire at once: a busy poll.
  if (args['poll-seconds'] > CONFIG_LIMITS.task_timeout_s) throw bad('poll-seconds', `must be at most ${CONFIG_LIMITS.task_timeout_s} seconds, got ${args['poll-seconds']}`);
  if (args['until-idle'] !== undefined) {
    if (!(args['until-idle'] > 0)) throw bad('until-idle', `must be a number of minutes > 0, got ${args['until-idle']}`);
    if (!args.watch) throw bad('until-idle', 'only applies to --watch');
  }
}

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
  const upToDate = m.counts.up_to_date ?? 0;
  const added = result.formatsAdded;
  const written = added.checkpoints === 0 ? ''
    : ` (${added.checkpoints === upToDate ? '' : `${added.checkpoints} of them with `}${added.formats.join(' and ')} written from the stored rows)`;
  const current = upToDate > 0 ? `, ${upToDate} up to date${written}` : '';
  const failed = m.counts.failed > 0 ? `, ${m.counts.failed} failed (see ${outDir}/errors)` : '';
  const skipped = m.counts.checkpoints_planned - m.counts.scored - upToDate - m.counts.failed;
  const notRun = skipped > 0 ? `, ${skipped} not run` : '';
  lines.push(`${m.status}: ${m.counts.scored}/${m.counts.checkpoints_planned} checkpoints scored${current}${failed}${notRun} on ${m.backend}; tables in ${outDir}`);
  return `${lines.join('\n')}\n`;
}

export default function sweep(state: CliState): CommandModule {
  const module: CommandModule<object, SweepArgs> = {
    builder: sweepOptions,
    handler: async (args) => {
      let shard: Shard | null;
      try {
        checkWatchArgs(args);
        shard = args.shard !== undefined ? parseShard(args.shard) : shardFromEnv();
      } catch (err) {
        state.exitCode = EXIT.badConfig;
        throw err;
      }
      const text = args['log-format'] === 'text' ? new TextLog() : null;
      const log: EventLog = text?.log ?? jsonLog();
      const interrupt = new AbortController();
      // `once`: a second Ctrl-C finds no handler and ends the process the default way.
      const onSignal = () => {
        text?.note(`headsweep: ${args.watch ? 'stopping' : 'interrupted'}; finishing the files being written (Ctrl-C again to kill)`);
        interrupt.abort();
      };
      const opts: SweepOptions = { signal: interrupt.signal, log, force: args.force ?? false, shard };
      let sweepNow: () => Promise<SweepResult>;
      if (args.watch) {
        const overrides = overridesFromArgs(state, args);
        let loaded: LoadedConfig;
        try {
          loaded = loadConfig(args.config);
        } catch (err) {
          if (err instanceof HeadsweepError && err.stage === 'config') state.exitCode = EXIT.badConfig;
          throw err;
        }
        sweepNow = () => watchSweep(loaded, overrides, { ...opts, pollSeconds: args['poll-seconds'], untilIdleMinutes: args['until-idle'] });
      } else {
        const plan = await planFromArgs(state, args);
        sweepNow = () => runSweep(plan, opts);
      }
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      let result: SweepResult;
      try {
        result = await sweepNow();
      } catch (err) {
        if (err instanceof HeadsweepError && err.stage === 'config') state.exitCode = EXIT.badConfig;
        throw err;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      const outDir = (result.manifest.config as { output: { dir: string } }).output.dir;
      // JSON logs keep stderr to one event per line: the failures are in `checkpoint_failed`.
      // The first failures, then a count: a thousand failed checkpoints are in `errors`, not a thousand lines.
      const failures = summarise(result.errors.map((e) => `headsweep: ${e.run}: ${e.stage} failed: ${e.message}`), `failures (every one is a row in ${outDir}/errors)`);
      if (text !== null) for (const line of failures) process.stderr.write(`${line}\n`);
      process.stdout.write(summaryText(result, outDir));
      state.exitCode = result.exitCode;
    },
  };
  // yargs types a handler by its own arguments; cli.ts holds modules of every shape.
  return command(module);
}
