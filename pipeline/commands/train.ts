/**
 * `headsweep train <config> [--resume]`: trains a transformer (attention-only or with MLPs) and writes
 * a checkpoint series the sweep reads (src/train/train.ts). Progress goes to stderr, a
 * one-line summary to stdout. A stopped run continues with --resume from its latest
 * checkpoint and reaches the same weights as an uninterrupted one.
 */
import type { CommandModule } from 'yargs';
import { BACKENDS, type BackendChoice } from '../../src/names.ts';
import { HeadsweepError } from '../../src/errors.ts';
import { loadTrainConfig } from '../../src/train/config.ts';
import { command, EXIT, type CliState } from '../cli.ts';

interface TrainArgs {
  config: string;
  resume: boolean;
  backend?: BackendChoice;
}

export default function trainCommand(state: CliState): CommandModule {
  const module: CommandModule<object, TrainArgs> = {
    builder: (yargs) =>
      yargs
        .positional('config', { type: 'string', demandOption: true, describe: 'Train config (YAML)' })
        .option('resume', { type: 'boolean', default: false, describe: "Continue from the latest checkpoint in the config's out_dir" })
        .option('backend', { type: 'string', choices: ['auto', ...BACKENDS], describe: "tfjs backend (default: the config's backend)" })
        .epilog(
          "Relative paths inside the config (out_dir, data.file) start at the config file's folder.\n" +
            'Exit codes: 0 ok, 1 failure, 2 bad config or usage.',
        ) as never,
    handler: async (args) => {
      try {
        const loaded = loadTrainConfig(args.config);
        // Loaded here, not at the top: importing tfjs would slow every other command's start.
        const { train } = await import('../../src/train/train.ts');
        const result = await train(loaded, { resume: args.resume, backend: args.backend });
        const done = result.startStep >= result.steps ? 'nothing to do' : `final loss ${result.finalLoss.toFixed(4)}`;
        process.stdout.write(
          `${result.run}: steps ${result.startStep}→${result.steps}, ${done}, ${result.checkpoints.length} checkpoint${result.checkpoints.length === 1 ? '' : 's'} written to ${result.outDir} ` +
            `(${result.seconds.toFixed(0)} s, ${Math.round(result.tokensPerSecond)} tokens/s on ${result.backend})\n`,
        );
      } catch (err) {
        if (err instanceof HeadsweepError && err.stage === 'config') state.exitCode = EXIT.badConfig;
        throw err;
      }
    },
  };
  // yargs types a handler by its own arguments; cli.ts holds modules of every shape.
  return command(module);
}
