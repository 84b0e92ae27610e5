/**
 * The deployment files parse and say what the docs say they say: the Kubernetes Indexed
 * Job runs the sweep with JOB_COMPLETIONS equal to its completions and a config the sweep
 * schema accepts; the compaction Job compacts the same folder; the Slurm script and the
 * cron script are valid bash (`bash -n`), with the array, the dependent compaction and
 * the flock where they should be.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { SweepConfigSchema } from '../pipeline/config.ts';
import { shardFromEnv } from '../pipeline/shard.ts';
import { tempDir } from './helpers/safetensors.ts';

const ROOT = new URL('../', import.meta.url);
const text = (path: string) => readFileSync(new URL(path, ROOT), 'utf8');

/**
 * Every YAML document of a file as plain objects; a parse error fails the test with its
 * message. Typed `any`: the tests walk Kubernetes objects by key and assert the values.
 */
function documents(path: string): Record<string, any>[] {
  return parseAllDocuments(text(path)).map((doc) => {
    expect(doc.errors.map((e) => e.message)).toEqual([]);
    return doc.toJS() as Record<string, any>;
  }).filter((d) => d !== null);
}

function bashSyntax(path: string): { status: number | null; stderr: string } {
  const result = spawnSync('bash', ['-n', new URL(path, ROOT).pathname], { encoding: 'utf8' });
  return { status: result.status, stderr: result.stderr };
}

describe('deploy/kubernetes/indexed-job.yaml', () => {
  const docs = documents('deploy/kubernetes/indexed-job.yaml');
  const job = docs.find((d) => d.kind === 'Job')!;
  const container = job?.spec.template.spec.containers[0];

  it('holds a ConfigMap, a PersistentVolumeClaim and an Indexed Job', () => {
    expect(docs.map((d) => `${d.apiVersion} ${d.kind} ${d.metadata.name}`)).toEqual([
      'v1 ConfigMap headsweep-config',
      'v1 PersistentVolumeClaim headsweep-data',
      'batch/v1 Job headsweep-sweep',
    ]);
    expect(job.spec).toMatchObject({ completionMode: 'Indexed', completions: 4, parallelism: 4 });
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
  });

  it('runs the sweep of the mounted config into the shared volume, exit 3 counting as done', () => {
    expect(container.command).toEqual(['/bin/sh', '-c']);
    expect(container.args).toHaveLength(1);
    expect(container.args[0]).toContain('npx headsweep sweep /config/nightly.yaml --out /data/out;');
    expect(container.args[0]).toContain('if [ "$rc" -eq 3 ]; then rc=0; fi; exit "$rc"');
    expect(container.volumeMounts).toEqual([
      { name: 'config', mountPath: '/config', readOnly: true },
      { name: 'data', mountPath: '/data' },
    ]);
    expect(job.spec.template.spec.volumes).toEqual([
      { name: 'config', configMap: { name: 'headsweep-config' } },
      { name: 'data', persistentVolumeClaim: { claimName: 'headsweep-data' } },
    ]);
    expect(docs[1].spec.accessModes).toEqual(['ReadWriteMany']);
    // A bad config (exit 2) fails the Job instead of being retried.
    expect(job.spec.podFailurePolicy.rules[0]).toEqual({
      action: 'FailJob', onExitCodes: { containerName: 'sweep', operator: 'In', values: [2] },
    });
  });

  it('gives every pod a shard: JOB_COMPLETIONS equals completions', () => {
    const env = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]));
    expect(env.JOB_COMPLETIONS).toBe(String(job.spec.completions));
    const shards = Array.from({ length: job.spec.completions }, (_, i) => shardFromEnv({ ...env, JOB_COMPLETION_INDEX: String(i) }));
    expect(shards).toEqual([0, 1, 2, 3].map((index) => ({ index, count: 4 })));
  });

  it('mounts a config the sweep schema accepts, writing where the pods write', () => {
    const config = SweepConfigSchema.parse(parseAllDocuments(docs[0].data['nightly.yaml'])[0].toJS());
    expect(config.output).toEqual({ dir: '/data/out', formats: ['arrow', 'parquet'] });
    expect(config.checkpoints.flatMap((c) => c.paths).every((p) => p.startsWith('/data/'))).toBe(true);
    expect(config.workers).toBe(Number(container.resources.limits.cpu));
  });
});

