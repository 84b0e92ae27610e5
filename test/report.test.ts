/**
 * `headsweep report`: the reader on the synthetic sample output, then the real CLI
 * process writing the page and headless Debian Chromium opening it from file://.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headScoresOverSteps, phaseChange, renderSvg } from '../pipeline/report/charts.ts';
import { checkpointAt, readComposition, readSweepOutput, type HeadRow } from '../pipeline/report/read.ts';
import { HEAD_METRICS, type HeadMetric } from '../src/metrics/registry.ts';
import { BROKEN_CHECKPOINT, INDUCTION_HEAD, SAMPLE_RUNS, writeSampleOutput } from './helpers/sample-output.ts';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const REPO = join(import.meta.dirname, '..');
const run = promisify(execFile);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'headsweep-report-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** `node bin/headsweep.js report …`; resolves with the exit code and both streams. */
async function report(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/headsweep.js', 'report', ...args], { cwd: REPO });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('reading a sweep output folder', () => {
  it('loads every row with Int64 steps as numbers and null for unknown steps', async () => {
    const out = await writeSampleOutput(join(dir, 'read'));
    const output = await readSweepOutput(out);
    expect(output.name).toBe('sample-sweep');
    if (!output.heads.present || !output.checkpointScores.present || !output.errors.present) throw new Error('tables missing');
    // 5 steps × 2 prompt sets × 8 heads + 1 × 1 × 2.
    expect(output.heads.rows.length).toBe(82);
    expect(output.heads.files).toBe(6);
    expect(output.checkpointScores.rows.length).toBe(11);
    expect(output.errors.rows).toEqual([expect.objectContaining({ run: 'shortformer-1l', stage: 'load' })]);
    const induction = output.heads.rows.filter((r) => r.run === 'induction-2l' && r.layer === INDUCTION_HEAD.layer
      && r.head === INDUCTION_HEAD.head && r.prompt_set === 'repeated');
    expect(induction.map((r) => [r.step, r.prefix_matching, r.label])).toEqual([
      [0, 0.05, null], [250, 0.05, null], [500, 0.9, 'induction'], [750, 0.9, 'induction'], [1000, 0.9, 'induction'],
    ]);
    expect(output.heads.rows.filter((r) => r.run === 'shortformer-1l').map((r) => r.step)).toEqual([null, null]);
  });

  it('picks the last checkpoint by default, the one at --step, or none', async () => {
    const output = await readSweepOutput(join(dir, 'read'));
    if (!output.heads.present) throw new Error('heads missing');
    const rows = output.heads.rows.filter((r) => r.run === 'induction-2l');
    expect(checkpointAt(rows, undefined)).toEqual({ step: 1000, checkpoint: 'checkpoints/induction-2l/step1000.safetensors' });
    expect(checkpointAt(rows, 250)?.step).toBe(250);
    expect(checkpointAt(rows, 42)).toBeNull();
    const unknown = output.heads.rows.filter((r) => r.run === 'shortformer-1l');
    expect(checkpointAt(unknown, undefined)).toEqual({ step: null, checkpoint: 'checkpoints/shortformer-1l/stepfinal.safetensors' });
  });

  it('reads composition for one checkpoint only', async () => {
    const out = join(dir, 'read');
    const at = await readComposition(out, 'induction-2l', 500, 'checkpoints/induction-2l/step500.safetensors');
    if (!at.present) throw new Error('composition missing');
    // 4 source heads × 4 destination heads × Q, K, V, from the one file of step 500.
    expect(at.files).toBe(1);
    expect(at.rows.length).toBe(48);
    expect(at.rows.find((r) => r.kind === 'K' && r.src_head === 1 && r.dst_head === 2)?.score).toBe(0.6);
  });

  it('reads a Parquet-only output as it reads the Arrow files', async () => {
    const parquet = await writeSampleOutput(join(dir, 'parquet-only'), [], ['parquet']);
    expect(readdirSync(join(parquet, 'heads', 'run=induction-2l')).every((f) => f.endsWith('.parquet'))).toBe(true);
    const fromParquet = await readSweepOutput(parquet);
    const fromArrow = await readSweepOutput(join(dir, 'read'));
    if (!fromParquet.heads.present || !fromArrow.heads.present) throw new Error('heads missing');
    expect(fromParquet.heads.files).toBe(6);
    expect(fromParquet.heads.rows).toEqual(fromArrow.heads.rows);
    expect(fromParquet.checkpointScores).toEqual(fromArrow.checkpointScores);
    expect(fromParquet.errors).toEqual(fromArrow.errors);
    const at = await readComposition(parquet, 'induction-2l', 500, 'checkpoints/induction-2l/step500.safetensors');
    expect(at.present && at.rows.length).toBe(48);
  });

  it('exits 1 saying why when the folder holds no table files', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(join(empty, 'heads', 'run=x'), { recursive: true });
    const { code, stderr } = await report(empty, '--html', join(dir, 'empty.html'));
    expect(code).toBe(1);
    expect(stderr).toContain(`headsweep: ${empty}: no heads, checkpoint_scores or errors files (.arrow or .parquet) in it`);
    expect(existsSync(join(dir, 'empty.html'))).toBe(false);
  });

  it('exits 2 naming the steps that exist when no run has the --step asked for', async () => {
    const out = await writeSampleOutput(join(dir, 'steps'));
    const { code, stderr } = await report(out, '--html', join(dir, 'steps.html'), '--step', '42');
    expect(code).toBe(2);
    expect(stderr).toContain('headsweep: --step 42: no run has a checkpoint at that step '
      + '(induction-2l: steps 0, 250, 500, 750, 1000; shortformer-1l: steps unknown)');
    expect(existsSync(join(dir, 'steps.html'))).toBe(false);
  });

  it('exits 1 naming the folder when the output folder does not exist', async () => {
    const missing = join(dir, 'no-such-output');
    const { code, stderr } = await report(missing, '--html', join(dir, 'never.html'));
    expect(code).toBe(1);
    expect(stderr).toContain(`headsweep: ${missing}: no such sweep output folder`);
    expect(existsSync(join(dir, 'never.html'))).toBe(false);
  });
});

