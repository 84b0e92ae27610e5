/**
 * An unpickler for the `data.pkl` of a torch.save archive that cannot run code: it accepts
 * only the opcodes of torch's weights-only loader (torch/_weights_only_unpickler.py, as
 * listed in CHECKPOINT-FORMATS.md §3) and, of the globals that loader allows, only those a
 * state dict needs. A global is never looked up or called: each allowed one is a constant
 * here, and REDUCE on it builds plain data (a tensor description, a dict, a tuple).
 * Anything else is an error naming the opcode or the global, raised before any later
 * byte is looked at.
 *
 * Tensors come out as descriptions (`TensorRef`: storage key, dtype, offset, shape,
 * strides); no storage bytes are read here, so entries that are not weights (an
 * optimizer's moments) cost nothing.
 *
 * Why not `pickleparser` (npm): it accepts every opcode of protocols 0-4 (INST, OBJ,
 * NEWOBJ_EX, EXT*), turns an unknown global into a stand-in object instead of refusing it,
 * calls whatever a REDUCE names, and its BUILD assigns state with Object.assign (a
 * `__proto__` key then rewrites a prototype). Restricting it would mean replacing its
 * dispatch loop, which is this file.
 */

import type { DType } from '../dtypes.ts';

/** A global the loader allows: a constant, never resolved to anything callable. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string, readonly storageDType?: DType) {}
  toString(): string {
    return `${this.module}.${this.name}`;
  }
}

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

/** A dict built by `collections.OrderedDict` (the only kind BUILD may touch). */
export class PyOrderedDict extends Map<PyKey, PyValue> {}

/** What a persistent id resolves to: one storage of the archive, by key. */
export interface StorageRef {
  kind: 'storage';
  key: string;
  dtype: DType;
  /** Elements the storage holds. */
  numel: number;
  location: string;
}

/** `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`, not built: a description. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly strides: readonly number[],
  ) {}
}

export type PyKey = string | number | bigint | boolean | null | PyTuple;
export type PyValue = PyKey | PyGlobal | PyValue[] | Map<PyKey, PyValue> | Set<PyKey> | StorageRef | TensorRef;

export class PickleError extends Error {}

const STORAGE_CLASSES: Record<string, DType> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

const ORDERED_DICT = new PyGlobal('collections', 'OrderedDict');
const REBUILD_TENSOR_V2 = new PyGlobal('torch._utils', '_rebuild_tensor_v2');
const REBUILD_TENSOR = new PyGlobal('torch._utils', '_rebuild_tensor');
const REBUILD_PARAMETER = new PyGlobal('torch._utils', '_rebuild_parameter');
const REBUILD_PARAMETER_WITH_STATE = new PyGlobal('torch._utils', '_rebuild_parameter_with_state');
const TORCH_SIZE = new PyGlobal('torch', 'Size');

/** `module.name` → the constant GLOBAL pushes. */
const ALLOWED_GLOBALS = new Map<string, PyGlobal>([
  ...[ORDERED_DICT, REBUILD_TENSOR_V2, REBUILD_TENSOR, REBUILD_PARAMETER, REBUILD_PARAMETER_WITH_STATE, TORCH_SIZE].map((g): [string, PyGlobal] => [g.toString(), g]),
  ...Object.entries(STORAGE_CLASSES).map(([name, dtype]): [string, PyGlobal] => [`torch.${name}`, new PyGlobal('torch', name, dtype)]),
]);

const ALLOWED_GLOBAL_NAMES: readonly string[] = [...ALLOWED_GLOBALS.keys()];

