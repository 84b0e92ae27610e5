/**
 * Sharded checkpoints: `model.safetensors.index.json` or `pytorch_model.bin.index.json`,
 * `{"metadata": {"total_size": …}, "weight_map": {tensor: shard file}}` beside the shards
 * it names ([HUB] serialization/_base.py; CHECKPOINT-FORMATS.md §2 "Sharding"). The shards
 * themselves are ordinary safetensors files or torch archives; this module reads the index
 * and checks it against what the shards hold.
 */
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { checkpointError, jsonQuote, quote } from '../../errors.ts';
import { readJsonObject } from '../json.ts';
import type { StoredTensor } from '../read.ts';

export interface ShardIndex {
  file: string;
  /** The index's size and sha256, for the checkpoint's identity. */
  bytes: number;
  sha256: string;
  /** Shard paths (joined to the index's folder), in the order the index first names them. */
  shards: string[];
  /** Tensor name → shard path. */
  weightMap: Map<string, string>;
}

export function readShardIndex(file: string): ShardIndex {
  const { value, bytes, sha256 } = readJsonObject(file);
  const map = value.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw checkpointError(file, 'has no "weight_map" object of tensor names to shard files', 'weight_map');
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [tensor, shard] of Object.entries(map as Record<string, unknown>)) {
    // Shards sit beside the index: a name that leaves the folder is not one.
    if (typeof shard !== 'string' || shard === '' || isAbsolute(shard) || normalize(shard).split(sep).includes('..')) {
      throw checkpointError(file, `weight_map[${quote(tensor)}] is ${jsonQuote(shard)}, not the name of a shard file beside the index`, `weight_map.${tensor}`);
    }
    const path = join(dirname(file), shard);
    if (!shards.includes(path)) shards.push(path);
    weightMap.set(tensor, path);
  }
  if (weightMap.size === 0) throw checkpointError(file, 'has an empty "weight_map"', 'weight_map');
  return { file, bytes, sha256, shards, weightMap };
}

/**
 * The union of the shards' tensors, after checking that each tensor is in the shard the
 * index names and that no shard holds a tensor the index does not place there.
 */
export function mergeShards(index: ShardIndex, shards: ReadonlyMap<string, ReadonlyMap<string, StoredTensor>>): Map<string, StoredTensor> {
  const out = new Map<string, StoredTensor>();
  for (const [tensor, shard] of index.weightMap) {
    const t = shards.get(shard)?.get(tensor);
    if (t === undefined) throw checkpointError(index.file, `places tensor ${quote(tensor)} in ${quote(shard)}, which has no such tensor`, tensor);
    out.set(tensor, t);
  }
  for (const [shard, tensors] of shards) {
    for (const name of tensors.keys()) {
      if (index.weightMap.get(name) !== shard) {
        throw checkpointError(index.file, `does not place tensor ${quote(name)} in ${quote(shard)}, which holds it (is the index from another save?)`, name);
      }
    }
  }
  return out;
}
