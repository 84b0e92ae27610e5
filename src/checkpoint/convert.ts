/**
 * From a family's recipes to strided views: how each TL tensor is read from the source's
 * stored tensors, checked against the config before anything is read.
 *
 * A family writes each conversion as the index maths of CHECKPOINT-FORMATS.md, e.g. GPT-2's
 * `W_Q[h][m][j] = c_attn.weight[m][h·d + j]` is `(h, m, j) => [m, h * d + j]`. Such a map is
 * affine, so it is evaluated once at the origin and at each unit vector to get an offset
 * and per-dimension steps; composed with the stored tensor's own strides, that is a view
 * on the file's bytes (read.ts), and reading it is the conversion. No tensor is copied
 * to be rearranged, whatever the layout.
 */
import { checkpointError, formatShape, quote, shapeMismatch } from '../errors.ts';
import { expectedTensors, type ModelConfig } from '../model/config.ts';
import { DTYPE_BYTES, FLOAT_DTYPES, isFloatDType } from './dtypes.ts';
import type { StoredTensor, StridedView } from './read.ts';

/** TL index → source index, affine (see the file comment). */
export type IndexMap = (...i: number[]) => number[];

/** How one TL tensor is read. */
export type Recipe =
  /** `from` as it is (same shape), or through `index`; `shape` is the source shape the family expects. */
  | { from: string; shape?: readonly number[]; index?: IndexMap }
  /** Not stored: zeros (a LayerNorm without bias, say). */
  | { zeros: true };

export function from(name: string, shape?: readonly number[], index?: IndexMap): Recipe {
  return { from: name, shape, index };
}

export const ZEROS: Recipe = { zeros: true };

/** What a family makes of a source's tensors. */
export interface Conversion {
  /** TL key → recipe. A TL tensor without one reads as zeros if the config marks it optional. */
  recipes: Map<string, Recipe>;
  /** Source names read past by rule (causal-mask buffers, rotary tables). */
  ignored: (name: string) => boolean;
  /** The message for a source tensor that is neither read nor ignored. */
  unexpected: (name: string) => string;
}

/** One TL tensor, ready to read: a view on stored bytes, or zeros. */
export interface TensorPlan {
  key: string;
  shape: number[];
  /** null: zeros. */
  source: StoredTensor | null;
  view: StridedView | null;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The view a recipe's index map makes of `t` for a TL tensor of `shape`; throws on a map that is not affine. */
function viewThrough(t: StoredTensor, key: string, shape: number[], index: IndexMap): StridedView | string {
  const rank = t.shape.length;
  const at = (i: number[]) => {
    const s = index(...i);
    if (s.length !== rank) throw new Error(`conversion of ${quote(key)}: index map gives ${s.length} indices for ${quote(t.name)} of rank ${rank}`);
    return s;
  };
  const origin = at(shape.map(() => 0));
  const steps = shape.map((_, j) => at(shape.map((__, i) => (i === j ? 1 : 0))).map((s, k) => s - origin[k]));
  const corner = at(shape.map((d) => Math.max(0, d - 1)));
  for (let k = 0; k < rank; k++) {
    const predicted = origin[k] + steps.reduce((sum, c, j) => sum + Math.max(0, shape[j] - 1) * c[k], 0);
    if (predicted !== corner[k]) throw new Error(`conversion of ${quote(key)}: index map is not affine`);
  }
  if (!shape.includes(0)) {
    for (let k = 0; k < rank; k++) {
      let lo = origin[k];
      let hi = origin[k];
      for (let j = 0; j < shape.length; j++) {
        const reach = (shape[j] - 1) * steps[j][k];
        if (reach < 0) lo += reach;
        else hi += reach;
      }
      if (lo < 0 || hi >= t.shape[k]) {
        return `tensor ${quote(t.name)} has shape ${formatShape(t.shape)}, too small for ${quote(key)} ${formatShape(shape)} (it reads index ${hi} of dimension ${k})`;
      }
    }
  }
  const strides = steps.map((c) => c.reduce((sum, ck, k) => sum + ck * t.strides[k], 0));
  if (strides.some((s) => s < 0)) throw new Error(`conversion of ${quote(key)}: index map runs backwards`);
  const offset = t.offset + origin.reduce((sum, o, k) => sum + o * t.strides[k], 0);
  return { dtype: t.dtype, shape, strides, base: t.storage.begin + offset * DTYPE_BYTES[t.dtype], storage: t.storage };
}

/**
 * Every TL tensor the config implies, in TL order, as a view or zeros. Checks every key,
 * shape and dtype; `where` names the file for errors that are not about one stored tensor.
 * Returns the source tensors read past by rule too.
 */
export function planTensors(
  where: string, family: string, c: ModelConfig, conversion: Conversion, stored: ReadonlyMap<string, StoredTensor>,
): { tensors: Map<string, TensorPlan>; ignored: string[] } {
  const tensors = new Map<string, TensorPlan>();
  const read = new Set<string>();
  for (const [key, { shape, optional }] of expectedTensors(c)) {
    const recipe = conversion.recipes.get(key);
    if (recipe === undefined || 'zeros' in recipe) {
      if (recipe === undefined && !optional) throw checkpointError(where, `missing tensor ${quote(key)} (shape ${formatShape(shape)} expected by the config)`, key);
      tensors.set(key, { key, shape, source: null, view: null });
      continue;
    }
    const t = stored.get(recipe.from);
    if (t === undefined) {
      const reason = recipe.from === key ? `shape ${formatShape(shape)} expected by the config` : `the ${family} conversion reads ${quote(key)} from it`;
      throw checkpointError(where, `missing tensor ${quote(recipe.from)} (${reason})`, recipe.from);
    }
    const file = t.storage.file;
    const want = recipe.shape ?? (recipe.index === undefined ? shape : undefined);
    if (want !== undefined && !sameShape(t.shape, want)) throw shapeMismatch(file, t.name, want, t.shape);
    if (!isFloatDType(t.dtype)) {
      throw checkpointError(file, `tensor ${quote(t.name)} has dtype ${t.dtype}; weights must be ${FLOAT_DTYPES.join(', ')}`, t.name);
    }
    const view = recipe.index === undefined
      ? { dtype: t.dtype, shape, strides: t.strides, base: t.storage.begin + t.offset * DTYPE_BYTES[t.dtype], storage: t.storage }
      : viewThrough(t, key, shape, recipe.index);
    if (typeof view === 'string') throw checkpointError(file, view, t.name);
    read.add(t.name);
    tensors.set(key, { key, shape, source: t, view });
  }
  const ignored: string[] = [];
  for (const name of stored.keys()) {
    if (read.has(name)) continue;
    if (!conversion.ignored(name)) {
      const file = stored.get(name)!.storage.file;
      throw checkpointError(file, conversion.unexpected(name), name);
    }
    ignored.push(name);
  }
  return { tensors, ignored };
}