describe('deploy/kubernetes/compact-job.yaml', () => {
  it('compacts the sweep folder on the same volume, then writes the report beside it', () => {
    const [job] = documents('deploy/kubernetes/compact-job.yaml');
    expect(job.kind).toBe('Job');
    const container = job.spec.template.spec.containers[0];
    const script = container.args[0] as string;
    expect(script).toMatch(/^npx headsweep compact \/data\/out; rc=\$\?;/);
    expect(script).toContain('npx headsweep report /data/out --html /data/reports/nightly.html');
    expect(job.spec.template.spec.volumes).toEqual([{ name: 'data', persistentVolumeClaim: { claimName: 'headsweep-data' } }]);
  });
});

describe('deploy/slurm/sweep-array.sbatch', () => {
  const script = text('deploy/slurm/sweep-array.sbatch');

  it('is valid bash and executable', () => {
    expect(bashSyntax('deploy/slurm/sweep-array.sbatch')).toEqual({ status: 0, stderr: '' });
    expect(statSync(new URL('deploy/slurm/sweep-array.sbatch', ROOT)).mode & 0o111).not.toBe(0);
  });

  it('is a 4-task array whose first task queues the compaction after all of them', () => {
    expect(script).toMatch(/^#SBATCH --array=0-3$/m);
    expect(script).toContain('npx headsweep sweep "$config" --out "$out"');
    expect(script).toContain('sbatch --dependency="afterany:${SLURM_ARRAY_JOB_ID}"');
    expect(script).toContain(`--wrap="npx headsweep compact $(printf '%q' "$out")"`);
    // Task ids of --array=0-3 map onto shards 0..3 of 4.
    expect([0, 1, 2, 3].map((id) => shardFromEnv({ SLURM_ARRAY_TASK_ID: String(id), SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '0' })))
      .toEqual([0, 1, 2, 3].map((index) => ({ index, count: 4 })));
  });
});

describe('deploy/cron/nightly.sh', () => {
  const script = text('deploy/cron/nightly.sh');

  it('is valid bash and executable', () => {
    expect(bashSyntax('deploy/cron/nightly.sh')).toEqual({ status: 0, stderr: '' });
    expect(statSync(new URL('deploy/cron/nightly.sh', ROOT)).mode & 0o111).not.toBe(0);
  });

  it('locks, sweeps, compacts and reports, in that order', () => {
    const steps = ['flock -n 9', 'npx headsweep sweep', 'npx headsweep compact', 'npx headsweep report "$out" --html "$report"']
      .map((s) => script.indexOf(s));
    expect(steps.every((at) => at > 0)).toBe(true);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    expect(script).toContain('3) log "some checkpoints failed');
  });

  it('stops with its usage when an argument is missing', () => {
    const result = spawnSync('bash', [new URL('deploy/cron/nightly.sh', ROOT).pathname, 'only-a-config.yaml'], { encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('usage: nightly.sh <config.yaml> <output folder> <report.html>');
  });
});

describe('deploy/cron/nightly.sh, run from another folder', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());
  const REPO = new URL('../', import.meta.url).pathname;

  it('resolves relative arguments against the caller, passes the output to a config without one, and locks beside it', async () => {
    const caller = join(tmp.dir, 'caller');
    mkdirSync(caller);
    writeFileSync(join(caller, 'nightly.yaml'), [
      'name: cron',
      'checkpoints:',
      `  - {run: planted-2l, paths: ["${REPO}data/demo/planted-2l/*.safetensors"]}`,
      'prompt_sets:',
      '  - {name: rrt, kind: repeated_random, length: 12, repeats: 4, count: 2, seed: 0}',
      'metrics: [prefix_matching, previous_token, copying]',
      'workers: 1',
    ].join('\n'));
    const run = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn('bash', [join(REPO, 'deploy/cron/nightly.sh'), 'nightly.yaml', 'out', 'report.html'], { cwd: caller, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(join(caller, 'out', 'manifest.json'))).toBe(true);
    expect(existsSync(join(caller, 'out', 'compacted', 'heads.arrow'))).toBe(true);
    expect(readFileSync(join(caller, 'report.html'), 'utf8')).toMatch(/^<!doctype html>/i);
    expect(existsSync(join(caller, 'out.lock'))).toBe(true);
    expect(existsSync(join(REPO, 'out.lock'))).toBe(false);
  });
});
