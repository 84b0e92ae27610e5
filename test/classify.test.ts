/**
 * The head classifier: on the planted induction model it must find exactly its previous-
 * token head and its induction head; and the rule semantics (priority, AND, missing/NaN
 * scores, schema errors with a path).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend.ts';
import { loadCheckpoint } from '../src/checkpoint/checkpoint.ts';
import { DEFAULT_RULES, RulesSchema, classifyHead, labelHeads, type Rule } from '../src/classify.ts';
import { copyingScores } from '../src/metrics/copying.ts';
import { disposeParams, uploadParams } from '../src/model/forward.ts';
import { scoreCheckpoint, type CheckpointScores } from '../src/score.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');

interface ExpectedPatterns {
  prompt_sets: Record<string, {
    heads: { layer: number; head: number; prefix_matching: number; duplicate_token: number; previous_token: number }[];
  }>;
}

describe('planted-induction-2l', () => {
  let scores: CheckpointScores;

  beforeAll(async () => {
    await initBackend('wasm');
    const ckpt = loadCheckpoint(join(FIXTURES, 'planted-induction-2l.safetensors'));
    const expected = JSON.parse(readFileSync(join(FIXTURES, 'planted-induction-2l.expected.json'), 'utf8')) as ExpectedPatterns;
    const { n_layers: nLayers, n_heads: nHeads } = ckpt.config;
    const params = uploadParams(ckpt.weights);
    const copying = copyingScores(params, ckpt);
    disposeParams(params);
    // The golden pattern scores of each prompt set, with the copying scores computed here.
    const perHead = (heads: ExpectedPatterns['prompt_sets'][string]['heads'], metric: 'prefix_matching' | 'duplicate_token' | 'previous_token') => {
      const out = new Float64Array(nLayers * nHeads).fill(NaN);
      for (const h of heads) out[h.layer * nHeads + h.head] = h[metric];
      return out;
    };
    scores = {
      nLayers,
      nHeads,
      copying,
      promptSets: Object.entries(expected.prompt_sets).map(([promptSet, { heads }]) => ({
        promptSet,
        prefix_matching: perHead(heads, 'prefix_matching'),
        duplicate_token: perHead(heads, 'duplicate_token'),
        previous_token: perHead(heads, 'previous_token'),
      })),
      seconds: { forward: 0, weights: 0 },
    };
  });

  it('labels exactly L0H0 previous_token and L1H0 induction in every prompt set', () => {
    expect(scores.promptSets.map((s) => s.promptSet)).toEqual(['repeated_random', 'natural_like']);
    // [layer * n_heads + head]: L0H0, L0H1, L1H0, L1H1
    expect(labelHeads(scores)).toEqual([
      ['previous_token', null, 'induction', null],
      ['previous_token', null, 'induction', null],
    ]);
  });

  it('labelHeads agrees with classifyHead head by head', () => {
    const set = scores.promptSets[0];
    const l1h0 = 1 * scores.nHeads + 0;
    expect(classifyHead({
      prefix_matching: set.prefix_matching![l1h0],
      duplicate_token: set.duplicate_token![l1h0],
      previous_token: set.previous_token![l1h0],
      copying: scores.copying![l1h0],
    })).toBe('induction');
  });
});

describe('planted-induction-2l end to end', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it("labels the same two heads from the scorer's own pattern and copying scores", async () => {
    const ckpt = loadCheckpoint(join(FIXTURES, 'planted-induction-2l.safetensors'));
    const prompts = JSON.parse(readFileSync(join(FIXTURES, 'planted-induction-2l.prompts.json'), 'utf8')) as Record<string, number[][]>;
    const promptSets = Object.entries(prompts).map(([name, seqs]) => ({ name, sequences: seqs.map((s) => Int32Array.from(s)) }));
    const scores = await scoreCheckpoint(ckpt, promptSets, {
      metrics: ['prefix_matching', 'duplicate_token', 'previous_token', 'copying'],
      batchSize: 4,
      icl: { early: 10, late: 60 },
    });
    expect(labelHeads(scores)).toEqual([
      ['previous_token', null, 'induction', null],
      ['previous_token', null, 'induction', null],
    ]);
  });
});

describe('rule semantics', () => {
  const strong = { prefix_matching: 0.9, duplicate_token: 0.9, previous_token: 0.9, copying: 0.9 };

  it('the first matching rule wins', () => {
    expect(classifyHead(strong)).toBe('induction');
    expect(classifyHead(strong, [...DEFAULT_RULES].reverse())).toBe('copying');
    expect(classifyHead({ ...strong, prefix_matching: 0 })).toBe('previous_token');
    expect(classifyHead({ duplicate_token: 0.5, copying: 0.9 })).toBe('duplicate_token');
  });

  it('conditions combine with AND', () => {
    // Prefix matching alone is not induction: the head must also copy.
    expect(classifyHead({ prefix_matching: 0.9, copying: 0.29 })).toBeNull();
    expect(classifyHead({ prefix_matching: 0.9, copying: 0.3 })).toBe('induction');
  });

  it('a condition on a missing or NaN score is false, whatever the comparison', () => {
    const below: Rule[] = [{ label: 'quiet', all: [{ metric: 'previous_token', op: '<', value: 0.1 }] }];
    expect(classifyHead({}, below)).toBeNull();
    expect(classifyHead({ previous_token: NaN }, below)).toBeNull();
    expect(classifyHead({ previous_token: 0 }, below)).toBe('quiet');
    expect(classifyHead({ prefix_matching: NaN, copying: 1 })).toBe('copying');
    expect(classifyHead({})).toBeNull();
  });

  it('each comparison treats the boundary as written', () => {
    const at = (op: Rule['all'][number]['op']) => classifyHead({ copying: 0.5 }, [{ label: op, all: [{ metric: 'copying', op, value: 0.5 }] }]);
    expect([at('>='), at('>'), at('<='), at('<')]).toEqual(['>=', null, '<=', null]);
  });
});

describe('RulesSchema', () => {
  const ok = { label: 'induction', all: [{ metric: 'prefix_matching', op: '>=', value: 0.4 }] };

  it('accepts the defaults', () => {
    expect(RulesSchema.parse(DEFAULT_RULES)).toEqual(DEFAULT_RULES);
  });

  it('rejects an unknown key with its path', () => {
    const r = RulesSchema.safeParse([ok, { ...ok, all: [{ ...ok.all[0], threshold: 1 }] }]);
    expect(r.success).toBe(false);
    expect(r.error!.issues).toMatchObject([{ code: 'unrecognized_keys', keys: ['threshold'], path: [1, 'all', 0] }]);
    expect(RulesSchema.safeParse([{ ...ok, priority: 1 }]).error!.issues).toMatchObject([{ code: 'unrecognized_keys', path: [0] }]);
  });

  it('rejects an unknown metric or operator with its path', () => {
    const r = RulesSchema.safeParse([{ ...ok, all: [{ metric: 'induction_score', op: '=>', value: 0.4 }] }]);
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path)).toEqual([[0, 'all', 0, 'metric'], [0, 'all', 0, 'op']]);
  });

  it('rejects a rule without conditions or label', () => {
    const r = RulesSchema.safeParse([{ label: '', all: [] }]);
    expect(r.error!.issues.map((i) => i.path)).toEqual([[0, 'label'], [0, 'all']]);
  });
});
