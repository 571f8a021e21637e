// A worker that dies in the middle of an epoch-end validation: the run regroups, redoes that
// validation on the new generation, and ends like an undisturbed run, with every epoch's
// validation recorded once (metrics.jsonl, the epoch line, early stopping's input).
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

interface Summary {
  steps: number;
  recoveries: number;
  test: { accuracy: number; loss: number };
  validation: { accuracy: number; loss: number };
  events: Array<{ kind: string; step: number }>;
}

const dir = tempDir('ringtrain-validation-');
// 1600 train samples, batch 32 -> 50 steps an epoch; 3 epochs = 150 steps.
const STEPS_PER_EPOCH = 50;
const EPOCHS = 3;
const job = writeJob(
  dir,
  smallMnistJob({
    data: { format: 'mnist', limit: 2000 },
    backend: 'wasm',
    workers: { min: 1, max: 2 },
    restartWorkers: 1,
    training: { epochs: EPOCHS, batchSize: 32 },
    checkpoint: { everySteps: 1000, keep: 2, atEpochEnd: true },
    validation: { earlyStopping: { monitor: 'validation.loss', patience: 5 } },
    timeouts: { hangMs: 5000, collectiveMs: 20_000, replacementMs: 20_000 },
  }),
);

function summaryOf(out: string): Summary {
  return JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as Summary;
}

/** Early stopping's state after the last step, as the final checkpoint stored it, and the step marked best. */
function earlyStoppingOf(out: string): { best: number; wait: number; bestStep: number } {
  const checkpoints = path.join(out, 'checkpoints');
  const manifest = JSON.parse(
    readFileSync(
      path.join(checkpoints, `step-${String(STEPS_PER_EPOCH * EPOCHS).padStart(9, '0')}`, 'manifest.json'),
      'utf8',
    ),
  ) as { extra: { earlyStopping: { best: number; wait: number } } };
  const { step } = JSON.parse(readFileSync(path.join(checkpoints, 'best.json'), 'utf8')) as { step: number };
  return { ...manifest.extra.earlyStopping, bestStep: step };
}

function validationSteps(out: string): number[] {
  return readMetrics(path.join(out, 'metrics.jsonl'))
    .filter((r) => r['type'] === 'validation')
    .map((r) => Number(r['step']));
}

let baseline: { summary: Summary; stdout: string };

beforeAll(async () => {
  const out = path.join(dir, 'baseline');
  const result = await runCli(['train', job, '--workers', '2', '--out', out]);
  expect(result.code, result.stderr).toBe(0);
  baseline = { summary: summaryOf(out), stdout: result.stdout };
}, 300_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a worker killed during an epoch-end validation', () => {
  it('redoes that validation on the new generation and ends like an undisturbed run', async () => {
    const out = path.join(dir, 'killed');
    const token = path.join(dir, 'kill-once');
    writeFileSync(token, '');
    const killAfter = 2 * STEPS_PER_EPOCH; // the validation at the end of epoch 2
    const result = await runCli(['train', job, '--workers', '2', '--out', out], {
      env: { RINGTRAIN_FAULT_KILL_AT_EVAL: `validation@${killAfter}:${token}` },
      timeoutMs: 300_000,
    });
    expect(result.code, result.stderr).toBe(0);
    // The fault fired: one worker died in that validation, and the run regrouped.
    expect(existsSync(token)).toBe(false);
    const summary = summaryOf(out);
    expect(summary.events.some((e) => e.kind === 'failure' && e.step === killAfter)).toBe(true);
    expect(summary.recoveries).toBeGreaterThanOrEqual(1);
    // Every epoch's validation is recorded exactly once, the interrupted one included.
    const expected = Array.from({ length: EPOCHS }, (_, e) => (e + 1) * STEPS_PER_EPOCH);
    expect(validationSteps(out)).toEqual(expected);
    expect(validationSteps(path.join(dir, 'baseline'))).toEqual(expected);
    for (let epoch = 1; epoch <= EPOCHS; epoch++)
      expect(result.stdout).toMatch(new RegExp(`^epoch ${epoch}/${EPOCHS} .*validation loss`, 'm'));
    // Early stopping saw the same validations.
    const stopping = earlyStoppingOf(out);
    const undisturbed = earlyStoppingOf(path.join(dir, 'baseline'));
    expect(stopping.bestStep).toBe(undisturbed.bestStep);
    expect(stopping.wait).toBe(undisturbed.wait);
    expect(stopping.best).toBeCloseTo(undisturbed.best, 3);
    // The same training: the final figures match the undisturbed run's.
    expect(summary.steps).toBe(baseline.summary.steps);
    expect(summary.test.accuracy).toBeCloseTo(baseline.summary.test.accuracy, 2);
    expect(summary.test.loss).toBeCloseTo(baseline.summary.test.loss, 3);
    expect(summary.validation.loss).toBeCloseTo(baseline.summary.validation.loss, 3);
  }, 360_000); // a hang-catcher only: a regroup and a respawned worker on a loaded machine
});
