/**
 * The report page: one self-contained HTML file with every chart inlined as SVG and a
 * Content-Security-Policy that forbids any request, so it reads the same offline, from
 * a mail attachment or a CI artifact. Each figure carries `data-chart`, `data-run` and
 * (where it applies) `data-prompt-set`, so tests and scripts can find a chart.
 */
import type { TopLevelSpec } from 'vega-lite';
import { HeadsweepError } from '../../src/errors.ts';
import { CHECKPOINT_METRICS, HEAD_METRICS, type CheckpointMetric } from '../../src/metrics/registry.ts';
import {
  checkpointScoresOverSteps, compositionHeatmap, headHeatmap, headName, headScoresOverSteps, phaseChange, renderSvg, scoreDomain,
  type PhaseChange,
} from './charts.ts';
import { checkpointAt, readComposition, type HeadRow, type Loaded, type SweepOutput } from './read.ts';

export interface ReportOptions {
  /** Step the per-step sections show; default: each run's last checkpoint. */
  step?: number;
}

export interface Report {
  html: string;
  /** Number of charts rendered. */
  charts: number;
}

export type ChartKind = 'head-lines' | 'prefix-heatmap' | 'composition' | 'checkpoint-lines';

interface Shown {
  step: number | null;
  checkpoint: string;
}

