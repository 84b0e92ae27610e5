/**
 * The `headsweep` command line. Each command lives in `pipeline/commands/<name>.ts` and
 * exports a yargs CommandModule (its options and handler); this file lists them and owns
 * the single exit path: `main` returns the exit code, it never calls process.exit itself.
 *
 * Only the command being run is loaded: the others are listed for `--help` from their
 * usage and summary here, so `headsweep --help` or `inspect` never loads the sweep's
 * modules (tfjs, the pool, Arrow, Parquet).
 */
import yargs, { type CommandModule } from 'yargs';
import { messageOf, oneLine, summarise } from '../src/errors.ts';
import { ownPackage, staleBuild } from './package.ts';

/** Exit codes: 0 ok, 1 failure, 2 bad config, 3 finished but some checkpoints failed. */
export const EXIT = { ok: 0, failure: 1, badConfig: 2, partial: 3 } as const;

/** Commands set `exitCode` on the shared state instead of exiting. */
export interface CliState {
  exitCode: number;
}

/**
 * A command typed by its own arguments, as the untyped module yargs' registry takes.
 * (yargs types a module by its argv; modules with different argv do not unify.)
 */
export function command<A>(module: CommandModule<object, A>): CommandModule {
  return module as unknown as CommandModule;
}

interface CommandEntry {
  /** yargs' usage: the name, then the positionals. */
  usage: string;
  describe: string;
  load: () => Promise<{ default: (state: CliState) => CommandModule }>;
}

// In the order `--help` lists them.
const COMMANDS: CommandEntry[] = [
  {
    usage: 'sweep <config>',
    describe: 'Score every attention head of every checkpoint in a sweep config and write the tables (only what is new, on a rerun)',
    load: () => import('./commands/sweep.ts'),
  },
  {
    usage: 'validate <config>',
    describe: 'Check a sweep config and print its plan (runs, checkpoints, prompt sets, work) without computing',
    load: () => import('./commands/validate.ts'),
  },
  {
    usage: 'inspect <checkpoint>',
    describe: 'Show the family, files, config, tensors, step, tokens seen and parameter count of one checkpoint',
    load: () => import('./commands/inspect.ts'),
  },
  {
    usage: 'report <out>',
    describe: 'Write an HTML report (charts and tables) of a sweep output folder',
    load: () => import('./commands/report.ts'),
  },
  {
    usage: 'compact <out>',
    describe: 'Merge the per-checkpoint table files of a sweep (or of its shards) into one Arrow file and a Parquet dataset per table',
    load: () => import('./commands/compact.ts'),
  },
  {
    usage: 'train <config>',
    describe: 'Train a transformer (attention-only or with MLPs) from a train config and write its checkpoint series',
    load: () => import('./commands/train.ts'),
  },
];

/**
 * `--version` is headsweep's, not a command's: yargs makes it global, so each command's
 * help would list it beside options that do something.
 */
function withoutVersion(module: CommandModule): CommandModule {
  const { builder } = module;
  return {
    ...module,
    builder: (y) => {
      const built = typeof builder === 'function' ? builder(y) : y.options(builder ?? {});
      return (built as typeof y).hide('version');
    },
  };
}

const NO_COMMAND = 'name a command:';

export async function main(argv: string[]): Promise<number> {
  const stale = staleBuild();
  if (stale !== null) {
    process.stderr.write(`headsweep: ${stale}\n`);
    return EXIT.failure;
  }
  const state: CliState = { exitCode: EXIT.ok };
  // No option comes before the command, so the first word that is not an option names it.
  const named = argv.find((arg) => !arg.startsWith('-'));
  let cli = yargs(argv)
    .scriptName('headsweep')
    .usage('$0 <command> [options]\n\nScore every attention head of transformer checkpoints for induction-style behaviour.')
    .strict()
    .demandCommand(1, NO_COMMAND)
    .recommendCommands()
    .help()
    .alias('h', 'help')
    // yargs would look for the package.json of the folder it runs in, not headsweep's.
    .version(ownPackage().version)
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    });
  for (const { usage, describe, load } of COMMANDS) {
    // Any other command only has to be listed: its handler never runs in this process.
    const module = usage.split(' ')[0] === named ? (await load()).default(state) : { handler: () => {} };
    cli = cli.command(withoutVersion({ ...module, command: usage, describe }));
  }
  try {
    await cli.parseAsync();
  } catch (err) {
    if (err instanceof UsageError && err.message === NO_COMMAND) {
      // The usage, the list of commands, and the global options: what a first run needs.
      process.stderr.write(`headsweep: ${NO_COMMAND}\n\n${await cli.getHelp()}\n`);
      return EXIT.badConfig;
    }
    // A config's problems are one line each (already summarised); nothing else may break a line.
    process.stderr.write(`headsweep: ${summarise(messageOf(err).split('\n').map((line) => oneLine(line))).join('\n')}\n`);
    if (err instanceof UsageError) process.stderr.write('Run with --help for usage.\n');
    return err instanceof UsageError ? EXIT.badConfig : Math.max(state.exitCode, EXIT.failure);
  }
  return state.exitCode;
}

class UsageError extends Error {}
