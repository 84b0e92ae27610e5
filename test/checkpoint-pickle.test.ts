/**
 * Hostile pickles, built byte by byte: each would run a command under Python's pickle (and
 * under torch.load with weights_only=False). headsweep must refuse each with a message
 * naming the file, and the file the payload would create must not appear.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { unpickle } from '../src/checkpoint/containers/pickle.ts';
import { plainValue } from '../src/checkpoint/containers/torch.ts';
import { HeadsweepError } from '../src/errors.ts';
import { FIXTURES_DIR } from './helpers/fixtures.ts';
import { expectLoadError } from './helpers/load-errors.ts';
import { tempDir } from './helpers/safetensors.ts';
import { Pickle, storedZip, torchArchive, zipRecords } from './helpers/torch-zip.ts';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const MARKER = join(tmp.dir, 'payload-ran');

/** Refused by the inspector and the loader, naming the file, and the payload never ran. */
function expectRefused(path: string, reason: RegExp): void {
  expectLoadError(path, reason);
  expect(existsSync(MARKER)).toBe(false);
}

/** `module.name(arg)` through REDUCE: what every pickle exploit is. */
function callPickle(module: string, name: string, arg: string): Uint8Array {
  return new Pickle().global(module, name).str(arg).op(0x85).reduce().stop();
}

const TOUCH = `touch ${MARKER}`;

describe('a torch archive whose data.pkl calls something', () => {
  test('os.system through REDUCE', () => {
    const path = tmp.file('os-system.pt', torchArchive('os-system', callPickle('os', 'system', TOUCH), {}));
    expectRefused(path, /os-system\/data\.pkl: refused: global os\.system at byte 2 is not allowed: a state dict needs only collections\.OrderedDict, torch\._utils\._rebuild_tensor_v2/);
  });

  test('builtins.eval through REDUCE', () => {
    const path = tmp.file('eval.pth', torchArchive('eval', callPickle('builtins', 'eval', `__import__('os').system('${TOUCH}')`), {}));
    expectRefused(path, /refused: global builtins\.eval at byte 2 is not allowed/);
  });

  test('a global outside the allow-list, inside an otherwise ordinary state dict', () => {
    // {'w': torch.nn.modules.linear.Linear()}: torch's own loader refuses it too. Byte 10: PROTO 2, EMPTY_DICT, MARK, BINUNICODE 'w' (6).
    const pickle = new Pickle().emptyDict().mark().str('w').global('torch.nn.modules.linear', 'Linear').emptyTuple().reduce().setitems().stop();
    const path = tmp.file('linear.bin', torchArchive('linear', pickle, {}));
    expectRefused(path, /refused: global torch\.nn\.modules\.linear\.Linear at byte 10 is not allowed/);
  });

  test('an allowed global called where it is only a value (a storage class reduced)', () => {
    const pickle = new Pickle().global('torch', 'FloatStorage').emptyTuple().reduce().stop();
    expectRefused(tmp.file('storage-call.pt', torchArchive('storage-call', pickle, {})), /refused: REDUCE of torch\.FloatStorage: it is allowed as a value, not as something to call/);
  });

  test('opcodes the weights-only loader refuses: INST and STACK_GLOBAL', () => {
    const inst = new Pickle().mark().str(TOUCH).op(0x69, ...new TextEncoder().encode('os\nsystem\n')).stop();
    expectRefused(tmp.file('inst.pt', torchArchive('inst', inst, {})), /refused: opcode 0x69 \(INST\) at byte \d+ is not one torch's weights-only loader accepts/);
    const stackGlobal = new Pickle().str('os').str('system').op(0x93).str(TOUCH).op(0x85).reduce().stop();
    expectRefused(tmp.file('stack-global.pt', torchArchive('stack-global', stackGlobal, {})), /refused: opcode 0x93 \(STACK_GLOBAL\)/);
  });

  test('a real torch archive with its data.pkl swapped for a malicious one', () => {
    const real = new Uint8Array(readFileSync(join(FIXTURES_DIR, 'real', 'nanogpt-ckpt', 'ckpt-2000.pt')));
    const records = zipRecords(real).map((r) => (r.name === 'ckpt-2000/data.pkl' ? { ...r, data: callPickle('posix', 'system', TOUCH) } : r));
    expect(records.length).toBe(118);
    const path = tmp.file('swapped.pt', storedZip(records, { align: 64 }));
    expectRefused(path, /ckpt-2000\/data\.pkl: refused: global posix\.system at byte 2 is not allowed/);
  });
});

describe('files that are not torch zip archives', () => {
  test('a legacy bare pickle (torch < 1.6) is refused before anything is unpickled', () => {
    // The legacy format opens with the pickled magic number 0x1950a86a20f9469cfc6c (LONG1);
    // this one follows it with a payload, which a reader that unpickles first would run.
    const magic = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];
    const path = tmp.file('legacy.pt', Uint8Array.from([...magic, ...callPickle('os', 'system', TOUCH)]));
    expectRefused(path, /is a legacy torch\.save file \(the pre-zip format of torch < 1\.6: a bare pickle or tar\), which headsweep does not read/);
  });

  test('the PYTORCH1 preview format', () => {
    const path = tmp.file('preview.pt', new TextEncoder().encode(`PYTORCH1${'\0'.repeat(64)}`));
    expectRefused(path, /is in the PYTORCH1 preview format of torch serialization, which headsweep does not read/);
  });
});

describe('what a pickle may hold', () => {
  test('a "__proto__" key in a pickled dict stays data', () => {
    // nanoGPT's model_args read into a plain object: an own property, not a new prototype.
    const pickle = new Pickle().emptyDict().mark()
      .str('model').emptyDict().mark().setitems()
      .str('model_args').emptyDict().mark().str('__proto__').emptyDict().mark().str('polluted').bool(true).setitems().setitems()
      .setitems().stop();
    const path = tmp.file('proto.pt', torchArchive('proto', pickle, {}));
    expect(() => loadCheckpoint(path)).toThrow(HeadsweepError);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // Assigning '__proto__' would give this one object a new prototype and no such key:
    // the key must be an own property of a plain object.
    const root = unpickle(pickle, { persistentLoad: () => null });
    const args = (plainValue(root) as Record<string, Record<string, unknown>>).model_args;
    expect(Object.getPrototypeOf(args)).toBe(Object.prototype);
    expect(Object.hasOwn(args, '__proto__')).toBe(true);
    expect(Object.getOwnPropertyDescriptor(args, '__proto__')?.value).toEqual({ polluted: true });
    expect(args.polluted).toBeUndefined();
  });
});