export async function buildReport(output: SweepOutput, options: ReportOptions = {}): Promise<Report> {
  const { heads, checkpointScores } = output;
  const headRows = heads.present ? heads.rows : [];
  const scoreRows = checkpointScores.present ? checkpointScores.rows : [];
  const runs = [...new Set([...headRows, ...scoreRows].map((r) => r.run))].sort();

  // Per run, the checkpoint the single-step sections show, or why there is none.
  const shown = new Map<string, Shown | string>();
  const runRows = (run: string) => [...headRows, ...scoreRows].filter((r) => r.run === run);
  for (const run of runs) {
    const at = checkpointAt(runRows(run), options.step);
    shown.set(run, at ?? `run ${run} has no checkpoint at step ${options.step} (its steps: ${stepList(runRows(run))})`);
  }
  // A page where no run can show the step asked for is a mistake in the command, not a report.
  if (options.step !== undefined && runs.length > 0 && runs.every((run) => typeof shown.get(run) === 'string')) {
    throw new HeadsweepError(
      `--step ${options.step}: no run has a checkpoint at that step (${runs.map((run) => `${run}: steps ${stepList(runRows(run))}`).join('; ')})`,
      { stage: 'config', key: 'step' },
    );
  }
  // Per run and prompt set, the step where a head first crossed the induction rule.
  const phases = new Map<string, PhaseChange>();
  for (const run of runs) {
    for (const promptSet of sorted(headRows.filter((r) => r.run === run).map((r) => r.prompt_set))) {
      const phase = phaseChange(headRows.filter((r) => r.run === run && r.prompt_set === promptSet));
      if (phase !== null) phases.set(`${run}\u0000${promptSet}`, phase);
    }
  }

  let charts = 0;
  const figure = async (kind: ChartKind, spec: TopLevelSpec, run: string, promptSet?: string): Promise<string> => {
    charts++;
    const ps = promptSet === undefined ? '' : ` data-prompt-set="${escapeHtml(promptSet)}"`;
    return `<figure class="chart" data-chart="${kind}" data-run="${escapeHtml(run)}"${ps}>${await renderSvg(spec)}</figure>`;
  };

  const sections: Section[] = [];

  // Head scores over training steps.
  sections.push(await section('head-lines', 'Head scores over training', heads, async (rows) => {
    const parts = [note('One line per head, each score on its full range; the heads that stand out at the last step are named at the line ends. '
      + 'copying is a weight score, the same for every prompt set. The dashed line marks the phase change: '
      + 'the first step at which a head is labelled induction.')];
    for (const run of runs) {
      const known = rows.filter((r) => r.run === run && r.step !== null);
      if (known.length === 0) {
        parts.push(note(`run ${run}: no checkpoint has a known step, so there is nothing to draw over training.`));
        continue;
      }
      for (const promptSet of sorted(known.map((r) => r.prompt_set))) {
        const title = `${run} · ${promptSet}`;
        const phase = phases.get(`${run}\u0000${promptSet}`) ?? null;
        parts.push(await figure('head-lines', headScoresOverSteps(known.filter((r) => r.prompt_set === promptSet), title, phase), run, promptSet));
      }
    }
    return parts;
  }));

  // prefix_matching by layer and head at one step.
  sections.push(await section('prefix-heatmap', 'Prefix matching by layer and head', heads, async (rows) => {
    const parts: string[] = [];
    for (const run of runs) {
      const at = shown.get(run)!;
      if (typeof at === 'string') { parts.push(note(at)); continue; }
      const atRows = rows.filter((r) => r.run === run && r.checkpoint === at.checkpoint);
      for (const promptSet of sorted(atRows.map((r) => r.prompt_set))) {
        const title = `${run} · ${promptSet} · ${stepName(at)}`;
        parts.push(await figure('prefix-heatmap', headHeatmap(atRows.filter((r) => r.prompt_set === promptSet), 'prefix_matching', title), run, promptSet));
      }
    }
    return parts;
  }));

  // Composition between heads at one step, read per checkpoint (see readComposition).
  const composition: string[] = [];
  let compositionMissing: string | null = null;
  for (const run of runs) {
    const at = shown.get(run)!;
    if (typeof at === 'string') { composition.push(note(at)); continue; }
    const loaded = await readComposition(output.root, run, at.step, at.checkpoint);
    if (!loaded.present) { compositionMissing = loaded.folder; break; }
    if (loaded.rows.length === 0) {
      composition.push(note(`run ${run}, ${stepName(at)}: no composition rows (a one-layer model has no pairs of layers).`));
      continue;
    }
    composition.push(await figure('composition', compositionHeatmap(loaded.rows, `${run} · ${stepName(at)}`), run));
  }
  sections.push({
    id: 'composition',
    title: 'Composition between heads',
    body: compositionMissing === null ? composition.join('\n') : missing(compositionMissing),
  });

  // mean_loss and icl_score over steps.
  sections.push(await section('checkpoint-lines', 'In-context learning score and loss over training', checkpointScores, async (rows) => {
    const parts = [note('icl_score = loss late in the context minus loss early in it: negative means the model uses its context. '
      + 'Every run is drawn on the same axes; dashed lines mark each prompt set\'s phase change.')];
    // The scores some run has, each on one span over all runs, so runs compare at a glance.
    const metrics = CHECKPOINT_METRICS.filter((m) => rows.some((r) => r[m] !== null));
    const domains: Partial<Record<CheckpointMetric, [number, number]>> = Object.fromEntries(metrics.map((m) => [
      m, scoreDomain(m, rows.flatMap((r) => (r.step === null || r[m] === null ? [] : [r[m]!]))),
    ]));
    for (const run of runs) {
      const known = rows.filter((r) => r.run === run && r.step !== null);
      if (known.length === 0) {
        parts.push(note(`run ${run}: no checkpoint has a known step, so there is nothing to draw over training.`));
        continue;
      }
      const runPhases = sorted(known.map((r) => r.prompt_set)).flatMap((promptSet) => {
        const phase = phases.get(`${run}\u0000${promptSet}`);
        return phase === undefined ? [] : [{ prompt_set: promptSet, phase }];
      });
      parts.push(await figure('checkpoint-lines', checkpointScoresOverSteps(known, run, metrics, domains, runPhases), run));
    }
    return parts;
  }));

  // Classified heads at one step.
  sections.push(await section('classified', 'Classified heads', heads, async (rows) => {
    const labelled = rows.filter((r) => {
      const at = shown.get(r.run)!;
      return r.label !== null && typeof at !== 'string' && r.checkpoint === at.checkpoint;
    });
    if (labelled.length === 0) return [note('No head carries a label at the steps shown.')];
    labelled.sort((a, b) => cmp(a.run, b.run) || cmp(a.prompt_set, b.prompt_set) || a.layer - b.layer || a.head - b.head);
    return [classifiedTable(labelled)];
  }));

  // Failed checkpoints.
  const errors = output.errors.present ? output.errors.rows : [];
  sections.push({
    id: 'errors',
    title: 'Failed checkpoints',
    body: errors.length === 0
      ? note('No checkpoint failed.')
      : table(['run', 'path', 'stage', 'message'], errors.map((e) => [e.run, e.path, e.stage, e.message].map(escapeHtml)), 'errors'),
  });

  return { html: page(output, runs, shown, sections), charts };
}