describe('head score charts', () => {
  const row = (step: number, head: number, prefix: number): HeadRow => ({
    ...(Object.fromEntries(HEAD_METRICS.map((m) => [m, null])) as Record<HeadMetric, null>),
    run: 'r', step, checkpoint: `c${step}`, prompt_set: 'p', layer: 0, head, label: null, prefix_matching: prefix,
  });

  it('spreads the names at the line ends so that near-equal heads do not overprint', async () => {
    // Three heads end within 0.01 of each other (2 px on the 220 px panel), a fourth far below.
    const rows = [0, 1, 2, 3].flatMap((h) => [row(0, h, 0.1), row(100, h, [0.5, 0.505, 0.51, 0.01][h])]);
    const svg = await renderSvg(headScoresOverSteps(rows, 'near-equal heads'));
    // The text marks of the plot (axis and legend labels are other roles).
    const names = [...svg.matchAll(/<text [^>]*aria-roledescription="text mark"[^>]*transform="translate\(([\d.-]+),([\d.-]+)\)"[^>]*>(L\dH\d)<\/text>/g)]
      .map((m) => ({ head: m[3], y: Number(m[2]) })).sort((a, b) => a.y - b.y);
    expect(names.map((n) => n.head)).toEqual(['L0H2', 'L0H1', 'L0H0']);
    expect(names[1].y - names[0].y).toBeGreaterThanOrEqual(12.9);
    expect(names[2].y - names[1].y).toBeGreaterThanOrEqual(12.9);
  });

  it('marks no phase change when no head is ever labelled induction', async () => {
    const rows = [0, 1].flatMap((h) => [row(0, h, 0.1), row(100, h, 0.2)]);
    expect(phaseChange(rows)).toBeNull();
    expect(await renderSvg(headScoresOverSteps(rows, 'no induction'))).not.toContain('mark-rule role-mark');
    const labelled = rows.map((r) => (r.step === 100 && r.head === 1 ? { ...r, label: 'induction' } : r));
    expect(phaseChange(labelled)).toEqual({ step: 100, heads: ['L0H1'] });
  });
});

