// Checkpoints and --resume: a run stopped after a checkpoint and resumed ends with the same
// parameters as an uninterrupted run.
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { decodeTrainState } from '../../shared/train-state.js';
import { runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

function finalParams(runDir: string): Float32Array {
  const last =
    readdirSync(path.join(runDir, 'checkpoints'))
      .filter((n) => n.startsWith('step-'))
      .sort()
      .at(-1) ?? '';
  return decodeTrainState(readFileSync(path.join(runDir, 'checkpoints', last, 'state.bin')), last).params;
}

describe('resume from a checkpoint', () => {
  it('continues exactly where the stopped run left off', async () => {
    const dir = tempDir('ringtrain-resume-');
    // 1000 digits -> 800 train samples, batch 50 -> 16 steps an epoch, 2 epochs = 32 steps.
    const job = writeJob(
      dir,
      smallMnistJob({
        data: { format: 'mnist', limit: 1000 },
        training: { epochs: 2, batchSize: 50 },
        checkpoint: { everySteps: 5, keep: 2 },
      }),
    );
    const whole = path.join(dir, 'whole');
    const parts = path.join(dir, 'parts');
    const uninterrupted = await runCli(['train', job, '--out', whole]);
    expect(uninterrupted.code, uninterrupted.stderr).toBe(0);

    // Stop after 12 steps (mid-epoch; a checkpoint is written at the stop), then resume.
    const first = await runCli(['train', job, '--out', parts, '--max-steps', '12']);
    expect(first.code, first.stderr).toBe(0);
    const stoppedSummary = JSON.parse(readFileSync(path.join(parts, 'summary.json'), 'utf8')) as { steps: number };
    expect(stoppedSummary.steps).toBe(12);
    const resumed = await runCli(['train', '--resume', parts]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resuming at step 12/);

    const a = finalParams(whole);
    const b = finalParams(parts);
    expect(b.length).toBe(a.length);
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
    expect(maxDiff).toBeLessThan(1e-6);
    const summary = JSON.parse(readFileSync(path.join(parts, 'summary.json'), 'utf8')) as {
      steps: number;
      resumedFromStep: number;
    };
    expect(summary.steps).toBe(32);
    expect(summary.resumedFromStep).toBe(12);
    // The step log has every step once per attempt, and the resumed part picks up at step 12.
    const steps = readMetrics(path.join(parts, 'metrics.jsonl'))
      .filter((r) => r['type'] === 'step')
      .map((r) => r['step']);
    expect(steps).toEqual([
      ...Array.from({ length: 12 }, (_, i) => i),
      ...Array.from({ length: 20 }, (_, i) => 12 + i),
    ]);
  });
});
