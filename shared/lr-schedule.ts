// Learning rate as a pure function of the global step. Every rank (and the coordinator, for
// reporting) computes it from the same inputs, so no schedule state is ever shipped or saved.
//
// Order of composition, for global step s (0-based):
//   1. base:     lr0 = learningRate × (scaleLinearly ? globalBatchSize / referenceBatchSize : 1)
//   2. schedule: constant  lr = lr0
//                step      lr = lr0 × gamma^floor(s / stepSize)
//                cosine    lr = min + (lr0 − min) × ½(1 + cos(π · min(s, T) / T)), T = totalSteps
//   3. warm-up:  lr × (s + 1) / warmupSteps while s < warmupSteps
// minLearningRate is an absolute floor and is not scaled by the linear scaling rule.
import type { ScheduleSpec } from './job-schema.js';

/** Learning rate for global step `step` (0-based); see the module header for the formula. */
export function learningRateAt(
  step: number,
  baseLearningRate: number,
  schedule: ScheduleSpec,
  globalBatchSize: number,
  totalSteps: number,
): number {
  if (!Number.isInteger(step) || step < 0)
    throw new RangeError(`learningRateAt: step must be a non-negative integer, got ${step}`);
  const scaled = schedule.scaleLinearly
    ? (baseLearningRate * globalBatchSize) / schedule.referenceBatchSize
    : baseLearningRate;
  const decayed = decay(step, scaled, schedule, totalSteps);
  return step < schedule.warmupSteps ? (decayed * (step + 1)) / schedule.warmupSteps : decayed;
}

function decay(step: number, learningRate: number, schedule: ScheduleSpec, totalSteps: number): number {
  switch (schedule.type) {
    case 'constant':
      return learningRate;
    case 'step':
      return learningRate * Math.pow(schedule.gamma, Math.floor(step / schedule.stepSize));
    case 'cosine': {
      if (!(totalSteps > 0))
        throw new RangeError(`learningRateAt: cosine schedule needs totalSteps > 0, got ${totalSteps}`);
      const progress = Math.min(step, totalSteps) / totalSteps;
      const min = schedule.minLearningRate;
      return min + (learningRate - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }
  }
}
