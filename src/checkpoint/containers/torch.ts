/**
 * torch.save files (`.pt`, `.pth`, `.bin`): a zip archive (zip.ts) of stored records under
 * one top folder, `<prefix>/data.pkl` (the pickled object, pickle.ts) and one record
 * `<prefix>/data/<key>` per storage. [PT] torch/serialization.py `_save`, `_load`;
 * CHECKPOINT-FORMATS.md §3.
 *
 * Opening an archive reads its directory and data.pkl only. A tensor is a description
 * until a caller reads it (read.ts); storages nothing asks for are never read, which is
 * how an optimizer's state in a nanoGPT checkpoint costs nothing.
 */
import { checkpointError, formatShape, quote } from '../../errors.ts';
import { DTYPE_BYTES } from '../dtypes.ts';
import { readExactly, type Storage, type StoredTensor } from '../read.ts';
import { PickleError, PyTuple, storageDType, TensorRef, unpickle, type PyKey, type PyValue, type StorageRef } from './pickle.ts';
import { readZipDirectory, recordStart, type ZipDirectory } from './zip.ts';

/** data.pkl of a real checkpoint is kilobytes to a few megabytes; past this it is not a state dict. */
const MAX_PICKLE_BYTES = 256 << 20;

/** Legacy torch.save files start with a protocol-2 pickle of this magic number (LONG1 0x1950a86a20f9469cfc6c). */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

export interface TorchArchive {
  file: string;
  /** The top folder every record is under (the saved file's stem, or `archive`). */
  prefix: string;
  directory: ZipDirectory;
  /** The unpickled object: for a state dict, a dict of tensor descriptions. */
  root: PyValue;
  /** Byte ranges read to open the archive (data.pkl, the directory): part of its identity. */
  read: { begin: number; bytes: number }[];
  /** The record holding a storage, found and checked on first use. */
  storage(ref: StorageRef, tensor: string): Storage;
}

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  return prefix.every((b, i) => bytes[i] === b);
}

/** Refuses what is not a torch zip before anything is unpickled, saying what it is instead. */
function checkMagic(fd: number, file: string, size: number): void {
  const head = new Uint8Array(Math.min(size, 512));
  readExactly(fd, file, head, 0, 'the first bytes');
  if (startsWith(head, [0x50, 0x4b, 0x03, 0x04])) return;
  const ascii = new TextDecoder('latin1').decode(head);
  if (ascii.startsWith('PYTORCH1')) {
    throw checkpointError(file, 'is in the PYTORCH1 preview format of torch serialization, which headsweep does not read; load it with torch and torch.save it again');
  }
  if (startsWith(head, LEGACY_MAGIC) || head[0] === 0x80 || ascii.slice(257, 262) === 'ustar') {
    throw checkpointError(
      file,
      'is a legacy torch.save file (the pre-zip format of torch < 1.6: a bare pickle or tar), which headsweep does not read, ' +
        'because reading one means unpickling it; load it with torch and torch.save it again (torch ≥ 1.6 writes the zip format)',
    );
  }
  if (size === 0) throw checkpointError(file, 'truncated file: 0 bytes');
  throw checkpointError(file, `is not a torch zip archive (it starts with bytes ${[...head.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ')}, not "PK")`);
}

function storageRef(pid: PyValue): StorageRef {
  const items = pid instanceof PyTuple ? pid.items : [];
  const [tag, cls, key, location, numel] = items;
  const dtype = storageDType(cls ?? null);
  if (items.length !== 5 || tag !== 'storage' || dtype === undefined || typeof key !== 'string' || typeof location !== 'string' || !Number.isSafeInteger(numel) || (numel as number) < 0) {
    throw new PickleError("a persistent id is not ('storage', <storage class>, key, location, numel)");
  }
  return { kind: 'storage', key, dtype, numel: numel as number, location };
}

