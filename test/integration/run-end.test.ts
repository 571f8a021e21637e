// How runs end and continue, through the real CLI: extending a finished run with more epochs
// (the steps already run stay exactly as they were), refused resumes that name the setting,
// restoreBestWeights and model-best/, summary.json's status for every way a run ends,
// --learning-rate, and the batch-size guard.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { decodeTrainState } from '../../shared/train-state.js';
import { runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';
import { startCli, waitForSteps } from '../helpers/run-watch.js';

const dir = tempDir('ringtrain-run-end-');

interface Summary {
  status: string;
  steps: number;
  plannedSteps: number;
  modelStep: number | null;
  bestStep: number | null;
  modelBestStep: number | null;
  restoredBestWeights: boolean;
  globalBatchSize: number;
  error?: string;
  validation: Record<string, number>;
}

function summaryOf(run: string): Summary {
  return JSON.parse(readFileSync(path.join(run, 'summary.json'), 'utf8')) as Summary;
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1) ?? '';
}

/** Step losses by step number, as metrics.jsonl logged them. */
function stepLosses(run: string): Map<number, number> {
  const losses = new Map<number, number>();
  for (const r of readMetrics(path.join(run, 'metrics.jsonl')))
    if (r['type'] === 'step') losses.set(Number(r['step']), Number(r['loss']));
  return losses;
}

// 300 digits -> 240 train samples; batch 60 -> 4 steps an epoch.
const STEPS_PER_EPOCH = 4;
const baseJob = (overrides: Record<string, unknown> = {}): Record<string, unknown> =>
  smallMnistJob({
    data: { format: 'mnist', limit: 300, split: { validation: 0.1, test: 0.1 } },
    training: { epochs: 1, batchSize: 60 },
    ...overrides,
  });

