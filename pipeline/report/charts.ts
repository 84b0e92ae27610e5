/**
 * The report's charts as Vega-Lite specs, and their rendering to SVG strings in Node
 * (vega-lite compiles, vega renders headlessly), so the page needs no script to draw.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { metricSpec, type CheckpointMetric, type HeadMetric } from '../../src/metrics/registry.ts';
import type { CheckpointScoreRow, CompositionRow, HeadRow } from './read.ts';

// vega measures label widths with a canvas when the optional `canvas` package is
// installed and estimates them otherwise; estimates always, so the SVG is the same on
// every machine. (vega's typings leave `textMetrics` out; it is a runtime export.)
(vega as unknown as { textMetrics: { canvas(use: boolean): void } }).textMetrics.canvas(false);

/** `L{layer}H{head}`, the head naming used on every axis and legend. */
export function headName(layer: number, head: number): string {
  return `L${layer}H${head}`;
}

/** Head scores drawn over training steps, one panel each: the two halves of the induction signature. */
export const STEP_HEAD_METRICS = ['prefix_matching', 'copying'] as const satisfies readonly HeadMetric[];

const PANEL = { width: 320, height: 220 } as const;
/** Pixels between the baselines of two line-end labels (11 px bold text). */
const LABEL_SPACING = 13;

/** The label the default classification rules give an induction head (src/classify.ts). */
export const INDUCTION_LABEL = 'induction';

/** Where the phase change is: the first known step at which some head is labelled induction, and those heads. */
export interface PhaseChange {
  step: number;
  heads: string[];
}

/**
 * The first step at which a head of `rows` (one run and prompt set) crosses the induction
 * rule, i.e. is labelled `induction`; null when none ever does.
 */
export function phaseChange(rows: readonly HeadRow[]): PhaseChange | null {
  let step = Infinity;
  for (const r of rows) if (r.label === INDUCTION_LABEL && r.step !== null && r.step < step) step = r.step;
  if (step === Infinity) return null;
  const heads = rows.filter((r) => r.step === step && r.label === INDUCTION_LABEL).map((r) => [r.layer, r.head] as [number, number]);
  return { step, heads: headOrder(heads) };
}

/**
 * The y-axis span of a score: its range from the metric registry ([0, 1] for pattern
 * scores, [-1, 1] for copying), so that a 1-layer run's wobble near 0.07 does not fill the
 * panel the way a real phase change does. A score without fixed bounds spans `observed`,
 * which callers take over every run so that runs stay comparable.
 */