/** The opcodes torch's weights-only unpickler accepts (CHECKPOINT-FORMATS.md §3), by byte. */
const OP = {
  PROTO: 0x80, STOP: 0x2e, MARK: 0x28, GLOBAL: 0x63, REDUCE: 0x52, BUILD: 0x62, NEWOBJ: 0x81, BINPERSID: 0x51,
  BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d, LONG1: 0x8a, BINFLOAT: 0x47, BINUNICODE: 0x58, SHORT_BINSTRING: 0x55,
  NONE: 0x4e, NEWTRUE: 0x88, NEWFALSE: 0x89, EMPTY_TUPLE: 0x29, TUPLE: 0x74, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87,
  EMPTY_LIST: 0x5d, APPEND: 0x61, APPENDS: 0x65, EMPTY_DICT: 0x7d, SETITEM: 0x73, SETITEMS: 0x75, EMPTY_SET: 0x8f,
  BINPUT: 0x71, LONG_BINPUT: 0x72, BINGET: 0x68, LONG_BINGET: 0x6a,
} as const;

/** Names of the pickle opcodes this reader refuses, for messages. */
const REFUSED_NAMES: Record<number, string> = {
  0x69: 'INST', 0x6f: 'OBJ', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4',
  0x50: 'PERSID', 0x49: 'INT', 0x4c: 'LONG', 0x46: 'FLOAT', 0x53: 'STRING', 0x56: 'UNICODE', 0x8c: 'SHORT_BINUNICODE',
  0x95: 'FRAME', 0x94: 'MEMOIZE', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x64: 'DICT', 0x6c: 'LIST', 0x70: 'PUT',
  0x67: 'GET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES', 0x8e: 'BINBYTES8',
  0x54: 'BINSTRING', 0x8b: 'LONG4', 0x8d: 'BINUNICODE8', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

function isInt(v: PyValue): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

function describe(v: PyValue): string {
  if (v === null) return 'None';
  if (v instanceof PyGlobal) return `global ${v}`;
  if (v instanceof PyTuple) return 'a tuple';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Map) return 'a dict';
  if (v instanceof Set) return 'a set';
  if (v instanceof TensorRef) return 'a tensor';
  if (typeof v === 'object') return 'a storage';
  return typeof v === 'string' ? 'a string' : `the value ${String(v)}`;
}

function intTuple(v: PyValue, what: string): number[] {
  if (!(v instanceof PyTuple) || !v.items.every((d) => isInt(d) && d >= 0)) {
    throw new PickleError(`${what} is ${describe(v)}, not a tuple of non-negative integers`);
  }
  return v.items as number[];
}

function rebuildTensor(args: readonly PyValue[], fn: PyGlobal): TensorRef {
  const [storage, offset, size, stride] = args;
  if (args.length < 4 || storage === null || typeof storage !== 'object' || !('kind' in storage) || storage.kind !== 'storage') {
    throw new PickleError(`${fn} needs (storage, offset, size, stride, …), got ${args.length} arguments starting with ${describe(args[0] ?? null)}`);
  }
  if (!isInt(offset) || offset < 0) throw new PickleError(`${fn}: storage offset is ${describe(offset)}, not a non-negative integer`);
  const shape = intTuple(size, `${fn}: size`);
  const strides = intTuple(stride, `${fn}: stride`);
  if (shape.length !== strides.length) throw new PickleError(`${fn}: size has ${shape.length} dimensions but stride ${strides.length}`);
  return new TensorRef(storage, offset, shape, strides);
}

