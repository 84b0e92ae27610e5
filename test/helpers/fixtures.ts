/**
 * The golden fixtures of METRICS.md §7 as the scorer takes them: checkpoint, prompt sets,
 * expected scores, and the icl positions each fixture's icl_score was computed with.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint, type Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import type { PromptSet } from '../../src/prompts/types.ts';

export const FIXTURES_DIR = join(import.meta.dirname, '..', 'fixtures');

/** early, late per fixture, as METRICS.md §7 lists them. */
export const FIXTURE_ICL = {
  'planted-induction-2l': { early: 10, late: 60 },
  'random-2l-ln-standard': { early: 20, late: 100 },
  'random-1l-none-shortformer': { early: 5, late: 40 },
} as const;

export type FixtureName = keyof typeof FIXTURE_ICL;
export const FIXTURE_NAMES = Object.keys(FIXTURE_ICL) as FixtureName[];

export interface ExpectedHead {
  layer: number;
  head: number;
  prefix_matching: number;
  duplicate_token: number;
  previous_token: number;
}

export interface ExpectedPromptSet {
  heads: ExpectedHead[];
  mean_loss: number;
  /** Absent where the sequences are shorter than `late`. */
  icl_score?: number;
}

export interface Fixture {
  name: FixtureName;
  checkpoint: Checkpoint;
  promptSets: PromptSet[];
  expected: Record<string, ExpectedPromptSet>;
  icl: { early: number; late: number };
}

export function loadFixture(name: FixtureName): Fixture {
  const read = (suffix: string): unknown => JSON.parse(readFileSync(join(FIXTURES_DIR, `${name}.${suffix}`), 'utf8'));
  const prompts = read('prompts.json') as Record<string, number[][]>;
  return {
    name,
    checkpoint: loadCheckpoint(join(FIXTURES_DIR, `${name}.safetensors`)),
    promptSets: Object.entries(prompts).map(([setName, seqs]) => ({ name: setName, sequences: seqs.map((s) => Int32Array.from(s)) })),
    expected: (read('expected.json') as { prompt_sets: Record<string, ExpectedPromptSet> }).prompt_sets,
    icl: FIXTURE_ICL[name],
  };
}

/** The models with MLPs of METRICS.md §7 (`fixtures/real/`), in TL names; cases.json lists them. */
export const REAL_FIXTURES_DIR = join(FIXTURES_DIR, 'real');

interface RealCase {
  name: string;
  tl: string;
  icl: [number, number];
}

const REAL_CASES = JSON.parse(readFileSync(join(REAL_FIXTURES_DIR, 'cases.json'), 'utf8')) as RealCase[];
export const REAL_FIXTURE_NAMES = REAL_CASES.map((c) => c.name);

/** The weight scores of an expected.json: copying per head, composition per (src, dst, kind), in float64. */
export interface ExpectedWeights {
  copying: { layer: number; head: number; copying: number }[];
  composition: { src_layer: number; src_head: number; dst_layer: number; dst_head: number; kind: 'Q' | 'K' | 'V'; score: number; baseline: number }[];
}

export interface RealFixture extends Omit<Fixture, 'name'> {
  name: string;
  weights: ExpectedWeights;
}

/** A model with MLPs from its `NAME.tl.safetensors` (config in the header), with its prompts and expected scores. */
export function loadRealFixture(name: string): RealFixture {
  const c = REAL_CASES.find((r) => r.name === name);
  if (c === undefined) throw new Error(`no real fixture '${name}' in cases.json`);
  const read = (suffix: string): unknown => JSON.parse(readFileSync(join(REAL_FIXTURES_DIR, `${name}.${suffix}`), 'utf8'));
  const prompts = read('prompts.json') as Record<string, number[][]>;
  const expected = read('expected.json') as { prompt_sets: Record<string, ExpectedPromptSet> } & ExpectedWeights;
  return {
    name,
    checkpoint: loadCheckpoint(join(REAL_FIXTURES_DIR, c.tl)),
    promptSets: Object.entries(prompts).map(([setName, seqs]) => ({ name: setName, sequences: seqs.map((s) => Int32Array.from(s)) })),
    expected: expected.prompt_sets,
    weights: { copying: expected.copying, composition: expected.composition },
    icl: { early: c.icl[0], late: c.icl[1] },
  };
}
