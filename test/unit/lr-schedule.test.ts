// Learning-rate schedules at known steps: constant, step, cosine, warm-up, linear scaling.
import { describe, expect, it } from 'vitest';
import { scheduleSchema, type ScheduleSpec } from '../../shared/job-schema.js';
import { learningRateAt } from '../../shared/lr-schedule.js';

function schedule(input: Record<string, unknown>): ScheduleSpec {
  return scheduleSchema.parse(input);
}

/** Learning rates at the given steps for base lr 0.1, global batch 256, 100 total steps. */
function ratesAt(s: ScheduleSpec, steps: number[], globalBatchSize = 256): number[] {
  return steps.map((step) => learningRateAt(step, 0.1, s, globalBatchSize, 100));
}

function expectRates(actual: number[], expected: number[]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((lr, i) => expect(lr, `entry ${i}`).toBeCloseTo(expected[i] ?? NaN, 12));
}

describe('learningRateAt', () => {
  it('constant keeps the base rate', () => {
    expectRates(ratesAt(schedule({}), [0, 1, 99, 1000]), [0.1, 0.1, 0.1, 0.1]);
  });

  it('step multiplies by gamma every stepSize steps', () => {
    const s = schedule({ type: 'step', stepSize: 10, gamma: 0.5 });
    expectRates(ratesAt(s, [0, 9, 10, 19, 20, 35]), [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125]);
  });

  it('cosine decays from the base rate to minLearningRate over totalSteps, then stays there', () => {
    const s = schedule({ type: 'cosine', minLearningRate: 0.01 });
    // step 25: 0.01 + 0.09 · ½(1 + cos(π/4)) = 0.01 + 0.045 · 1.7071067811865475
    expectRates(
      ratesAt(s, [0, 25, 50, 75, 100, 150]),
      [0.1, 0.0868198051533946, 0.055, 0.0231801948466054, 0.01, 0.01],
    );
  });

  it('warm-up ramps linearly as lr·(step+1)/warmupSteps, then hands over to the schedule', () => {
    const s = schedule({ warmupSteps: 4 });
    expectRates(ratesAt(s, [0, 1, 2, 3, 4, 50]), [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]);
  });

  it('linear scaling multiplies the base rate by globalBatch / referenceBatchSize', () => {
    const s = schedule({ scaleLinearly: true, referenceBatchSize: 256 });
    expectRates(ratesAt(s, [0, 10], 512), [0.2, 0.2]);
    expectRates(ratesAt(s, [0], 64), [0.025]);
    // Without the flag the batch size is ignored.
    expectRates(ratesAt(schedule({ referenceBatchSize: 32 }), [0], 512), [0.1]);
  });

  it('composes scaling, step decay and warm-up in that order', () => {
    const s = schedule({
      type: 'step',
      stepSize: 2,
      gamma: 0.5,
      warmupSteps: 4,
      scaleLinearly: true,
      referenceBatchSize: 256,
    });
    // step 2: 0.1 · 512/256 = 0.2, × 0.5^1 = 0.1, × 3/4 = 0.075; step 4: 0.2 × 0.5^2 = 0.05
    expectRates(ratesAt(s, [0, 2, 4], 512), [0.05, 0.075, 0.05]);
  });

  it('composes cosine with warm-up; minLearningRate is not scaled', () => {
    const s = schedule({ type: 'cosine', minLearningRate: 0.01, warmupSteps: 10, scaleLinearly: true });
    // step 0: cosine ≈ 0.2 (base 0.1 × 2), × 1/10; step 100: floor 0.01 regardless of scaling
    expectRates(ratesAt(s, [0, 100], 512), [0.02, 0.01]);
  });

  it('rejects a negative or fractional step and a cosine schedule without totalSteps', () => {
    expect(() => learningRateAt(-1, 0.1, schedule({}), 256, 100)).toThrow(RangeError);
    expect(() => learningRateAt(1.5, 0.1, schedule({}), 256, 100)).toThrow(RangeError);
    expect(() => learningRateAt(0, 0.1, schedule({ type: 'cosine' }), 256, 0)).toThrow(/totalSteps/);
  });
});