/** REDUCE on an allowed global: the only place a "call" happens, and it builds plain data. */
function reduce(fn: PyValue, args: PyValue): PyValue {
  if (!(fn instanceof PyGlobal)) throw new PickleError(`REDUCE on ${describe(fn)}: only allowed globals can be reduced`);
  if (!(args instanceof PyTuple)) throw new PickleError(`REDUCE of ${fn} with ${describe(args)} instead of an argument tuple`);
  const a = args.items;
  switch (fn) {
    case ORDERED_DICT: {
      const dict = new PyOrderedDict();
      if (a.length === 0) return dict;
      const pairs = a[0];
      if (a.length === 1 && Array.isArray(pairs)) {
        for (const pair of pairs) {
          if (!(pair instanceof PyTuple) || pair.items.length !== 2) throw new PickleError('collections.OrderedDict takes a list of (key, value) pairs');
          dict.set(hashable(pair.items[0]), pair.items[1]);
        }
        return dict;
      }
      throw new PickleError(`collections.OrderedDict with ${describe(a[0])}`);
    }
    case REBUILD_TENSOR_V2:
    case REBUILD_TENSOR:
      return rebuildTensor(a, fn);
    case REBUILD_PARAMETER:
    case REBUILD_PARAMETER_WITH_STATE:
      if (!(a[0] instanceof TensorRef)) throw new PickleError(`${fn} of ${describe(a[0] ?? null)}, not of a tensor`);
      return a[0];
    case TORCH_SIZE:
      return new PyTuple(intTuple(a[0] ?? null, 'torch.Size'));
    default:
      throw new PickleError(`REDUCE of ${fn}: it is allowed as a value, not as something to call`);
  }
}

function hashable(k: PyValue): PyKey {
  if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean' || k instanceof PyTuple) return k;
  throw new PickleError(`${describe(k)} cannot be a dict key`);
}

export interface UnpickleOptions {
  /** Resolves a BINPERSID id (torch: a ('storage', class, key, location, numel) tuple). */
  persistentLoad: (pid: PyValue) => PyValue;
}

