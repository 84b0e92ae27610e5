/**
 * `headsweep validate <config>`: checks a sweep config and prints its plan (runs,
 * checkpoints and steps, prompt sets, heads, rough work) without computing anything.
 * Also home of what `sweep` shares with it: the config options and config → plan.
 */
import type { Argv, CommandModule } from 'yargs';
import { BACKENDS } from '../../src/names.ts';
import { HeadsweepError } from '../../src/errors.ts';
import { command, EXIT, type CliState } from '../cli.ts';
import { CONFIG_LIMITS, loadConfig, type BackendOption, type ConfigOverrides } from '../config.ts';
import { buildPlan, describePlan, type Plan } from '../plan.ts';
import { OUTPUT_FORMATS, type OutputFormat } from '../sinks/index.ts';

export interface ConfigArgs {
  config: string;
  out?: string;
  workers?: number;
  backend?: BackendOption;
  format?: OutputFormat[];
  'batch-size'?: number;
}

const CONFIG_EPILOG =
  'Relative paths inside the config (checkpoint globs, tokens files, output) start at the ' +
  "config file's folder; --out starts at the working directory.\n" +
  'Exit codes: 0 ok, 1 failure, 2 bad config or usage, 3 finished but some checkpoints failed.';

/** The config positional and the options that override config values. */
export function configOptions(yargs: Argv): Argv<ConfigArgs> {
  return yargs
    .positional('config', { type: 'string', demandOption: true, describe: 'Sweep config (YAML)' })
    .option('out', { alias: 'o', type: 'string', describe: "Output folder (replaces the config's output.dir, or stands in for a config without output)" })
    .option('workers', { alias: 'w', type: 'number', describe: 'Worker threads (default: the config\'s workers, else every available core)' })
    .option('backend', { type: 'string', choices: ['auto', ...BACKENDS], describe: 'tfjs backend (auto tries tensorflow, wasm, cpu)' })
    // Repeatable rather than an array option, which would swallow the config path after it.
    .option('format', {
      type: 'string',
      choices: [...OUTPUT_FORMATS],
      coerce: (v: string | string[]) => [v].flat(),
      describe: 'Table file format: --format arrow --format parquet for both (default: the config\'s output.formats, else both)',
    })
    .option('batch-size', { type: 'number', describe: 'Sequences per forward batch' })
    .epilog(CONFIG_EPILOG) as unknown as Argv<ConfigArgs>;
}

/** The command-line values that replace config values; a bad one sets exit code 2 before it is thrown. */
export function overridesFromArgs(state: CliState, args: ConfigArgs): ConfigOverrides {
  const limits = { workers: CONFIG_LIMITS.workers, 'batch-size': CONFIG_LIMITS.batch_size };
  for (const key of ['workers', 'batch-size'] as const) {
    const v = args[key];
    if (v === undefined) continue;
    const problem = !(Number.isInteger(v) && v >= 1) ? 'must be a whole number >= 1' : v > limits[key] ? `must be at most ${limits[key]}` : null;
    if (problem !== null) {
      state.exitCode = EXIT.badConfig;
      throw new HeadsweepError(`--${key} ${problem}, got ${v}`, { stage: 'config', key: `--${key}` });
    }
  }
  return {
    out: args.out,
    workers: args.workers,
    backend: args.backend,
    formats: args.format,
    batchSize: args['batch-size'],
  };
}

/** Reads the config and builds the plan; a config problem sets exit code 2 before it is rethrown. */
export async function planFromArgs(state: CliState, args: ConfigArgs): Promise<Plan> {
  const overrides = overridesFromArgs(state, args);
  try {
    return await buildPlan(loadConfig(args.config), overrides);
  } catch (err) {
    if (err instanceof HeadsweepError && err.stage === 'config') state.exitCode = EXIT.badConfig;
    throw err;
  }
}

export default function validate(state: CliState): CommandModule {
  const module: CommandModule<object, ConfigArgs> = {
    builder: configOptions,
    handler: async (args) => {
      // A valid config exits 0 even when a checkpoint cannot be read: the plan warns of it,
      // and the sweep records it in errors (exit 3 is for a sweep that ran).
      const plan = await planFromArgs(state, args);
      process.stdout.write(`${describePlan(plan)}\n`);
    },
  };
  // yargs types a handler by its own arguments; cli.ts holds modules of every shape.
  return command(module);
}
