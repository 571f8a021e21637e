// Which job changes a resumed run accepts (run-length settings) and which it refuses (anything
// that alters the steps already run), and how a run's end is named.
import { describe, expect, it } from 'vitest';
import { statusOf } from '../../coordinator/run/run-status.js';
import { describeChange, trajectoryChanges } from '../../shared/job-identity.js';
import { jobHash, resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';

function job(overrides: Record<string, unknown> = {}): Job {
  return resolveJob(
    {
      name: 'identity',
      data: { format: 'xor', samples: 8 },
      model: { input: [2], layers: [{ type: 'dense', units: 1, activation: 'sigmoid' }] },
      loss: 'binaryCrossentropy',
      optimizer: { type: 'sgd', learningRate: 0.1 },
      training: { epochs: 2, batchSize: 4 },
      ...overrides,
    },
    'test job',
  );
}

describe('trajectoryChanges', () => {
  it('accepts run-length settings: epochs, max steps, checkpoint and validation cadence, early stopping', () => {
    const longer = job({
      name: 'renamed',
      training: { epochs: 9, batchSize: 4, maxSteps: 30 },
      checkpoint: { everySteps: 3, keep: 1 },
      validation: { everySteps: 2, earlyStopping: { patience: 4, restoreBestWeights: true } },
      workers: 3,
      timeouts: { hangMs: 20_000 },
      http: '0.0.0.0:9464',
    });
    expect(trajectoryChanges(job(), longer)).toEqual([]);
    expect(jobHash(longer)).toBe(jobHash(job()));
  });

  it('names every setting that alters the trajectory so far', () => {
    const other = job({
      seed: 8,
      optimizer: { type: 'sgd', learningRate: 0.2 },
      training: { epochs: 2, batchSize: 2 },
      model: { input: [2], layers: [{ type: 'dense', units: 1, activation: 'sigmoid' }], syncBatchNorm: true },
    });
    expect(trajectoryChanges(job(), other).map((c) => c.setting)).toEqual([
      'model.syncBatchNorm',
      'optimizer.learningRate',
      'seed',
      'training.batchSize',
    ]);
    expect(jobHash(other)).not.toBe(jobHash(job()));
  });

  it('refuses other epochs under a cosine schedule, naming training.epochs and schedule.type', () => {
    const cosine = job({ schedule: { type: 'cosine' } });
    const longer = job({ schedule: { type: 'cosine' }, training: { epochs: 4, batchSize: 4 } });
    const changes = trajectoryChanges(cosine, longer);
    expect(changes.map((c) => c.setting)).toEqual(['training.epochs']);
    const [change] = changes;
    if (change === undefined) throw new Error('no change');
    expect(describeChange(change, cosine)).toMatch(
      /^training\.epochs: 2 in this run, 4 now \(.*schedule\.type: cosine/,
    );
    // A schedule that does not depend on the total (step decay) extends freely.
    expect(
      trajectoryChanges(
        job({ schedule: { type: 'step' } }),
        job({ schedule: { type: 'step' }, training: { epochs: 4, batchSize: 4 } }),
      ),
    ).toEqual([]);
  });
});

describe('statusOf', () => {
  const end = { finalStep: 16, plannedSteps: 16, stoppedEarly: false, preempted: false };
  it('names each way a run ends', () => {
    expect(statusOf(end)).toBe('completed');
    expect(statusOf({ ...end, finalStep: 3 })).toBe('stopped-at-max-steps');
    expect(statusOf({ ...end, finalStep: 9, stoppedEarly: true })).toBe('early-stopped');
    expect(statusOf({ ...end, finalStep: 9, preempted: true })).toBe('preempted');
    // Epochs lowered on resume: the run is past its plan, and complete.
    expect(statusOf({ ...end, finalStep: 20 })).toBe('completed');
  });
});
