/**
 * `headsweep compact <out> [--input <root> ...]`: merges the per-checkpoint files of a
 * sweep output folder (or of several shards' folders) into one Arrow file per table and a
 * hive-partitioned Parquet dataset under `<out>/compacted` (see pipeline/compact.ts).
 * Exit code 3 when the result may be missing rows: a shard's manifest is absent or a
 * source sweep did not finish.
 */
import type { CommandModule } from 'yargs';
import { command, EXIT, type CliState } from '../cli.ts';
import { compactOutput, PARQUET_PART_ROWS } from '../compact.ts';
import { TABLE_NAMES } from '../tables.ts';

interface CompactArgs {
  out: string;
  input?: string[];
  'part-rows': number;
}

export default function compact(state: CliState): CommandModule {
  const module: CommandModule<object, CompactArgs> = {
    builder: (yargs) => yargs
      .positional('out', { type: 'string', demandOption: true, describe: 'Output folder; the result goes to <out>/compacted' })
      .option('input', {
        alias: 'i', type: 'array', string: true,
        describe: 'Output folder to read (repeat for shards that wrote to separate folders; default: <out>)',
      })
      .option('part-rows', { type: 'number', default: PARQUET_PART_ROWS, describe: 'Most rows per Parquet part file' })
      .check((args) => {
        const v = args['part-rows'];
        if (!(Number.isInteger(v) && v >= 1)) throw new Error(`--part-rows must be a whole number >= 1, got ${v}`);
        return true;
      })
      .epilog('The partitions are read, never deleted; rerunning replaces <out>/compacted as a whole.\n' +
        'Exit codes: 0 ok, 1 failure, 3 compacted but a shard manifest is missing or a sweep did not finish.'),
    handler: async (args) => {
      const { dir, manifest } = await compactOutput(args.out, { inputs: args.input, partRows: args['part-rows'] });
      const tables = TABLE_NAMES.filter((t) => manifest.outputs.arrow[t] !== undefined)
        .map((t) => `${t} ${manifest.counts.rows[t]}`);
      for (const w of manifest.warnings) process.stderr.write(`headsweep: compact: ${w}\n`);
      const sources = `${manifest.sources.length} manifest(s) from ${manifest.inputs.length} folder(s)`;
      process.stdout.write(`compacted ${sources} into ${dir}: ${tables.length > 0 ? tables.join(', ') : 'no tables'} rows\n`);
      state.exitCode = manifest.complete ? EXIT.ok : EXIT.partial;
    },
  };
  // yargs types a handler by its own arguments; cli.ts holds modules of every shape.
  return command(module);
}
