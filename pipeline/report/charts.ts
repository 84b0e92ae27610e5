/**
 * The report's charts as Vega-Lite specs, and their rendering to SVG strings in Node
 * (vega-lite compiles, vega renders headlessly), so the page needs no script to draw.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { CheckpointScoreRow, CompositionRow, HeadRow } from './read.ts';

// vega measures label widths with a canvas when the optional `canvas` package is
// installed and estimates them otherwise; estimates always, so the SVG is the same on
// every machine. (vega's typings leave `textMetrics` out; it is a runtime export.)
(vega as unknown as { textMetrics: { canvas(use: boolean): void } }).textMetrics.canvas(false);

/** `L{layer}H{head}`, the head naming used on every axis and legend. */
export function headName(layer: number, head: number): string {
  return `L${layer}H${head}`;
}

/** Head scores drawn over training steps, one facet column each. */
export const STEP_HEAD_METRICS = ['prefix_matching', 'copying'] as const satisfies readonly (keyof HeadRow)[];

/**
 * Per-head scores over steps for one run and prompt set: a line per head, one facet per
 * metric in `STEP_HEAD_METRICS` that has values, and up to three of the highest heads at
 * the last step named at the line ends, so the head behind a phase change is readable
 * even when the palette repeats. Rows with an unknown step are left out by the caller.
 */
export function headScoresOverSteps(rows: readonly HeadRow[], title: string): TopLevelSpec {
  const values = rows.flatMap((r) => STEP_HEAD_METRICS.flatMap((metric) => {
    const value = r[metric];
    return value === null ? [] : [{ step: r.step, layer: r.layer, head: headName(r.layer, r.head), metric, value }];
  }));
  const heads = headOrder(rows.map((r) => [r.layer, r.head]));
  const x = { field: 'step', type: 'quantitative', title: 'step', scale: stepScale(rows) } as const;
  const y = { field: 'value', type: 'quantitative', title: 'score' } as const;
  const color = {
    field: 'head', type: 'nominal', sort: heads, title: 'head',
    scale: { scheme: heads.length <= 10 ? 'tableau10' : 'tableau20' },
    legend: { columns: Math.ceil(heads.length / 16), symbolType: 'stroke' },
  } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values },
    facet: { column: { field: 'metric', type: 'nominal', title: null, sort: [...STEP_HEAD_METRICS] } },
    spec: {
      width: 320,
      height: 220,
      layer: [
        {
          mark: { type: 'line', point: distinct(rows.map((r) => r.step)).length <= 30, strokeWidth: 1.5 },
          encoding: { x, y, color },
        },
        {
          transform: [
            { joinaggregate: [{ op: 'max', field: 'step', as: 'last_step' }], groupby: ['metric'] },
            { filter: 'datum.step === datum.last_step' },
            { window: [{ op: 'row_number', as: 'rank' }], sort: [{ field: 'value', order: 'descending' }], groupby: ['metric'] },
            { joinaggregate: [{ op: 'max', field: 'value', as: 'top' }], groupby: ['metric'] },
            // Heads near the floor sit on top of each other; only the standouts get names.
            { filter: 'datum.rank === 1 || (datum.rank <= 3 && datum.value >= datum.top / 2)' },
          ],
          mark: { type: 'text', align: 'left', dx: 6, fontWeight: 'bold' },
          encoding: { x, y, color, text: { field: 'head' } },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  };
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

/** Checkpoint scores that are drawn over steps, one facet column each. */
export const STEP_CHECKPOINT_METRICS = ['mean_loss', 'icl_score'] as const satisfies readonly (keyof CheckpointScoreRow)[];

/** mean_loss and icl_score over steps for one run, a line per prompt set. */
export function checkpointScoresOverSteps(rows: readonly CheckpointScoreRow[], title: string): TopLevelSpec {
  const values = rows.flatMap((r) => STEP_CHECKPOINT_METRICS.flatMap((metric) => {
    const value = r[metric];
    return value === null ? [] : [{ step: r.step, prompt_set: r.prompt_set, metric, value }];
  }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values },
    facet: { column: { field: 'metric', type: 'nominal', title: null, sort: [...STEP_CHECKPOINT_METRICS] } },
    spec: {
      width: 320,
      height: 200,
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'step', scale: stepScale(rows) },
        y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
        color: { field: 'prompt_set', type: 'nominal', title: 'prompt set', scale: { scheme: 'set2' } },
      },
    },
    resolve: { scale: { y: 'independent' } },
  };
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
