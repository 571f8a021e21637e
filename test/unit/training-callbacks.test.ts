// train()'s callbacks over the real loop, membership, run directory and checkpoint store, with
// in-memory workers (test/helpers/memory-workers.ts): stop() ends the run at the next boundary
// with a checkpoint; setLearningRate reaches the orders (and metrics.jsonl) from the first step
// whose order has not gone out; the changes are persisted for a resume. Plus ReduceLROnPlateau's
// decisions, and LearningRates' resume rule.
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LearningRates } from '../../coordinator/loop/learning-rates.js';
import type { TrainingCallbacks, TrainingEvent } from '../../coordinator/training-callbacks.js';
import { ReduceLROnPlateau } from '../../lib/reduce-lr-on-plateau.js';
import { CallbackError } from '../../shared/errors.js';
import { loopJob, memoryCoordinator, type MemoryCoordinator } from '../helpers/memory-coordinator.js';
import type { LogEntry, MemoryWorker } from '../helpers/memory-workers.js';

const opened: MemoryCoordinator[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) await c.dispose();
});

// loopJob: 48 training samples, batch 8 -> 6 steps an epoch, 2 epochs; sgd at 0.1, constant.
const PER_EPOCH = 6;
const JOB_LR = 0.1;

async function coordinator(callbacks: TrainingCallbacks[], onStepEvery = 1): Promise<MemoryCoordinator> {
  const c = await memoryCoordinator({ job: loopJob(), workers: 2, bounds: { min: 2, max: 2 }, callbacks, onStepEvery });
  opened.push(c);
  return c;
}

const orderedSteps = (w: MemoryWorker): Array<{ step: number; learningRate: number }> =>
  w.log
    .filter((e): e is Extract<LogEntry, { event: 'order' }> => e.event === 'order')
    .map((e) => ({ step: e.step, learningRate: Number(e.order.learningRate) }));

describe('stop()', () => {
  it('from onEpochEnd: the run ends at that boundary, with its checkpoint, as stopped by a callback', async () => {
    const c = await coordinator([{ onEpochEnd: (e) => e.stop() }]);
    const { result } = await c.train();
    expect(result.stoppedByCallback).toBe(true);
    expect(result.preempted).toBe(false);
    expect(result.finalStep).toBe(PER_EPOCH);
    for (const w of c.joined) expect(Math.max(...orderedSteps(w).map((o) => o.step))).toBe(PER_EPOCH - 1);
    // The epoch-end checkpoint is the stop's checkpoint: none is taken twice.
    expect((await c.checkpoints.list()).map((i) => i.step)).toEqual([PER_EPOCH]);
    expect(c.events.events.map((e) => e.kind)).toEqual(['stopped-by-callback']);
  });

  it('from onStep: the order already sent ahead runs, then the run checkpoints and stops', async () => {
    const c = await coordinator([{ onStep: (e) => (e.step === 2 ? e.stop() : undefined) }]);
    const { result } = await c.train();
    // After step 2 was done, step index 2 had gone out ahead; nothing after it went out.
    expect(result.finalStep).toBe(3);
    expect(result.stoppedByCallback).toBe(true);
    for (const w of c.joined) expect(orderedSteps(w).map((o) => o.step)).toEqual([0, 1, 2]);
    expect((await c.checkpoints.list()).map((i) => i.step)).toEqual([3]);
  });

  it('a callback that throws ends the run with a CallbackError naming it', async () => {
    const c = await coordinator([
      {
        onValidationEnd: () => {
          throw new Error('no quota');
        },
      },
    ]);
    await expect(c.train()).rejects.toThrow(new CallbackError('onValidationEnd', { cause: new Error('no quota') }));
  });
});

