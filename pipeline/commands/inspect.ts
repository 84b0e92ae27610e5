/**
 * `headsweep inspect <checkpoint> [--json]`: what headsweep sees in one checkpoint (config,
 * every tensor's name, shape and dtype, step, tokens seen, parameter count) without
 * loading any weights. The checks are the loader's, so a checkpoint that inspects
 * cleanly is one a sweep can load; a bad one fails with the loader's message, which
 * names the file and the reason.
 */
import type { CommandModule } from 'yargs';
import { command, type CliState } from '../cli.ts';
import { inspectCheckpoint, type CheckpointInfo } from '../../src/checkpoint/checkpoint.ts';
import { MODEL_CONFIG_FIELDS, parameterCount } from '../../src/model/config.ts';

interface InspectArgs {
  checkpoint: string;
  json: boolean;
}

/** Metadata keys shown in their own lines (or parsed into the config), not under `metadata`. */
const SHOWN_METADATA = new Set(['config', 'step', 'tokens_seen']);

function otherMetadata(info: CheckpointInfo): Record<string, string> {
  return Object.fromEntries(Object.entries(info.metadata).filter(([k]) => !SHOWN_METADATA.has(k)));
}

/** The machine-readable form: snake_case keys, as in the output tables. */
function toJson(info: CheckpointInfo): object {
  return {
    path: info.path,
    step: info.step,
    tokens_seen: info.tokensSeen,
    parameters: parameterCount(info.config),
    config_source: info.configSource,
    config: info.config,
    metadata: otherMetadata(info),
    tensors: info.tensors,
  };
}

/** Two aligned columns, indented under a heading. */
function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
  return rows.map((r) => `  ${r.map((cell, col) => (col === r.length - 1 ? cell : cell.padEnd(widths[col]))).join('  ')}`.trimEnd());
}

function toText(info: CheckpointInfo): string {
  const unknown = 'unknown (no metadata)';
  const lines = [
    `checkpoint   ${info.path}`,
    `step         ${info.step ?? unknown}`,
    `tokens seen  ${info.tokensSeen ?? unknown}`,
    `parameters   ${parameterCount(info.config)}`,
    '',
    `config (from ${info.configSource})`,
    ...table(MODEL_CONFIG_FIELDS.map((field) => [field, String(info.config[field] ?? 'none')])),
  ];
  const metadata = Object.entries(otherMetadata(info));
  if (metadata.length > 0) lines.push('', 'metadata', ...table(metadata));
  const weights = info.tensors.filter((t) => !t.ignored).length;
  const ignored = info.tensors.length - weights;
  lines.push(
    '',
    `tensors (${weights} weights${ignored > 0 ? `, ${ignored} TL buffers ignored` : ''})`,
    ...table(info.tensors.map((t) => [t.name, t.dtype, `[${t.shape.join(', ')}]`, t.ignored ? 'ignored' : ''])),
  );
  return `${lines.join('\n')}\n`;
}

export default function inspect(_state: CliState): CommandModule {
  const module: CommandModule<object, InspectArgs> = {
    builder: (yargs) => yargs
      .positional('checkpoint', { type: 'string', demandOption: true, describe: 'A .safetensors file' })
      .option('json', { type: 'boolean', default: false, describe: 'Print one JSON object instead of text' }),
    handler: (args) => {
      const info = inspectCheckpoint(args.checkpoint);
      process.stdout.write(args.json ? `${JSON.stringify(toJson(info), null, 2)}\n` : toText(info));
    },
  };
  // The registry in cli.ts holds every command as yargs' untyped CommandModule.
  return command(module);
}