describe('train --resume RUN --epochs N', () => {
  it('continues a finished run from its last step; the first epoch is unchanged and the run ends completed', async () => {
    const job = writeJob(dir, baseJob(), 'extend.yaml');
    const extended = path.join(dir, 'extended');
    const whole = path.join(dir, 'whole');
    const first = await runCli(['train', job, '--out', extended]);
    expect(first.code, first.stderr).toBe(0);
    expect(summaryOf(extended).status).toBe('completed');
    const firstEpoch = stepLosses(extended);
    expect([...firstEpoch.keys()]).toEqual([0, 1, 2, 3]);

    const resumed = await runCli(['train', '--resume', extended, '--epochs', '2']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resuming at step 4/);
    expect(lastLine(resumed.stdout)).toMatch(/^ringtrain: completed at step 8 of 8; model\/ is step 8/);
    const summary = summaryOf(extended);
    expect(summary).toMatchObject({ status: 'completed', steps: 8, plannedSteps: 8, modelStep: 8 });
    // The next --resume must see the new length: job.yaml records it.
    expect(readFileSync(path.join(extended, 'job.yaml'), 'utf8')).toMatch(/epochs: 2/);

    const uninterrupted = await runCli(['train', job, '--out', whole, '--epochs', '2']);
    expect(uninterrupted.code, uninterrupted.stderr).toBe(0);
    const after = stepLosses(extended);
    const reference = stepLosses(whole);
    // Every step once; the first epoch's losses are the uninterrupted run's, bit for bit.
    expect([...after.keys()]).toEqual([...reference.keys()]);
    for (let step = 0; step < STEPS_PER_EPOCH; step++) {
      expect(after.get(step)).toBe(firstEpoch.get(step));
      expect(after.get(step)).toBe(reference.get(step));
    }
    // The added epoch continues the same trajectory (resume restores the whole state).
    for (let step = STEPS_PER_EPOCH; step < 2 * STEPS_PER_EPOCH; step++)
      expect(after.get(step)).toBeCloseTo(reference.get(step) ?? Number.NaN, 5);
  });

  it('refuses a change that alters the trajectory so far, naming the setting, and leaves the run as it was', async () => {
    const run = path.join(dir, 'refused');
    mkdirSync(run);
    writeJob(run, baseJob(), 'job.yaml');
    const before = readFileSync(path.join(run, 'job.yaml'), 'utf8');
    const lr = await runCli(['train', '--resume', run, '--epochs', '3', '--learning-rate', '0.1']);
    expect(lr.code).toBe(2);
    expect(lr.stderr.trim()).toMatch(
      /^ringtrain: .*refused\/job\.yaml: optimizer\.learningRate: 0\.003 in this run, 0\.1 now \(it alters the trajectory so far\); on resume only run-length settings may change/,
    );
    const batch = await runCli(['train', '--resume', run, '--batch-size', '30']);
    expect(batch.code).toBe(2);
    expect(batch.stderr.trim()).toMatch(/job\.yaml: training\.batchSize: 60 in this run, 30 now/);
    expect(readFileSync(path.join(run, 'job.yaml'), 'utf8')).toBe(before);
    expect(readdirSync(run)).toEqual(['job.yaml']);
  });

  it('refuses other epochs for a cosine schedule, whose learning rates depend on the total', async () => {
    const run = path.join(dir, 'cosine');
    mkdirSync(run);
    writeJob(run, baseJob({ schedule: { type: 'cosine' } }), 'job.yaml');
    const result = await runCli(['train', '--resume', run, '--epochs', '3']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(
      /job\.yaml: training\.epochs: 1 in this run, 3 now \(a cosine schedule \(schedule\.type: cosine\) sets every step's learning rate from the total step count/,
    );
    expect(readdirSync(run)).toEqual(['job.yaml']);
  });
});

describe('best weights', () => {
  // Validation after every step, and early stopping with mode max on validation.loss: the loss
  // falls, so the first validation is the best and the second stops the run. Best (step 1) and
  // last (step 2) then differ on every machine, without depending on how noisy training is.
  const esJob = (restoreBestWeights: boolean): Record<string, unknown> =>
    baseJob({
      training: { epochs: 3, batchSize: 60 },
      workers: 1,
      checkpoint: { everySteps: 0, keep: 1 },
      validation: {
        everySteps: 1,
        earlyStopping: { monitor: 'validation.loss', mode: 'max', patience: 1, restoreBestWeights },
      },
    });

  it('restoreBestWeights exports the best step and measures it; without it model-best/ is exported beside model/', async () => {
    const plain = path.join(dir, 'es-plain');
    const restored = path.join(dir, 'es-restored');
    const a = await runCli(['train', writeJob(dir, esJob(false), 'es-plain.yaml'), '--out', plain]);
    expect(a.code, a.stderr).toBe(0);
    const b = await runCli(['train', writeJob(dir, esJob(true), 'es-restored.yaml'), '--out', restored]);
    expect(b.code, b.stderr).toBe(0);

    expect(summaryOf(plain)).toMatchObject({
      status: 'early-stopped',
      steps: 2,
      modelStep: 2,
      bestStep: 1,
      modelBestStep: 1,
      restoredBestWeights: false,
    });
    expect(lastLine(a.stdout)).toMatch(
      /^ringtrain: early-stopped at step 2 of 12; model\/ is step 2, model-best\/ step 1/,
    );
    expect(summaryOf(restored)).toMatchObject({
      status: 'early-stopped',
      steps: 2,
      modelStep: 1,
      bestStep: 1,
      modelBestStep: null,
      restoredBestWeights: true,
    });
    expect(existsSync(path.join(restored, 'model-best'))).toBe(false);

    const weights = (run: string, model: string): Buffer => readFileSync(path.join(run, model, 'weights.bin'));
    // The same job up to restoreBestWeights: model/ of the restoring run is the best step's
    // parameters, the very bytes the other run exported as model-best/, and not its last step.
    expect(weights(restored, 'model').equals(weights(plain, 'model-best'))).toBe(true);
    expect(weights(plain, 'model').equals(weights(plain, 'model-best'))).toBe(false);
    // ... and they are the best checkpoint's parameters, float for float.
    const best = path.join(restored, 'checkpoints', 'step-000000001');
    const params = decodeTrainState(readFileSync(path.join(best, 'state.bin')), best).params;
    const exported = weights(restored, 'model');
    expect([...new Float32Array(exported.buffer, exported.byteOffset, exported.byteLength / 4)]).toEqual([...params]);
    // The final metrics are of the best step: its validation is the one its checkpoint recorded.
    const manifest = JSON.parse(readFileSync(path.join(best, 'manifest.json'), 'utf8')) as {
      metrics: Record<string, number>;
    };
    expect(summaryOf(restored).validation['loss']).toBeCloseTo(manifest.metrics['validation.loss'] ?? Number.NaN, 6);
    expect(summaryOf(plain).validation['loss']).not.toBeCloseTo(manifest.metrics['validation.loss'] ?? 0, 6);
  });
});

describe('status of every way a run ends', () => {
  it('--max-steps: stopped-at-max-steps, model/ of that step; --learning-rate overrides the job', async () => {
    const run = path.join(dir, 'max-steps');
    const job = writeJob(dir, baseJob({ workers: 1 }), 'max-steps.yaml');
    const result = await runCli(['train', job, '--out', run, '--max-steps', '3', '--learning-rate', '0.0125']);
    expect(result.code, result.stderr).toBe(0);
    expect(summaryOf(run)).toMatchObject({ status: 'stopped-at-max-steps', steps: 3, plannedSteps: 4, modelStep: 3 });
    expect(lastLine(result.stdout)).toMatch(
      /^ringtrain: stopped-at-max-steps at step 3 of 4; model\/ is step 3; continue with: ringtrain train --resume /,
    );
    const rates = readMetrics(path.join(run, 'metrics.jsonl'))
      .filter((r) => r['type'] === 'step')
      .map((r) => r['learningRate']);
    expect(rates).toEqual([0.0125, 0.0125, 0.0125]);
    expect(readFileSync(path.join(run, 'job.yaml'), 'utf8')).toMatch(/learningRate: 0\.0125/);
  });

  it('a signal: preempted, with the step it stopped at', async () => {
    const run = path.join(dir, 'preempted');
    const job = writeJob(dir, baseJob({ workers: 1, training: { epochs: 500, batchSize: 60 } }), 'preempt.yaml');
    const started = startCli(['train', job, '--out', run]);
    await waitForSteps(run, 2);
    started.child.kill('SIGTERM');
    const result = await started.done;
    expect(result.code).toBe(143);
    const step = Number(/stopped by SIGTERM after step (\d+)/.exec(result.stderr)?.[1]);
    expect(summaryOf(run)).toMatchObject({ status: 'preempted', steps: step, plannedSteps: 2000, modelStep: null });
  });

  it('an error: failed, with the error line', async () => {
    writeFileSync(
      path.join(dir, 'throwing-hooks.mjs'),
      `export function onEpochEnd() { throw new Error('no room'); }\n`,
    );
    const run = path.join(dir, 'failed');
    const job = writeJob(dir, baseJob({ workers: 1, hooks: './throwing-hooks.mjs' }), 'failing.yaml');
    const result = await runCli(['train', job, '--out', run]);
    expect(result.code).toBe(11);
    const summary = summaryOf(run);
    expect(summary.status).toBe('failed');
    expect(summary.error).toBe(lastLine(result.stderr));
    expect(summary.error).toMatch(/^ringtrain: hook onEpochEnd in .*throwing-hooks\.mjs threw: no room$/);
  });
});

describe('flags', () => {
  it('a global batch larger than the training split is refused, and nothing is left behind', async () => {
    const run = path.join(dir, 'big-batch');
    const job = writeJob(dir, baseJob(), 'big-batch.yaml');
    const result = await runCli(['train', job, '--out', run, '--batch-size', '241']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(
      /^ringtrain: .*big-batch\.yaml: training\.batchSize: 241 is larger than the training split \(240 samples\); use at most 240/,
    );
    expect(existsSync(run)).toBe(false);
  });

  it('--learning-rate must be a positive number', async () => {
    const result = await runCli(['train', '--learning-rate', '0']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(/^ringtrain: .*--learning-rate must be a positive number, got "0"/);
  });
});