export function scoreDomain(metric: HeadMetric | CheckpointMetric, observed: readonly number[]): [number, number] {
  const range = metricSpec(metric).range;
  if (range !== null) return [range[0], range[1]];
  if (observed.length === 0) return [0, 1];
  let [lo, hi] = [Infinity, -Infinity];
  for (const v of observed) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

/**
 * Per-head scores over steps for one run and prompt set: a panel per metric in
 * `STEP_HEAD_METRICS` that has values, on the metric's fixed range, a line per head, and
 * up to three of the highest heads at the last step named at the line ends, spread apart
 * so their names never overprint. A dashed rule marks the phase change when there is one.
 * Rows with an unknown step are left out by the caller.
 */
export function headScoresOverSteps(rows: readonly HeadRow[], title: string, phase: PhaseChange | null = phaseChange(rows)): TopLevelSpec {
  const heads = headOrder(rows.map((r) => [r.layer, r.head]));
  const x = { field: 'step', type: 'quantitative', title: 'step', scale: stepScale(rows) } as const;
  const color = {
    field: 'head', type: 'nominal', sort: heads, title: 'head',
    scale: { scheme: heads.length <= 10 ? 'tableau10' : 'tableau20' },
    legend: { columns: Math.ceil(heads.length / 16), symbolType: 'stroke' },
  } as const;
  const drawn = STEP_HEAD_METRICS.filter((metric) => rows.some((r) => r[metric] !== null));
  const panels = drawn.map((metric, i) => {
    const first = i === 0;
    const values = rows.flatMap((r) => {
      const value = r[metric];
      return value === null ? [] : [{ step: r.step, head: headName(r.layer, r.head), value }];
    });
    const domain = scoreDomain(metric, []);
    const y = { field: 'value', type: 'quantitative', title: metric, scale: { domain, nice: false } } as const;
    return {
      ...PANEL,
      layer: [
        {
          data: { values },
          mark: { type: 'line', point: distinct(rows.map((r) => r.step)).length <= 30, strokeWidth: 1.5 },
          encoding: { x, y, color },
        },
        {
          data: { values: lineEndLabels(values, domain) },
          mark: { type: 'text', align: 'left', baseline: 'middle', dx: 6, fontWeight: 'bold' },
          encoding: { x, y: { ...y, field: 'label_y' }, color, text: { field: 'head' } },
        },
        // The caption once, in the first panel.
        ...phaseRules(phase === null ? [] : [{ step: phase.step, text: first ? `${phase.heads.join(', ')}: induction from step ${phase.step}` : undefined }], x),
      ],
    };
  });
  return sideBySide(title, panels);
}

/**
 * The heads named at the last step: the highest, and the next two when they reach half of
 * it (heads near the floor would only crowd it). Each name sits at its line's end, moved
 * down (or up near the floor) by as little as keeps LABEL_SPACING pixels between names.
 */
function lineEndLabels(values: readonly { step: number | null; head: string; value: number }[], domain: [number, number]): object[] {
  const last = Math.max(...values.map((v) => v.step ?? -Infinity));
  const atLast = values.filter((v) => v.step === last).sort((a, b) => b.value - a.value || cmp(a.head, b.head));
  const named = atLast.filter((v, rank) => rank === 0 || (rank < 3 && v.value >= atLast[0].value / 2));
  const gap = ((domain[1] - domain[0]) * LABEL_SPACING) / PANEL.height;
  const ys: number[] = [];
  named.forEach((v, i) => ys.push(i === 0 ? Math.min(v.value, domain[1]) : Math.min(v.value, ys[i - 1] - gap)));
  const below = domain[0] - ys[ys.length - 1];
  return named.map((v, i) => ({ ...v, label_y: below > 0 ? ys[i] + below : ys[i] }));
}

/** Panels side by side under one title, sharing one colour legend. */
function sideBySide(title: string, panels: object[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    hconcat: panels,
    resolve: { scale: { color: 'shared' } },
  } as TopLevelSpec;
}

/**
 * A dashed vertical rule for each marker, and its caption (when it has one) at the top of
 * the panel, one line per marker.
 */
function phaseRules(markers: readonly { step: number; text?: string; prompt_set?: string }[], x: object, color?: object): object[] {
  if (markers.length === 0) return [];
  const colorBy = color ?? { value: '#333' };
  return [
    { data: { values: markers }, mark: { type: 'rule', strokeDash: [5, 3], strokeWidth: 1.2 }, encoding: { x, color: colorBy } },
    ...markers.flatMap((m, i) => (m.text === undefined ? [] : [{
      data: { values: [m] },
      mark: { type: 'text', align: 'left', baseline: 'top', dx: 4, fontSize: 10 },
      encoding: { x, y: { value: 3 + 12 * i }, text: { field: 'text' }, color: colorBy },
    }])),
  ];
}

/** The attention-pattern scores, all in [0, 1]. */
export type PatternMetric = 'prefix_matching' | 'duplicate_token' | 'previous_token';

/**
 * A layer × head grid of one head score at one checkpoint (one cell per head; layer 0
 * on top, as TransformerLens draws it), with the value written in each cell.
 */
export function headHeatmap(rows: readonly HeadRow[], metric: PatternMetric, title: string): TopLevelSpec {
  const values = rows.map((r) => ({ layer: r.layer, head: r.head, name: headName(r.layer, r.head), value: r[metric] }));
  const x = { field: 'head', type: 'ordinal', title: 'head', axis: { labelAngle: 0 } } as const;
  const y = { field: 'layer', type: 'ordinal', title: 'layer' } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values },
    width: { step: 44 },
    height: { step: 32 },
    layer: [
      {
        mark: { type: 'rect', stroke: 'white', strokeWidth: 1 },
        encoding: {
          x, y,
          color: { field: 'value', type: 'quantitative', title: metric, scale: { scheme: 'viridis', domain: [0, 1] } },
        },
      },
      {
        mark: { type: 'text', fontSize: 10 },
        encoding: {
          x, y,
          text: { field: 'value', type: 'quantitative', format: '.2f' },
          color: { condition: { test: 'datum.value > 0.6', value: 'black' }, value: 'white' },
        },
      },
    ],
  };
}

/**
 * Composition between heads at one checkpoint: source head × destination head, a facet
 * per kind (Q, K, V). The colour scale diverges at the baseline 1/√d_model, the score of
 * a randomly rotated pair, so only cells warmer than chance stand out.
 */
