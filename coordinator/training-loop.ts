// The training loop, top to bottom: steps, periodic validation, checkpoints, early stopping and
// hooks. Setup and teardown (server, workers, run directory) live in coordinator.ts.
import type { Dataset } from '../shared/data/dataset.js';
import type { Job } from '../shared/job-schema.js';
import type { Logger } from '../shared/logger.js';
import { learningRateAt } from '../shared/lr-schedule.js';
import { batchesPerEpoch, cursorOf, epochOrder, globalBatch } from '../shared/shard-plan.js';
import type { CheckpointStore } from './checkpoint-store.js';
import type { EarlyStopping } from './early-stopping.js';
import { prefixed, type Evaluator, type SplitMetrics } from './evaluator.js';
import type { Generation } from './membership.js';
import type { ProgressReporter } from './progress-reporter.js';
import type { RunDirectory } from './run-directory.js';
import { runStep, type StepOutcome } from './step-driver.js';
import type { UserHooks } from './user-hooks.js';

export interface LoopContext {
  job: Job;
  dataset: Dataset;
  generation: Generation;
  runDir: RunDirectory;
  checkpoints: CheckpointStore;
  evaluator: Evaluator;
  earlyStopping: EarlyStopping | undefined;
  hooks: UserHooks;
  reporter: ProgressReporter;
  logger: Logger;
  stepTimeoutMs: number;
  /** Stop after this global step (a run-control flag, not part of the job). */
  stopAtStep: number | undefined;
  /** Takes a checkpoint of the state after `step` steps (the next step to run). */
  checkpoint: (nextStep: number, metrics: Record<string, number>) => Promise<void>;
}

export interface LoopResult {
  stepsRun: number;
  finalStep: number;
  trainSamples: number;
  trainSeconds: number;
  stoppedEarly: boolean;
  skippedSteps: number;
  lastValidation: SplitMetrics | undefined;
  lastTrainLoss: number | undefined;
}

/** Runs steps [startStep, totalSteps) and returns what happened. */
export async function trainLoop(ctx: LoopContext, startStep: number): Promise<LoopResult> {
  const { job, dataset } = ctx;
  const trainCount = dataset.train.count;
  const batchSize = job.training.batchSize;
  const perEpoch = batchesPerEpoch(trainCount, batchSize);
  const totalSteps = perEpoch * job.training.epochs;
  const lastStep = Math.min(totalSteps, job.training.maxSteps ?? totalSteps, ctx.stopAtStep ?? totalSteps);
  const result: LoopResult = { stepsRun: 0, finalStep: startStep, trainSamples: 0, trainSeconds: 0, stoppedEarly: false, skippedSteps: 0, lastValidation: undefined, lastTrainLoss: undefined };
  let epochLoss = { sum: 0, count: 0 };
  let order: { epoch: number; indices: Uint32Array } | undefined;

  for (let step = startStep; step < lastStep; step++) {
    // Plan: the epoch's seeded order (independent of world size), the next global batch of it.
    const { epoch, batchInEpoch } = cursorOf(step, trainCount, batchSize);
    if (order?.epoch !== epoch) order = { epoch, indices: epochOrder(trainCount, job.seed, epoch) };
    if (batchInEpoch === 0) epochLoss = { sum: 0, count: 0 };
    const wantParamHash = job.consistencyCheckEverySteps > 0 && (step % job.consistencyCheckEverySteps === 0 || step === lastStep - 1);
    const learningRate = learningRateAt(step, job.optimizer.learningRate, job.schedule, batchSize, totalSteps);

    // Execute: workers compute, all-reduce among themselves and apply the same update.
    const outcome = await runStep(ctx.generation, { step, epoch, batchInEpoch, batch: globalBatch(order.indices, batchSize, batchInEpoch), learningRate, wantParamHash }, ctx.stepTimeoutMs);
    recordStep(ctx, outcome, epoch, learningRate, result);
    epochLoss.sum += outcome.loss * outcome.globalCount;
    epochLoss.count += outcome.globalCount;
    result.finalStep = step + 1;

    // Periodic validation and checkpoints; epoch-end bookkeeping.
    const epochEnd = batchInEpoch === perEpoch - 1;
    const trainLoss = epochLoss.sum / epochLoss.count;
    result.lastTrainLoss = trainLoss;
    const validateNow = epochEnd || (job.validation.everySteps > 0 && (step + 1) % job.validation.everySteps === 0);
    let metrics: Record<string, number> = { 'train.loss': trainLoss };
    if (validateNow) {
      const validation = await ctx.evaluator.evaluate(ctx.generation, 'validation', dataset.validation.count);
      result.lastValidation = validation;
      metrics = { ...metrics, ...prefixed('validation', validation) };
      ctx.runDir.appendMetrics({ type: 'validation', step: step + 1, epoch, ...metrics, at: new Date().toISOString() });
      await ctx.hooks.call('onValidationEnd', { step: step + 1, epoch, metrics });
    }
    const verdict = validateNow ? ctx.earlyStopping?.update(metrics) : undefined;
    const checkpointNow = (job.checkpoint.everySteps > 0 && (step + 1) % job.checkpoint.everySteps === 0) || (epochEnd && job.checkpoint.atEpochEnd) || step + 1 === lastStep || verdict?.improved === true;
    if (checkpointNow) await ctx.checkpoint(step + 1, metrics);
    // The best state exists as a checkpoint (taken just above) before it is marked as the best.
    if (verdict?.improved === true) await ctx.checkpoints.markBest(step + 1);
    if (epochEnd) {
      ctx.reporter.epochEnd({ epoch, epochs: job.training.epochs, trainLoss, validation: result.lastValidation, samplesPerSecond: result.trainSamples / result.trainSeconds });
      await ctx.hooks.call('onEpochEnd', { epoch, step: step + 1, metrics });
    }
    if (verdict?.shouldStop === true) {
      ctx.reporter.note(`early stopping after step ${step + 1}: ${job.validation.earlyStopping?.monitor ?? '?'} did not improve for ${verdict.wait} validations (best ${verdict.best.toFixed(4)})`);
      if (!checkpointNow) await ctx.checkpoint(step + 1, metrics);
      result.stoppedEarly = true;
      break;
    }
  }
  return result;
}

function recordStep(ctx: LoopContext, outcome: StepOutcome, epoch: number, learningRate: number, result: LoopResult): void {
  result.stepsRun += 1;
  result.trainSamples += outcome.globalCount;
  result.trainSeconds += outcome.wallMs / 1000;
  if (outcome.skipped) result.skippedSteps += 1;
  ctx.runDir.appendMetrics({
    type: 'step',
    step: outcome.step,
    epoch,
    loss: outcome.loss,
    learningRate,
    samples: outcome.globalCount,
    gradNorm: outcome.gradNorm,
    skipped: outcome.skipped,
    wallMs: round(outcome.wallMs),
    ranks: outcome.ranks.map((r) => ({ rank: r.rank, samples: r.localCount, computeMs: round(r.computeMs), allreduceMs: round(r.allreduceMs), optimizerMs: round(r.optimizerMs), idleMs: round(r.idleMs) })),
  });
  ctx.reporter.step(outcome);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