describe('setLearningRate', () => {
  it('from onEpochEnd: exact at the boundary, in the orders and in metrics.jsonl, and persisted', async () => {
    const seen: number[] = [];
    const c = await coordinator([
      {
        onEpochEnd: (e) => {
          seen.push(e.learningRate);
          if (e.epoch === 0) e.setLearningRate(0.025);
        },
      },
    ]);
    await c.train();
    const expected = (step: number): number => (step < PER_EPOCH ? JOB_LR : 0.025);
    for (const w of c.joined)
      expect(orderedSteps(w)).toEqual(
        Array.from({ length: 2 * PER_EPOCH }, (_, step) => ({ step, learningRate: expected(step) })),
      );
    expect(c.stepRecords().map((r) => r['learningRate'])).toEqual(
      Array.from({ length: 2 * PER_EPOCH }, (_, step) => expected(step)),
    );
    // The event tells the rate the next step trains at.
    expect(seen).toEqual([JOB_LR, 0.025]);
    expect(c.learningRates.history).toEqual([{ fromStep: PER_EPOCH, learningRate: 0.025 }]);
    const reread = LearningRates.forJob(c.job, c.dataset.train.count, c.runDir.path);
    await reread.resumeAt(2 * PER_EPOCH);
    expect(reread.history).toEqual([{ fromStep: PER_EPOCH, learningRate: 0.025 }]);
  });

  it('from onStep: from the first step whose order has not gone out (the next one was sent ahead)', async () => {
    const c = await coordinator([{ onStep: (e) => (e.step === 2 ? e.setLearningRate(0.5) : undefined) }]);
    await c.train();
    // Step 2's order went out before step 1 reported: the new rate starts at step 3.
    for (const w of c.joined)
      expect(orderedSteps(w).map((o) => o.learningRate)).toEqual(
        Array.from({ length: 2 * PER_EPOCH }, (_, step) => (step < 3 ? JOB_LR : 0.5)),
      );
  });

  it('refuses a rate that is not a finite number >= 0, as a CallbackError naming the callback', async () => {
    const c = await coordinator([{ onEpochEnd: (e) => e.setLearningRate(-1) }]);
    const error = await c.train().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackError);
    expect((error as CallbackError).message).toBe(
      'callback onEpochEnd threw: setLearningRate: the learning rate must be finite and >= 0, got -1',
    );
  });
});

describe('LearningRates', () => {
  it('a resume at step K keeps the changes decided up to K and drops the later ones', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ringtrain-lr-'));
    try {
      const schedule = (step: number): number => 1 / (step + 1);
      const first = new LearningRates(schedule, path.join(dir, 'learning-rates.json'));
      first.sent(3);
      first.set(0.5); // from step 4
      first.sent(9);
      first.set(0.25); // from step 10
      await first.flush();
      expect([first.at(3), first.at(4), first.at(9), first.at(10)]).toEqual([0.25, 0.5, 0.5, 0.25]);
      const resumed = new LearningRates(schedule, path.join(dir, 'learning-rates.json'));
      await resumed.resumeAt(8);
      expect(resumed.history).toEqual([{ fromStep: 4, learningRate: 0.5 }]);
      expect([resumed.at(0), resumed.at(4), resumed.at(12)]).toEqual([1, 0.5, 0.5]);
      // A new decision at the resumed boundary replaces what came after it.
      resumed.set(0.1);
      expect(resumed.history).toEqual([
        { fromStep: 4, learningRate: 0.5 },
        { fromStep: 8, learningRate: 0.1 },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ReduceLROnPlateau', () => {
  /** Feeds epoch ends with these monitor values; returns the learning rate after each. */
  function run(plateau: ReduceLROnPlateau, values: number[], startLr = 1): number[] {
    let lr = startLr;
    return values.map((value, epoch) => {
      const event: TrainingEvent = {
        epoch,
        step: epoch * 10,
        metrics: { 'validation.loss': value, 'validation.accuracy': 1 - value },
        learningRate: lr,
        runDir: '/nowhere',
        stop: () => undefined,
        setLearningRate: (next) => (lr = next),
      };
      plateau.onEpochEnd(event);
      return lr;
    });
  }

  it('lowers the rate by factor after patience epochs without an improvement larger than minDelta', () => {
    const plateau = new ReduceLROnPlateau({ factor: 0.5, patience: 2, minDelta: 0.01 });
    // 1.0 best; 0.995 is within minDelta (no improvement), 0.99 too; then a reduction.
    expect(run(plateau, [1, 0.995, 0.99, 0.5, 0.6, 0.7, 0.8])).toEqual([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]);
  });

  it('waits cooldown epochs after a reduction and never goes below minLr', () => {
    const plateau = new ReduceLROnPlateau({ factor: 0.1, patience: 1, cooldown: 2, minLr: 0.005 });
    // As Keras counts it, the epoch that ends a cooldown may already count towards patience.
    const rates = run(plateau, [1, 1, 1, 1, 1, 1, 1]).map((x) => Number(x.toPrecision(12)));
    expect(rates).toEqual([1, 0.1, 0.1, 0.01, 0.01, 0.005, 0.005]);
  });

  it('watches a maximised metric (accuracy) in max mode', () => {
    const plateau = new ReduceLROnPlateau({ monitor: 'validation.accuracy', factor: 0.5, patience: 1 });
    // accuracy = 1 - loss: rising accuracy is an improvement, falling is not.
    expect(run(plateau, [0.5, 0.4, 0.45, 0.45])).toEqual([1, 1, 0.5, 0.25]);
  });

  it('names the metric when the run has none of that name', () => {
    const plateau = new ReduceLROnPlateau({ monitor: 'validation.auc' });
    expect(() => run(plateau, [1])).toThrow(
      /no metric "validation.auc" \(have: validation.loss, validation.accuracy\)/,
    );
  });
});