/** Unpickles `data`; throws PickleError naming the byte offset and what was refused. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): PyValue {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let stack: PyValue[] = [];
  const marks: PyValue[][] = [];
  const memo = new Map<number, PyValue>();

  const need = (n: number) => {
    if (pos + n > data.byteLength) throw new PickleError(`truncated: needs ${n} more bytes at byte ${pos} of ${data.byteLength}`);
  };
  const pop = (): PyValue => {
    if (stack.length === 0) throw new PickleError('stack underflow');
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0) throw new PickleError('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const previous = marks.pop();
    if (previous === undefined) throw new PickleError('no MARK to close');
    stack = previous;
    return items;
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw new PickleError(`truncated: GLOBAL name at byte ${pos} has no end of line`);
    let name: string;
    try {
      name = decoder.decode(data.subarray(pos, end));
    } catch {
      throw new PickleError(`GLOBAL name at byte ${pos} is not UTF-8`);
    }
    pos = end + 1;
    return name;
  };
  const text = (n: number): string => {
    need(n);
    let s: string;
    try {
      s = decoder.decode(data.subarray(pos, pos + n));
    } catch {
      throw new PickleError(`string at byte ${pos} is not UTF-8`);
    }
    pos += n;
    return s;
  };
  const put = (key: number) => memo.set(key, top());
  const get = (key: number) => {
    if (!memo.has(key)) throw new PickleError(`memo ${key} is read before it is written`);
    stack.push(memo.get(key)!);
  };
  const setItems = (dict: PyValue, items: PyValue[]) => {
    if (!(dict instanceof Map)) throw new PickleError(`SETITEM on ${describe(dict)}`);
    if (items.length % 2 !== 0) throw new PickleError('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) dict.set(hashable(items[i]), items[i + 1]);
  };
  const append = (list: PyValue, items: PyValue[]) => {
    if (!Array.isArray(list)) throw new PickleError(`APPEND on ${describe(list)}`);
    list.push(...items);
  };

  for (;;) {
    need(1);
    const at = pos;
    const op = data[pos++];
    switch (op) {
      case OP.PROTO:
        need(1);
        pos++;
        break;
      case OP.STOP: {
        const value = pop();
        if (stack.length !== 0 || marks.length !== 0) throw new PickleError(`STOP at byte ${at} with ${stack.length} values left on the stack`);
        return value;
      }
      case OP.MARK:
        marks.push(stack);
        stack = [];
        break;
      case OP.GLOBAL: {
        const module = line();
        const name = line();
        const allowed = ALLOWED_GLOBALS.get(`${module}.${name}`);
        if (allowed === undefined) {
          throw new PickleError(`global ${module}.${name} at byte ${at} is not allowed: a state dict needs only ${ALLOWED_GLOBAL_NAMES.join(', ')}`);
        }
        stack.push(allowed);
        break;
      }
      case OP.REDUCE: {
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, args));
        break;
      }
      case OP.BUILD: {
        pop();
        const target = top();
        // torch BUILDs only tensors, parameters and OrderedDicts; their state (attributes,
        // `_metadata`) carries nothing headsweep reads.
        if (!(target instanceof TensorRef) && !(target instanceof PyOrderedDict)) throw new PickleError(`BUILD at byte ${at} on ${describe(target)}`);
        break;
      }
      case OP.NEWOBJ: {
        pop();
        throw new PickleError(`NEWOBJ at byte ${at} of ${describe(pop())}: no class can be instantiated`);
      }
      case OP.BINPERSID:
        stack.push(opts.persistentLoad(pop()));
        break;
      case OP.BININT:
        need(4);
        stack.push(view.getInt32(pos, true));
        pos += 4;
        break;
      case OP.BININT1:
        need(1);
        stack.push(data[pos++]);
        break;
      case OP.BININT2:
        need(2);
        stack.push(view.getUint16(pos, true));
        pos += 2;
        break;
      case OP.LONG1: {
        need(1);
        const n = data[pos++];
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[pos + i]);
        if (n > 0 && data[pos + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        pos += n;
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case OP.BINFLOAT:
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case OP.BINUNICODE: {
        need(4);
        const n = view.getUint32(pos, true);
        pos += 4;
        stack.push(text(n));
        break;
      }
      case OP.SHORT_BINSTRING: {
        need(1);
        const n = data[pos++];
        stack.push(text(n));
        break;
      }
      case OP.NONE:
        stack.push(null);
        break;
      case OP.NEWTRUE:
        stack.push(true);
        break;
      case OP.NEWFALSE:
        stack.push(false);
        break;
      case OP.EMPTY_TUPLE:
        stack.push(new PyTuple([]));
        break;
      case OP.TUPLE: {
        // popMark replaces `stack`: take the items first.
        const items = popMark();
        stack.push(new PyTuple(items));
        break;
      }
      case OP.TUPLE1:
        stack.push(new PyTuple([pop()]));
        break;
      case OP.TUPLE2: {
        const b = pop();
        stack.push(new PyTuple([pop(), b]));
        break;
      }
      case OP.TUPLE3: {
        const c = pop();
        const b = pop();
        stack.push(new PyTuple([pop(), b, c]));
        break;
      }
      case OP.EMPTY_LIST:
        stack.push([]);
        break;
      case OP.APPEND: {
        const item = pop();
        append(top(), [item]);
        break;
      }
      case OP.APPENDS: {
        const items = popMark();
        append(top(), items);
        break;
      }
      case OP.EMPTY_DICT:
        stack.push(new Map());
        break;
      case OP.SETITEM: {
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case OP.SETITEMS: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case OP.EMPTY_SET:
        stack.push(new Set());
        break;
      case OP.BINPUT:
        need(1);
        put(data[pos++]);
        break;
      case OP.LONG_BINPUT:
        need(4);
        put(view.getUint32(pos, true));
        pos += 4;
        break;
      case OP.BINGET:
        need(1);
        get(data[pos++]);
        break;
      case OP.LONG_BINGET:
        need(4);
        get(view.getUint32(pos, true));
        pos += 4;
        break;
      default: {
        const name = REFUSED_NAMES[op];
        throw new PickleError(`opcode 0x${op.toString(16).padStart(2, '0')}${name ? ` (${name})` : ''} at byte ${at} is not one torch's weights-only loader accepts`);
      }
    }
  }
}

/** The storage class constant of an allowed storage global, or undefined. */
export function storageDType(v: PyValue): DType | undefined {
  return v instanceof PyGlobal ? v.storageDType : undefined;
}