const SKIPPED = HAVE_CHROMIUM ? '' : ` (skipped: ${CHROMIUM} is absent; apt-get install chromium)`;
describe.skipIf(!HAVE_CHROMIUM)(`the report page in headless Chromium${SKIPPED}`, () => {
  let browser: Browser;
  let full: string;
  let partial: string;

  beforeAll(async () => {
    const fullOut = await writeSampleOutput(join(dir, 'full'));
    const partialOut = await writeSampleOutput(join(dir, 'partial'), ['composition', 'checkpoint_scores']);
    full = join(dir, 'full.html');
    partial = join(dir, 'partial.html');
    const [a, b] = await Promise.all([
      report(fullOut, '--html', full),
      report(partialOut, '--html', partial, '--step', '500'),
      chromium.launch({
        executablePath: CHROMIUM,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
          '--disable-sync', '--no-first-run', '--disable-quic'],
      }).then((launched) => { browser = launched; }),
    ]);
    expect(a).toEqual({ code: 0, stdout: `wrote ${full} (7 charts)\n`, stderr: '' });
    expect(b).toEqual({ code: 0, stdout: `wrote ${partial} (4 charts)\n`, stderr: '' });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Opens a report and records every request, failed request and console error. */
  async function open(file: string): Promise<{ page: Page; requests: string[]; failed: string[]; errors: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const requests: string[] = [];
    const failed: string[] = [];
    const errors: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('requestfailed', (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`file://${file}`);
    return { page, requests, failed, errors };
  }

  /** Marks of one type in the chart's plot (legends and axes are other roles). */
  function marks(page: Page, chart: string, mark: 'line' | 'rect' | 'text'): Promise<number[]> {
    return page.locator(`figure[data-chart="${chart}"]`).evaluateAll(
      (figures, m) => figures.map((f) => f.querySelectorAll(`svg g.mark-${m}.role-mark > path, svg g.mark-${m}.role-mark > text`).length),
      mark,
    );
  }

  it('renders every chart, the classified heads and nothing from the network', async () => {
    const { page, requests, failed, errors } = await open(full);
    expect(errors).toEqual([]);
    expect(failed).toEqual([]);
    expect(requests).toEqual([`file://${full}`]);

    const [inductionRun, oneLayerRun] = SAMPLE_RUNS;
    const cells = (r: (typeof SAMPLE_RUNS)[number]) => r.nLayers * r.nHeads;

    // A line per head in each of the prefix_matching and copying facets, per prompt set.
    expect(await marks(page, 'head-lines', 'line')).toEqual([2 * cells(inductionRun), 2 * cells(inductionRun)]);
    const named = await page.locator('figure[data-chart="head-lines"] g.mark-text.role-mark text').allTextContents();
    expect(named.filter((t) => t === 'L1H2')).toHaveLength(4);
    await expect(page.locator('#head-lines').textContent()).resolves.toContain('run shortformer-1l: no checkpoint has a known step');

    // One heatmap cell per layer × head; the induction head's cell reads 0.90 at the last step.
    expect(await marks(page, 'prefix-heatmap', 'rect')).toEqual([cells(inductionRun), cells(inductionRun), cells(oneLayerRun)]);
    const repeated = page.locator('figure[data-chart="prefix-heatmap"][data-run="induction-2l"][data-prompt-set="repeated"]');
    expect(await repeated.locator('g.mark-text.role-mark text').allTextContents()).toContain('0.90');
    expect(await repeated.textContent()).toContain('step 1000');

    // Q, K and V facets of 4 source × 4 destination heads; the baseline is stated.
    expect(await marks(page, 'composition', 'rect')).toEqual([3 * 4 * 4]);
    expect(await page.locator('figure[data-chart="composition"]').textContent()).toContain('baseline 1/√d_model = 0.125');
    expect(await page.locator('#composition').textContent()).toContain('run shortformer-1l, unknown step');

    // mean_loss and icl_score, a line per prompt set.
    expect(await marks(page, 'checkpoint-lines', 'line')).toEqual([2 * 2]);

    const rows = await page.locator('table.classified-heads tbody tr').evaluateAll(
      (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].slice(0, 5).map((td) => td.textContent)),
    );
    expect(rows).toEqual([
      ['induction-2l', '1000', 'natural', 'L0H1', 'previous_token'],
      ['induction-2l', '1000', 'natural', 'L1H2', 'induction'],
      ['induction-2l', '1000', 'repeated', 'L0H1', 'previous_token'],
      ['induction-2l', '1000', 'repeated', 'L1H2', 'induction'],
      ['shortformer-1l', 'unknown', 'repeated', 'L0H1', 'previous_token'],
    ]);
    // The failed checkpoint's row as written, HTML-escaped rather than percent-encoded.
    expect(await page.locator('table.errors tbody td').allTextContents()).toEqual([
      'shortformer-1l', BROKEN_CHECKPOINT, 'load', `${BROKEN_CHECKPOINT}: header length 4096 exceeds the file size 1024`,
    ]);

    // Each score's axis spans the score's whole range, not the run's values (copying here runs 0 to 0.8).
    const headLines = page.locator('figure[data-chart="head-lines"][data-run="induction-2l"][data-prompt-set="repeated"]');
    expect(await headLines.locator('[aria-label^="Y-axis"]').evaluateAll((els) => els.map((e) => e.getAttribute('aria-label')))).toEqual([
      "Y-axis titled 'prefix_matching' for a linear scale with values from 0.0 to 1.0",
      "Y-axis titled 'copying' for a linear scale with values from −1.0 to 1.0",
    ]);
    // The phase change: L1H2 is first labelled induction at step 500. A dashed rule in each
    // panel, captioned once; on the loss charts one per prompt set.
    expect(await headLines.locator('g.mark-rule.role-mark line').count()).toBe(2);
    expect(await headLines.locator('g.mark-text.role-mark text').allTextContents()).toContain('L1H2: induction from step 500');
    const lossLines = page.locator('figure[data-chart="checkpoint-lines"][data-run="induction-2l"]');
    expect(await lossLines.locator('g.mark-rule.role-mark line').count()).toBe(2 * 2);
    expect(await lossLines.locator('g.mark-text.role-mark text').allTextContents()).toEqual([
      'induction from step 500 (natural)', 'induction from step 500 (repeated)',
      'induction from step 500 (natural)', 'induction from step 500 (repeated)',
    ]);

    // Inlined SVGs share one document: a repeated gradient or clip id would paint the wrong legend.
    const ids = await page.locator('[id]').evaluateAll((els) => els.map((e) => e.id));
    expect(new Set(ids).size).toBe(ids.length);

    const png = join(dir, 'report.png');
    await page.screenshot({ path: png, fullPage: true });
    const bytes = readFileSync(png);
    expect(bytes.subarray(1, 4).toString()).toBe('PNG');
    // IHDR: width and height, big-endian, at bytes 16 and 20.
    expect(bytes.readUInt32BE(16)).toBe(1400);
    expect(bytes.readUInt32BE(20)).toBeGreaterThan(2000);
    expect(statSync(png).size).toBeGreaterThan(50_000);
  });

  it('says which tables are missing and honours --step', async () => {
    const { page, failed, errors } = await open(partial);
    expect(errors).toEqual([]);
    expect(failed).toEqual([]);
    for (const [section, folder] of [['composition', 'composition'], ['checkpoint-lines', 'checkpoint_scores']]) {
      expect(await page.locator(`#${section}`).textContent())
        .toContain(`No ${join(dir, 'partial', folder)} folder in this output`);
      expect(await page.locator(`figure[data-chart="${section}"]`).count()).toBe(0);
    }
    expect(await page.locator('#prefix-heatmap').textContent()).toContain('run shortformer-1l has no checkpoint at step 500 (its steps: unknown)');
    expect(await marks(page, 'prefix-heatmap', 'rect')).toEqual([8, 8]);
    expect(await page.locator('table.classified-heads tbody tr').count()).toBe(4);
    expect(await page.locator('table.classified-heads tbody td:nth-child(2)').allTextContents()).toEqual(['500', '500', '500', '500']);
  });
});