/** Opens a torch zip: directory, byte order, data.pkl. */
export function openTorchArchive(fd: number, file: string, size: number): TorchArchive {
  checkMagic(fd, file, size);
  const directory = readZipDirectory(fd, file);
  const first = directory.order[0];
  const slash = first?.name.indexOf('/') ?? -1;
  if (first === undefined || slash <= 0) throw checkpointError(file, 'is a zip archive but not a torch.save one: its records are not under one top folder');
  const prefix = first.name.slice(0, slash);
  const record = (name: string) => directory.entries.get(`${prefix}/${name}`);

  const read: TorchArchive['read'] = [{ begin: directory.directoryStart, bytes: directory.fileSize - directory.directoryStart }];
  const byteorder = record('byteorder');
  if (byteorder !== undefined) {
    const start = recordStart(fd, directory, byteorder);
    const bytes = new Uint8Array(Math.min(byteorder.size, 16));
    readExactly(fd, file, bytes, start, `record ${quote(byteorder.name)}`);
    const order = new TextDecoder().decode(bytes);
    if (order !== 'little') throw checkpointError(file, `was saved with byte order ${quote(order)}; headsweep reads little-endian archives only`);
    read.push({ begin: start, bytes: byteorder.size });
  }

  const pkl = record('data.pkl');
  if (pkl === undefined) throw checkpointError(file, `missing data record: no '${prefix}/data.pkl' in the archive`);
  if (pkl.size > MAX_PICKLE_BYTES) throw checkpointError(file, `${quote(pkl.name)} is ${pkl.size} bytes, more than the ${MAX_PICKLE_BYTES} a state dict's pickle takes`);
  const pklStart = recordStart(fd, directory, pkl);
  const pickled = new Uint8Array(pkl.size);
  readExactly(fd, file, pickled, pklStart, `record ${quote(pkl.name)}`);
  read.push({ begin: pklStart, bytes: pkl.size });
  let root: PyValue;
  try {
    root = unpickle(pickled, { persistentLoad: storageRef });
  } catch (err) {
    if (err instanceof PickleError) throw checkpointError(file, `${pkl.name}: refused: ${err.message}`, undefined, err);
    throw err;
  }

  const storages = new Map<string, Storage>();
  return {
    file, prefix, directory, root, read,
    storage(ref, tensor) {
      const known = storages.get(ref.key);
      if (known !== undefined) return known;
      const name = `${prefix}/data/${ref.key}`;
      const entry = directory.entries.get(name);
      if (entry === undefined) throw checkpointError(file, `missing data record: tensor ${quote(tensor)} is in storage ${quote(ref.key)}, but the archive has no record ${quote(name)}`, tensor);
      const needed = ref.numel * DTYPE_BYTES[ref.dtype];
      if (entry.size < needed) {
        throw checkpointError(file, `record ${quote(name)} holds ${entry.size} bytes, fewer than its storage's ${ref.numel} × ${ref.dtype} (${needed} bytes)`, tensor);
      }
      const storage = { file, begin: recordStart(fd, directory, entry), bytes: needed, label: `record ${quote(name)}` };
      storages.set(ref.key, storage);
      return storage;
    },
  };
}

/** Whether a pickled value is a state dict: a dict of names to tensors. */
function isStateDict(v: PyValue): v is Map<PyKey, TensorRef> {
  return v instanceof Map && v.size > 0 && [...v].every(([k, t]) => typeof k === 'string' && t instanceof TensorRef);
}

/**
 * The tensors of a state dict found at `where` in the archive (`data.pkl` for the root,
 * `data.pkl['model']` for nanoGPT's), each checked to lie inside its storage.
 */
export function stateDictTensors(archive: TorchArchive, value: PyValue, where: string): Map<string, StoredTensor> {
  const { file } = archive;
  if (!(value instanceof Map)) throw checkpointError(file, `${where} is not a state dict (a dict of tensors)`);
  const out = new Map<string, StoredTensor>();
  for (const [key, t] of value) {
    if (typeof key !== 'string') throw checkpointError(file, `${where} has a key that is not a string (${quote(key)})`);
    if (!(t instanceof TensorRef)) throw checkpointError(file, `${where}[${quote(key)}] is not a tensor`, key);
    const storage = archive.storage(t.storage, key);
    // The last element the tensor reads must be inside the storage (strides are ≥ 0).
    if (!t.shape.includes(0)) {
      const last = t.offset + t.shape.reduce((at, d, k) => at + (d - 1) * t.strides[k], 0);
      if (last >= t.storage.numel) {
        throw checkpointError(
          file,
          `tensor ${quote(key)} (shape ${formatShape(t.shape)}, offset ${t.offset}, strides ${formatShape(t.strides)}) reads element ${last} of storage ${quote(t.storage.key)}, which holds ${t.storage.numel}: the storage is smaller than its tensor`,
          key,
        );
      }
    }
    out.set(key, { name: key, dtype: t.storage.dtype, shape: [...t.shape], strides: [...t.strides], offset: t.offset, storage });
  }
  return out;
}

/** A pickled value as plain JSON-able data (dicts as objects), for configs such as nanoGPT's `model_args`. */
export function plainValue(v: PyValue): unknown {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), plainValue(x)]));
  if (v instanceof PyTuple) return v.items.map(plainValue);
  if (Array.isArray(v)) return v.map(plainValue);
  if (v instanceof Set) return [...v].map(plainValue);
  if (v instanceof TensorRef) return `<tensor [${v.shape.join(', ')}]>`;
  if (typeof v === 'bigint') return v.toString();
  if (v !== null && typeof v === 'object') return String(v);
  return v;
}
