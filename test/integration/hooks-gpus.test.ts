// User hooks, early stopping and per-GPU worker placement, through the real CLI.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  envWithPath,
  fakeNvidiaSmi,
  runCli,
  smallMnistJob,
  tempDir,
  waitForCoordinatorPort,
  writeJob,
} from '../helpers/cli.js';

const dir = tempDir('ringtrain-hooks-');

describe('user hooks', () => {
  it('are called with the metrics, in order', async () => {
    const log = path.join(dir, 'hook-calls.jsonl');
    writeFileSync(
      path.join(dir, 'hooks.mjs'),
      ['onTrainBegin', 'onEpochEnd', 'onValidationEnd', 'onCheckpoint', 'onTrainEnd']
        .map(
          (name) =>
            `export async function ${name}(payload) { (await import('node:fs')).appendFileSync(${JSON.stringify(log)}, JSON.stringify({ hook: '${name}', payload }) + '\\n'); }`,
        )
        .join('\n'),
    );
    const job = writeJob(
      dir,
      smallMnistJob({
        data: { format: 'mnist', limit: 600 },
        hooks: './hooks.mjs',
        training: { epochs: 2, batchSize: 64 },
        checkpoint: { everySteps: 0, keep: 2 },
      }),
      'hooks-job.yaml',
    );
    const result = await runCli(['train', job, '--out', path.join(dir, 'hooks-run')]);
    expect(result.code, result.stderr).toBe(0);
    const calls = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { hook: string; payload: Record<string, unknown> });
    const names = calls.map((c) => c.hook);
    expect(names[0]).toBe('onTrainBegin');
    expect(names.at(-1)).toBe('onTrainEnd');
    expect(names.filter((n) => n === 'onEpochEnd')).toHaveLength(2);
    expect(names.filter((n) => n === 'onValidationEnd')).toHaveLength(2);
    expect(names.filter((n) => n === 'onCheckpoint').length).toBeGreaterThanOrEqual(2);
    const validation = calls.find((c) => c.hook === 'onValidationEnd')?.payload['metrics'] as Record<string, number>;
    expect(validation['validation.accuracy']).toBeGreaterThan(0);
    expect(validation['validation.loss']).toBeGreaterThan(0);
  });

  it('a hook that throws stops the run with a clear message', async () => {
    writeFileSync(
      path.join(dir, 'bad-hooks.mjs'),
      `export function onEpochEnd() { throw new Error('disk quota exceeded'); }\n`,
    );
    const job = writeJob(
      dir,
      smallMnistJob({ data: { format: 'mnist', limit: 600 }, hooks: './bad-hooks.mjs' }),
      'bad-hooks-job.yaml',
    );
    const result = await runCli(['train', job, '--out', path.join(dir, 'bad-hooks-run')]);
    expect(result.code).toBe(11);
    expect(result.stderr.trim()).toMatch(/^ringtrain: hook onEpochEnd in .*bad-hooks\.mjs threw: disk quota exceeded$/);
  });
});

describe('early stopping', () => {
  it('stops when the monitored metric stops improving and keeps the best checkpoint', async () => {
    // minDelta 10 makes every validation after the first a non-improvement.
    const job = writeJob(
      dir,
      smallMnistJob({
        data: { format: 'mnist', limit: 1000 },
        training: { epochs: 5, batchSize: 40 },
        validation: { everySteps: 4, earlyStopping: { monitor: 'validation.loss', patience: 2, minDelta: 10 } },
        checkpoint: { everySteps: 0, keep: 1 },
      }),
      'early-job.yaml',
    );
    const out = path.join(dir, 'early-run');
    const result = await runCli(['train', job, '--out', out]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/early stopping after step 12/);
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
      stoppedEarly: boolean;
      steps: number;
    };
    expect(summary.stoppedEarly).toBe(true);
    expect(summary.steps).toBe(12);
    // The best (first validation, step 4) is kept although keep: 1.
    const kept = readdirSync(path.join(out, 'checkpoints')).filter((n) => n.startsWith('step-'));
    expect(kept).toContain('step-000000004');
    expect(kept).toContain('step-000000012');
  });
});

describe('--gpus', () => {
  it('starts one worker per listed GPU with CUDA_VISIBLE_DEVICES set to it', async () => {
    const job = writeJob(dir, smallMnistJob({ data: { format: 'mnist', limit: 300 } }), 'gpus-job.yaml');
    const out = path.join(dir, 'gpus-run');
    // GPUs 0..3 as far as nvidia-smi says; the workers train on the job's cpu backend.
    const result = await runCli(['train', job, '--gpus', '0,2', '--out', out], {
      env: envWithPath(fakeNvidiaSmi(dir, 4)),
    });
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
      worldSize: number;
      workers: Array<{ rank: number; gpuIndex: number }>;
    };
    expect(summary.worldSize).toBe(2);
    expect(summary.workers.map((w) => w.gpuIndex).sort()).toEqual([0, 2]);
  });

  it('rejects a malformed GPU list', async () => {
    const result = await runCli(['train', '--gpus', '0,x', '--out', path.join(dir, 'never')]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/--gpus "0,x"/);
    expect(existsSync(path.join(dir, 'never'))).toBe(false);
  });
});

describe('worker --gpus (one process per GPU on a host, like torchrun)', () => {
  it('starts one worker per GPU, each with its own CUDA_VISIBLE_DEVICES', async () => {
    const job = writeJob(dir, smallMnistJob({ data: { format: 'mnist', limit: 300 } }), 'launcher-job.yaml');
    const out = path.join(dir, 'launcher-run');
    const coordinator = runCli([
      'coordinator',
      job,
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--expect-workers',
      '2',
      '--join-timeout',
      '300', // only bounds a failed start: the run begins as soon as both workers joined
      '--out',
      out,
    ]);
    const port = await waitForCoordinatorPort(out);
    const launcher = await runCli(
      ['worker', '--coordinator', `127.0.0.1:${port}`, '--host', '127.0.0.1', '--gpus', '1,3'],
      { env: envWithPath(fakeNvidiaSmi(dir, 4)) },
    );
    expect(launcher.code, launcher.stderr).toBe(0);
    expect((await coordinator).code).toBe(0);
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
      workers: Array<{ gpuIndex: number }>;
    };
    expect(summary.workers.map((w) => w.gpuIndex).sort()).toEqual([1, 3]);
  });
});
