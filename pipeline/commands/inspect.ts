/**
 * `headsweep inspect <checkpoint> [--family F] [--json]`: what headsweep sees in one
 * checkpoint, a file or a model folder, without loading any weights: its family and
 * format, the files it is read from, the config as written and as resolved TL config,
 * step, tokens seen, parameter count, and every stored tensor with the TL tensors read
 * from it. The checks are the loader's, so a checkpoint that inspects cleanly is one a
 * sweep can load; a bad one fails with the loader's message, which names the file and
 * the reason.
 */
import type { CommandModule } from 'yargs';
import { command, type CliState } from '../cli.ts';
import { inspectCheckpoint, type CheckpointInfo } from '../../src/checkpoint/checkpoint.ts';
import { FAMILIES } from '../../src/checkpoint/families/index.ts';
import { FAMILY_NAMES, type FamilyName } from '../../src/checkpoint/families/family.ts';
import { MODEL_CONFIG_FIELDS, parameterCount } from '../../src/model/config.ts';
import { QUOTE_LIMIT, shownText } from '../../src/errors.ts';

interface InspectArgs {
  checkpoint: string;
  family?: FamilyName;
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
    kind: info.kind,
    family: info.family,
    converter: info.converter,
    format: info.container,
    files: info.files.map((f) => ({ name: f.name, path: f.path, role: f.role, bytes: f.bytes, whole: f.whole })),
    step: info.step,
    tokens_seen: info.tokensSeen,
    step_source: info.stepSource,
    parameters: parameterCount(info.config),
    tokenizer: info.tokenizer === null ? null : { file: info.tokenizer.file, vocab_size: info.tokenizer.vocabSize },
    config_source: info.written.source,
    config_as_written: info.written.value,
    tl_config: info.tlConfig,
    config: info.config,
    metadata: otherMetadata(info),
    tensors: info.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, tl: t.tl, ignored: t.ignored })),
    zeros: info.zeros,
  };
}

/** Aligned columns, indented under a heading. */
function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
  return rows.map((r) => `  ${r.map((cell, col) => (col === r.length - 1 ? cell : cell.padEnd(widths[col]))).join('  ')}`.trimEnd());
}

function toText(info: CheckpointInfo): string {
  const unknown = 'unknown (no metadata)';
  const from = info.stepSource === null ? '' : ` (${info.stepSource})`;
  const lines = [
    `checkpoint   ${info.path}`,
    `family       ${info.family}: ${FAMILIES[info.family].title} (converter ${info.converter})`,
    `format       ${info.container}${info.kind === 'folder' ? ', model folder' : ''}`,
    `step         ${info.step ?? unknown}${info.step !== null ? from : ''}`,
    `tokens seen  ${info.tokensSeen ?? unknown}${info.tokensSeen !== null && info.step === null ? from : ''}`,
    `parameters   ${parameterCount(info.config)}`,
  ];
  if (info.tokenizer !== null) lines.push(`tokenizer    ${info.tokenizer.file} (${info.tokenizer.vocabSize ?? 'unknown'} ids)`);
  lines.push('', 'files', ...table(info.files.map((f) => [f.name, f.role, `${f.bytes} bytes`, f.whole ? '' : 'pickle, directory and weight records only'])));
  lines.push(
    '',
    `config as written (${info.written.source})`,
    ...JSON.stringify(info.written.value, null, 2).split('\n').map((l) => `  ${l}`),
    '',
    'config (TL, resolved)',
    ...table(MODEL_CONFIG_FIELDS.map((field) => [field, String(info.config[field] ?? 'none')])),
  );
  const metadata = Object.entries(otherMetadata(info));
  if (metadata.length > 0) lines.push('', 'metadata', ...table(metadata.map(([k, v]) => [shownText(k, QUOTE_LIMIT), shownText(v, QUOTE_LIMIT)])));
  const read = info.tensors.filter((t) => !t.ignored).length;
  const ignored = info.tensors.length - read;
  lines.push(
    '',
    `tensors (${read} weights${ignored > 0 ? `, ${ignored} buffers ignored` : ''})`,
    ...table(info.tensors.map((t) => [shownText(t.name, QUOTE_LIMIT), t.dtype, `[${t.shape.join(', ')}]`, t.ignored ? 'ignored' : `→ ${t.tl.join(', ')}`])),
  );
  if (info.zeros.length > 0) lines.push('', `not stored, read as zeros (${info.zeros.length})`, ...info.zeros.map((k) => `  ${k}`));
  return `${lines.join('\n')}\n`;
}

export default function inspect(_state: CliState): CommandModule {
  const module: CommandModule<object, InspectArgs> = {
    builder: (yargs) => yargs
      .positional('checkpoint', { type: 'string', demandOption: true, describe: 'A checkpoint file (.safetensors, .pt, .pth, .bin, *.index.json) or a model folder' })
      .option('family', { type: 'string', choices: FAMILY_NAMES, describe: 'Read it as this family instead of telling it from config.json or the file' })
      .option('json', { type: 'boolean', default: false, describe: 'Print one JSON object instead of text' }),
    handler: (args) => {
      const info = inspectCheckpoint(args.checkpoint, { family: args.family });
      process.stdout.write(args.json ? `${JSON.stringify(toJson(info), null, 2)}\n` : toText(info));
    },
  };
  // The registry in cli.ts holds every command as yargs' untyped CommandModule.
  return command(module);
}
