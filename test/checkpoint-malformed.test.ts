/**
 * One test per way a checkpoint can be broken. Each starts from a valid tiny file, breaks
 * one thing, and asserts that both the full loader and the header-only inspector throw a
 * HeadsweepError at stage 'load' whose message names the file and the specific reason.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { expectLoadError } from './helpers/load-errors.ts';
import { TINY_CONFIG, assemble, buildParts, tempDir, tinyParts, tinyTensors, type Parts } from './helpers/safetensors.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** Valid tiny parts with one header entry replaced. */
function withEntry(key: string, entry: unknown): Parts {
  const parts = tinyParts();
  parts.header[key] = entry;
  return parts;
}

function entryOf(parts: Parts, key: string): { dtype: string; shape: number[]; data_offsets: [number, number] } {
  return parts.header[key] as { dtype: string; shape: number[]; data_offsets: [number, number] };
}

describe('the file itself', () => {
  test('a path that does not exist', () => {
    expectLoadError(join(tmp.dir, 'absent.safetensors'), /: no such file$/);
  });

  test('a directory without a config.json says it is not a model folder and what it holds', () => {
    const dir = join(tmp.dir, 'folder.safetensors');
    mkdirSync(dir);
    expectLoadError(dir, /is a folder without a config\.json, so not a model folder \(it is empty\)$/);
  });

  test('truncated below the 8-byte length prefix', () => {
    const path = tmp.file('five-bytes.safetensors', new Uint8Array([1, 2, 3, 4, 5]));
    expectLoadError(path, /truncated file: 5 bytes, shorter than the 8-byte header length/);
  });

  test('truncated inside the tensor data', () => {
    const whole = assemble(tinyParts());
    const path = tmp.file('cut-data.safetensors', whole.subarray(0, whole.byteLength - 12));
    const dataSize = tinyParts().data.byteLength;
    expectLoadError(
      path,
      new RegExp(`truncated file: the header places tensor data up to byte ${dataSize} of the data section but only ${dataSize - 12} bytes follow the header \\(tensor 'unembed.b_U' is cut\\)`),
    );
  });
});

describe('the header length', () => {
  test('beyond the end of the file', () => {
    const whole = assemble(tinyParts());
    const path = tmp.file('cut-header.safetensors', whole.subarray(0, 40));
    expectLoadError(path, /header length \d+ runs beyond the end of the file \(40 bytes\)/);
  });

  test('2^63, rejected without allocating it', () => {
    const path = tmp.file('huge-length.safetensors', assemble(tinyParts(), { headerLength: 2n ** 63n }));
    expectLoadError(path, /header length 9223372036854775808 runs beyond the end of the file/);
  });

  test('inside the file but over the 100 MB header limit', () => {
    // A sparse 200 MB file: the length is legal for the file, the limit still refuses it.
    const path = tmp.file('sparse.safetensors');
    const fd = openSync(path, 'w');
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, 150_000_000n, true);
    writeSync(fd, prefix);
    ftruncateSync(fd, 200_000_000);
    closeSync(fd);
    expectLoadError(path, /header length 150000000 exceeds the 100000000-byte limit/);
  });
});