export function compositionHeatmap(rows: readonly CompositionRow[], title: string): TopLevelSpec {
  const baseline = rows[0].baseline;
  const values = rows.map((r) => ({
    src: headName(r.src_layer, r.src_head), dst: headName(r.dst_layer, r.dst_head), kind: r.kind, score: r.score,
  }));
  const src = headOrder(rows.map((r) => [r.src_layer, r.src_head]));
  const dst = headOrder(rows.map((r) => [r.dst_layer, r.dst_head]));
  // Numbers in the cells only while they stay legible.
  const labelled = src.length * dst.length <= 256;
  const x = { field: 'src', type: 'ordinal', sort: src, title: 'source head', axis: { labelAngle: labelled ? 0 : -90 } } as const;
  const y = { field: 'dst', type: 'ordinal', sort: dst, title: 'destination head' } as const;
  const maxScore = rows.reduce((max, r) => Math.max(max, r.score), baseline * 2);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle: `baseline 1/√d_model = ${baseline.toFixed(3)} (the colour scale's midpoint)` },
    data: { values },
    facet: {
      column: { field: 'kind', type: 'nominal', title: 'composition', sort: ['Q', 'K', 'V'] },
    },
    spec: {
      width: { step: labelled ? 36 : 12 },
      height: { step: labelled ? 24 : 12 },
      layer: [
        {
          mark: { type: 'rect', stroke: 'white', strokeWidth: labelled ? 1 : 0 },
          encoding: {
            x, y,
            color: {
              field: 'score', type: 'quantitative', title: 'score',
              scale: { type: 'linear', scheme: 'blueorange', domain: [0, baseline, maxScore] },
            },
          },
        },
        ...(labelled ? [{
          mark: { type: 'text', fontSize: 9 },
          encoding: {
            x, y,
            text: { field: 'score', type: 'quantitative', format: '.2f' },
            // White on the dark ends of the diverging scale, black on its pale middle.
            color: {
              condition: { test: `datum.score > ${(baseline + maxScore) / 2} || datum.score < ${baseline / 2}`, value: 'white' },
              value: 'black',
            },
          },
        } as const] : []),
      ],
    },
  };
}

/**
 * Per-checkpoint scores over steps for one run, a panel per metric of `metrics` and a line
 * per prompt set, each panel spanning `domains[metric]` (the caller's, taken over every
 * run, so runs compare at a glance). `phases` marks, per prompt set, the step where a head
 * first became an induction head.
 */
export function checkpointScoresOverSteps(
  rows: readonly CheckpointScoreRow[], title: string, metrics: readonly CheckpointMetric[],
  domains: Partial<Record<CheckpointMetric, [number, number]>>, phases: readonly { prompt_set: string; phase: PhaseChange }[] = [],
): TopLevelSpec {
  const x = { field: 'step', type: 'quantitative', title: 'step', scale: stepScale(rows) } as const;
  const color = { field: 'prompt_set', type: 'nominal', title: 'prompt set', scale: { scheme: 'set2', domain: distinct(rows.map((r) => r.prompt_set)).sort() } } as const;
  const markers = phases.map(({ prompt_set, phase }) => ({ step: phase.step, prompt_set, text: `induction from step ${phase.step} (${prompt_set})` }));
  const panels = metrics.map((metric) => {
    const values = rows.flatMap((r) => (r[metric] === null ? [] : [{ step: r.step, prompt_set: r.prompt_set, value: r[metric] }]));
    const domain = domains[metric] ?? scoreDomain(metric, values.map((v) => v.value!));
    return {
      ...PANEL,
      height: 200,
      layer: [
        {
          data: { values },
          mark: { type: 'line', point: true },
          encoding: { x, y: { field: 'value', type: 'quantitative', title: metric, scale: { domain, nice: true, zero: false } }, color },
        },
        ...phaseRules(markers, x, color),
      ],
    };
  });
  return sideBySide(title, panels);
}

/** Compiles a Vega-Lite spec and renders it to a standalone SVG string, with no DOM. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec, { config: CONFIG }).spec), { renderer: 'none', logLevel: vega.Warn });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const CONFIG = {
  font: 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
  title: { fontSize: 14, anchor: 'start', subtitleColor: '#555' },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#eee' },
  header: { labelFontSize: 12, labelFontWeight: 'bold' },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  view: { stroke: '#ccc' },
} as const;

/**
 * Checkpoint schedules are often log-spaced (0, 1, 2, 4, …, 512, 1000, 2000, …); when
 * the known steps span more than two decades a symlog axis keeps the early ones apart.
 */
function stepScale(rows: readonly { step: number | null }[]): { type: 'linear' | 'symlog' } {
  let min = Infinity;
  let max = 0;
  for (const { step } of rows) {
    if (step !== null && step > 0) {
      min = Math.min(min, step);
      max = Math.max(max, step);
    }
  }
  return { type: max / min > 100 ? 'symlog' : 'linear' };
}

/** Head names sorted by layer, then head. */
function headOrder(pairs: readonly [number, number][]): string[] {
  const unique = new Map<string, [number, number]>();
  for (const [layer, head] of pairs) unique.set(headName(layer, head), [layer, head]);
  return [...unique.entries()].sort(([, a], [, b]) => a[0] - b[0] || a[1] - b[1]).map(([name]) => name);
}

function distinct<T>(values: readonly T[]): T[] {
  return [...new Set(values)];
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
