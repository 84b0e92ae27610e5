/**
 * Renders the README's phase-change figure from a sweep of the bundled series:
 *   npm run sweep && npx tsx pipeline/scripts/readme-plot.ts out/demo docs/phase-change.svg
 * Each head's prefix_matching and copying over training steps, for attn-only-2l,
 * gelu-2l and attn-only-1l on the repeated-random prompt set, through the report's own chart spec.
 */
import { writeFileSync } from 'node:fs';
import { headScoresOverSteps, renderSvg } from '../report/charts.ts';
import { readSweepOutput } from '../report/read.ts';

const [outDir = 'out/demo', target = 'docs/phase-change.svg'] = process.argv.slice(2);
const output = await readSweepOutput(outDir);
if (!output.heads.present) throw new Error(`${outDir}: no heads table`);
const heads = output.heads.rows;
const svgs: string[] = [];
for (const run of ['attn-only-2l', 'gelu-2l', 'attn-only-1l']) {
  const rows = heads.filter((r) => r.run === run && r.prompt_set === 'rrt' && r.step !== null);
  svgs.push(await renderSvg(headScoresOverSteps(rows, `${run}: per-head scores over training (repeated random tokens)`)));
}
// Two charts stacked in one SVG document.
const sizes = svgs.map((s) => /width="([\d.]+)" height="([\d.]+)"/.exec(s)!.slice(1).map(Number));
const width = Math.max(...sizes.map(([w]) => w));
let y = 0;
const parts = svgs.map((s, i) => {
  const part = `<g transform="translate(0,${y})">${s.replace(/^<svg[^>]*>/, '').replace(/<\/svg>\s*$/, '')}</g>`;
  y += sizes[i][1];
  return part;
});
writeFileSync(target, `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}">${parts.join('')}</svg>\n`);
console.log(`wrote ${target}`);