describe('the header JSON', () => {
  test('not JSON', () => {
    const path = tmp.file('not-json.safetensors', assemble(tinyParts(), { headerText: '{"embed.W_E": {"dtype": ' }));
    expectLoadError(path, /header is not valid JSON \(/);
  });

  test('not UTF-8', () => {
    const parts: Parts = { header: {}, data: new Uint8Array(0) };
    const bytes = assemble(parts, { headerText: '{"a":"xx"}' });
    bytes.set([0xff, 0xfe], 14);
    const path = tmp.file('not-utf8.safetensors', bytes);
    expectLoadError(path, /header is not valid JSON/);
  });

  test('JSON but not an object', () => {
    const path = tmp.file('array.safetensors', assemble({ header: {}, data: new Uint8Array(0) }, { headerText: '[1, 2]' }));
    expectLoadError(path, /header is not a JSON object/);
  });

  test('__metadata__ value that is not a string', () => {
    const parts = tinyParts();
    parts.header.__metadata__ = { config: JSON.stringify(TINY_CONFIG), step: 5 };
    expectLoadError(tmp.file('meta-number.safetensors', assemble(parts)), /__metadata__ entry 'step' is 5, not a string/);
  });

  test('a tensor entry that is not an object', () => {
    const path = tmp.file('entry-string.safetensors', assemble(withEntry('unembed.b_U', 'F32')));
    expectLoadError(path, /tensor 'unembed\.b_U' has no dtype\/shape\/data_offsets entry/);
  });
});

describe('tensor entries', () => {
  test('unknown dtype', () => {
    const parts = tinyParts();
    entryOf(parts, 'unembed.b_U').dtype = 'Q4_K';
    expectLoadError(tmp.file('dtype.safetensors', assemble(parts)), /tensor 'unembed\.b_U' has unknown dtype 'Q4_K' \(known: /);
  });

  test('byte size not matching shape × dtype', () => {
    const parts = tinyParts();
    entryOf(parts, 'unembed.b_U').shape = [6];
    expectLoadError(
      tmp.file('size.safetensors', assemble(parts)),
      /tensor 'unembed\.b_U' holds 20 bytes but shape \[6\] × F32 needs 24/,
    );
  });

  test('a shape whose element count overflows 2^53', () => {
    const parts = tinyParts();
    entryOf(parts, 'unembed.b_U').shape = [2 ** 31, 2 ** 31, 2 ** 31];
    expectLoadError(
      tmp.file('overflow.safetensors', assemble(parts)),
      /tensor 'unembed\.b_U' shape \[2147483648, 2147483648, 2147483648\] overflows: more than 2\^53 elements/,
    );
  });

  test('a negative dimension', () => {
    const parts = tinyParts();
    entryOf(parts, 'unembed.b_U').shape = [-5];
    expectLoadError(tmp.file('negative.safetensors', assemble(parts)), /tensor 'unembed\.b_U' has an invalid shape \[-5\]/);
  });

  test('data_offsets that are not two non-negative integers', () => {
    const parts = tinyParts();
    entryOf(parts, 'unembed.b_U').data_offsets = [0, 1.5] as [number, number];
    expectLoadError(tmp.file('offsets-float.safetensors', assemble(parts)), /tensor 'unembed\.b_U' has invalid data_offsets \[0, 1\.5\]/);
  });
});

describe('the data layout', () => {
  const dataSize = tinyParts().data.byteLength;

  test('offsets out of range of the data section', () => {
    const parts = tinyParts();
    entryOf(parts, 'unembed.b_U').data_offsets = [dataSize + 100, dataSize + 120];
    expectLoadError(
      tmp.file('out-of-range.safetensors', assemble(parts)),
      new RegExp(`tensor 'unembed\\.b_U' data_offsets \\[${dataSize + 100}, ${dataSize + 120}\\] are out of range of the ${dataSize}-byte data section`),
    );
  });

  test('offsets with the end before the begin', () => {
    const parts = tinyParts();
    const [begin, end] = entryOf(parts, 'unembed.b_U').data_offsets;
    entryOf(parts, 'unembed.b_U').data_offsets = [end, begin];
    expectLoadError(
      tmp.file('reversed.safetensors', assemble(parts)),
      new RegExp(`tensor 'unembed\\.b_U' data_offsets \\[${end}, ${begin}\\] are out of range: end before begin`),
    );
  });

  test('overlapping tensors', () => {
    const parts = tinyParts();
    // ln_final.b and ln_final.w are both [4] F32 and adjacent in sorted order.
    entryOf(parts, 'ln_final.w').data_offsets = [...entryOf(parts, 'ln_final.b').data_offsets];
    expectLoadError(
      tmp.file('overlap.safetensors', assemble(parts)),
      /tensors 'ln_final\.b' and 'ln_final\.w' overlap in the data section/,
    );
  });

  test('trailing bytes after the last tensor', () => {
    const parts = tinyParts();
    const data = new Uint8Array(parts.data.byteLength + 4);
    data.set(parts.data);
    expectLoadError(
      tmp.file('trailing.safetensors', assemble({ header: parts.header, data })),
      new RegExp(`data section has 4 trailing bytes after the last tensor \\(tensors cover ${dataSize} of ${dataSize + 4} bytes\\)`),
    );
  });

  test('a gap between tensors', () => {
    const parts = tinyParts();
    const [begin, end] = entryOf(parts, 'unembed.b_U').data_offsets;
    entryOf(parts, 'unembed.b_U').data_offsets = [begin + 4, end + 4];
    const data = new Uint8Array(parts.data.byteLength + 4);
    data.set(parts.data);
    expectLoadError(
      tmp.file('gap.safetensors', assemble({ header: parts.header, data })),
      new RegExp(`data section bytes \\[${begin}, ${begin + 4}\\) belong to no tensor \\(gap before tensor 'unembed\\.b_U'\\)`),
    );
  });
});

describe('the config', () => {
  test('missing: no __metadata__.config and no config.json', () => {
    const dir = join(tmp.dir, 'no-config');
    mkdirSync(dir);
    const path = join(dir, 'model.safetensors');
    tmp.file('no-config/model.safetensors', assemble(buildParts(tinyTensors())));
    expectLoadError(path, /missing config: no __metadata__\.config in the header and no config\.json beside the file/);
  });

  test('__metadata__.config that is not JSON', () => {
    const parts = buildParts(tinyTensors(), { config: '{"n_layers": 1,' });
    expectLoadError(tmp.file('config-not-json.safetensors', assemble(parts)), /__metadata__\.config is not valid JSON \(/);
  });

  test('a config field with an invalid value', () => {
    const parts = buildParts(tinyTensors(), { config: JSON.stringify({ ...TINY_CONFIG, n_heads: 0 }) });
    expectLoadError(
      tmp.file('config-heads.safetensors', assemble(parts)),
      /invalid config in __metadata__\.config: n_heads: /,
    );
  });

  test('a config without a required field', () => {
    const { d_head: _dropped, ...rest } = TINY_CONFIG;
    const parts = buildParts(tinyTensors(), { config: JSON.stringify(rest) });
    expectLoadError(tmp.file('config-no-dhead.safetensors', assemble(parts)), /invalid config in __metadata__\.config: d_head: /);
  });

  test('a model that is not attention-only', () => {
    const parts = buildParts(tinyTensors(), { config: JSON.stringify({ ...TINY_CONFIG, attn_only: false }) });
    expectLoadError(tmp.file('config-mlp.safetensors', assemble(parts)), /act_fn: required for a model with MLPs/);
  });

  test('a BOS token id outside the vocabulary', () => {
    const parts = buildParts(tinyTensors(), { config: JSON.stringify({ ...TINY_CONFIG, bos_token_id: 5 }) });
    expectLoadError(
      tmp.file('config-bos.safetensors', assemble(parts)),
      /invalid config in __metadata__\.config: bos_token_id: 5 is not a token id below d_vocab 5/,
    );
  });

  test('a config.json beside the file that is not JSON', () => {
    const dir = join(tmp.dir, 'bad-config-json');
    mkdirSync(dir);
    tmp.file('bad-config-json/config.json', '{"n_layers": ');
    const path = tmp.file('bad-config-json/model.safetensors', assemble(buildParts(tinyTensors())));
    expectLoadError(path, /: is not valid JSON \(/, join(dir, 'config.json'));
  });

  test('metadata step that is not a decimal integer', () => {
    const path = tmp.file('step.safetensors', assemble(tinyParts({ step: '12abc' })));
    expectLoadError(path, /metadata 'step' is "12abc", not a decimal integer/);
  });
});

describe('the tensors against the config', () => {
  test('a missing required tensor', () => {
    const tensors = tinyTensors();
    delete tensors['blocks.0.attn.W_V'];
    const parts = buildParts(tensors, { config: JSON.stringify(TINY_CONFIG) });
    expectLoadError(
      tmp.file('missing-wv.safetensors', assemble(parts)),
      /missing tensor 'blocks\.0\.attn\.W_V' \(shape \[2, 4, 2\] expected by the config\)/,
    );
  });

  test('a tensor with the wrong shape names the key and both shapes', () => {
    const tensors = tinyTensors();
    tensors['blocks.0.attn.W_Q'].shape = [2, 2, 4];
    const parts = buildParts(tensors, { config: JSON.stringify(TINY_CONFIG) });
    expectLoadError(
      tmp.file('shape-wq.safetensors', assemble(parts)),
      /tensor 'blocks\.0\.attn\.W_Q' has shape \[2, 2, 4\] but the config expects \[2, 4, 2\]/,
    );
  });

  test('a tensor the config does not call for', () => {
    const tensors = tinyTensors();
    tensors['blocks.1.attn.W_Q'] = { shape: [2, 4, 2], data: new Float32Array(16) };
    const parts = buildParts(tensors, { config: JSON.stringify(TINY_CONFIG) });
    expectLoadError(
      tmp.file('extra-layer.safetensors', assemble(parts)),
      /unexpected tensor 'blocks\.1\.attn\.W_Q' for a config with 1 layers/,
    );
  });

  test('a weight stored as integers', () => {
    const parts = tinyParts();
    entryOf(parts, 'unembed.b_U').dtype = 'I32';
    expectLoadError(
      tmp.file('int-weight.safetensors', assemble(parts)),
      /tensor 'unembed\.b_U' has dtype I32; weights must be F32, F16, BF16, F64/,
    );
  });
});
