/**
 * The `headsweep` command line. Each command lives in `pipeline/commands/<name>.ts` and
 * exports a yargs CommandModule; this file only assembles them and owns the single exit
 * path: `main` returns the exit code, it never calls process.exit itself.
 */
import yargs, { type CommandModule } from 'yargs';
import { messageOf } from '../src/errors.ts';

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

// Each command module is registered here, in the order `--help` lists them.
const commandLoaders: (() => Promise<(state: CliState) => CommandModule>)[] = [
  () => import('./commands/sweep.ts').then((m) => m.default),
  () => import('./commands/validate.ts').then((m) => m.default),
  () => import('./commands/inspect.ts').then((m) => m.default),
  () => import('./commands/report.ts').then((m) => m.default),
  () => import('./commands/compact.ts').then((m) => m.default),
  () => import('./commands/train.ts').then((m) => m.default),
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
  const state: CliState = { exitCode: EXIT.ok };
  const commands = await Promise.all(commandLoaders.map((load) => load()));
  let cli = yargs(argv)
    .scriptName('headsweep')
    .usage('$0 <command> [options]\n\nScore every attention head of transformer checkpoints for induction-style behaviour.')
    .strict()
    .demandCommand(1, NO_COMMAND)
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    });
  for (const make of commands) cli = cli.command(withoutVersion(make(state)));
  try {
    await cli.parseAsync();
  } catch (err) {
    if (err instanceof UsageError && err.message === NO_COMMAND) {
      // The usage, the list of commands, and the global options: what a first run needs.
      process.stderr.write(`headsweep: ${NO_COMMAND}\n\n${await cli.getHelp()}\n`);
      return EXIT.badConfig;
    }
    process.stderr.write(`headsweep: ${messageOf(err)}\n`);
    if (err instanceof UsageError) process.stderr.write('Run with --help for usage.\n');
    return err instanceof UsageError ? EXIT.badConfig : Math.max(state.exitCode, EXIT.failure);
  }
  return state.exitCode;
}

class UsageError extends Error {}