interface Section {
  id: string;
  title: string;
  body: string;
}

/** A section over one table: its parts, or a note that the table's folder is missing. */
async function section<R>(
  id: string,
  title: string,
  loaded: Loaded<R>,
  parts: (rows: R[]) => Promise<string[]>,
): Promise<Section> {
  return { id, title, body: loaded.present ? (await parts(loaded.rows)).join('\n') : missing(loaded.folder) };
}

/** The labelled heads with every per-head score, which the labels are decided on. */
function classifiedTable(rows: HeadRow[]): string {
  return table(
    ['run', 'step', 'prompt set', 'head', 'label', ...HEAD_METRICS],
    rows.map((r) => [
      escapeHtml(r.run), r.step === null ? 'unknown' : String(r.step), escapeHtml(r.prompt_set),
      headName(r.layer, r.head), `<strong>${escapeHtml(r.label!)}</strong>`,
      ...HEAD_METRICS.map((m) => (r[m] === null ? '—' : r[m]!.toFixed(3))),
    ]),
    'classified-heads',
  );
}

/** cells are HTML already. */
function table(header: string[], cells: string[][], className = ''): string {
  const head = `<tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>`;
  const body = cells.map((row) => `<tr>${row.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('\n');
  return `<table class="${className}"><thead>${head}</thead><tbody>\n${body}\n</tbody></table>`;
}

function page(output: SweepOutput, runs: string[], shown: Map<string, Shown | string>, sections: Section[]): string {
  const name = output.name ?? output.root;
  const runList = runs.map((run) => {
    const at = shown.get(run)!;
    return `<li><strong>${escapeHtml(run)}</strong>: ${typeof at === 'string' ? escapeHtml(at) : `shown at ${escapeHtml(stepName(at))}`}</li>`;
  }).join('');
  const toc = sections.map((s) => `<li><a href="#${s.id}">${escapeHtml(s.title)}</a></li>`).join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>headsweep report: ${escapeHtml(name)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>headsweep report: ${escapeHtml(name)}</h1>
<p class="note">From <code>${escapeHtml(output.root)}</code>. ${runs.length} run${runs.length === 1 ? '' : 's'}:</p>
<ul>${runList}</ul>
<nav><ol>${toc}</ol></nav>
</header>
${sections.map((s) => `<section id="${s.id}">\n<h2>${escapeHtml(s.title)}</h2>\n${s.body}\n</section>`).join('\n')}
</body>
</html>
`;
}

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0 auto; padding: 1.5rem 2rem; max-width: 1400px; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .75rem; padding-bottom: .25rem; border-bottom: 1px solid #ddd; }
.note { color: #555; margin: .25rem 0 .75rem; }
nav ol { display: flex; flex-wrap: wrap; gap: .25rem 1.5rem; padding-left: 1.2rem; }
figure.chart { margin: 0 0 1.25rem; overflow-x: auto; }
figure.chart svg { display: block; max-width: none; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e5e5e5; text-align: left; }
th { background: #f6f6f6; }
code { font-size: .9em; }
`;

function missing(folder: string): string {
  return note(`No <code>${escapeHtml(folder)}</code> folder in this output: the sweep did not write this table.`, true);
}

function note(text: string, html = false): string {
  return `<p class="note">${html ? text : escapeHtml(text)}</p>`;
}

function stepName(at: Shown): string {
  return at.step === null ? `unknown step (${at.checkpoint})` : `step ${at.step}`;
}

function stepList(rows: readonly { step: number | null }[]): string {
  const steps = [...new Set(rows.map((r) => r.step))].sort((a, b) => (a ?? -1) - (b ?? -1));
  return steps.map((s) => (s === null ? 'unknown' : String(s))).join(', ');
}

function sorted(values: readonly string[]): string[] {
  return [...new Set(values)].sort();
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
