// The training loop, top to bottom: steps, periodic validation, checkpoints, early stopping and
// callbacks (the job's hooks among them). Setup and teardown (server, workers, run directory) live in coordinator.ts.
import type { DataShape } from '../../shared/data/data-source.js';
import { TrainingDivergedError, WorkerFailedError } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import type { Logger } from '../../shared/logger.js';
import { batchesPerEpoch, cursorOf, epochOrder, globalBatch } from '../../shared/shard-plan.js';
import type { CheckpointStore } from '../run/checkpoint-store.js';
import type { EarlyStopping, EarlyStoppingVerdict } from './early-stopping.js';
import type { EventLog } from '../run/event-log.js';
import { prefixed, type Evaluator, type SplitMetrics } from './evaluator.js';
import type { Generation } from './membership.js';
import type { ProgressReporter } from '../run/progress-reporter.js';
import type { RunDirectory } from '../run/run-directory.js';
import { sendStep, settleStep, type StepOutcome, type StepPlan } from './step-driver.js';
import type { StragglerDetector } from './straggler-detector.js';
import type { CallbackRunner } from '../training-callbacks.js';

export interface LoopContext {
  job: Job;
  dataset: DataShape;
  generation: Generation;
  runDir: RunDirectory;
  checkpoints: CheckpointStore;
  evaluator: Evaluator;
  earlyStopping: EarlyStopping | undefined;
  /** train()'s callbacks and the job's hooks; owns the learning rates (schedule + overrides). */
  callbacks: CallbackRunner;
  reporter: ProgressReporter;
  logger: Logger;
  stepTimeoutMs: number;
  /**
   * Rank 0 hashes its parameters after every step and metrics.jsonl records it, so a restarted
   * coordinator can verify a rejoining worker's state (verified-rejoin.ts). Only where workers
   * can rejoin: cluster mode (embedded workers exit with their coordinator).
   */
  recordParamHashes: boolean;
  /** Stop after this global step (a run-control flag, not part of the job). */
  stopAtStep: number | undefined;
  /** True when the ring should be re-formed at this boundary (new workers waiting). */
  shouldRegroup: () => boolean;
  /** Aborted on SIGTERM/SIGINT: checkpoint at the next boundary and stop. */
  stopSignal: AbortSignal;
  events: EventLog;
  stragglers: StragglerDetector;
  /** Takes a checkpoint of the state after `step` steps (the next step to run). */
  checkpoint: (nextStep: number, metrics: Record<string, number>) => Promise<void>;
}

/** Progress of the run; one object lives across regroups so nothing is counted twice or lost. */
export interface LoopResult {
  stepsRun: number;
  epochLossSum: number;
  epochLossCount: number;
  consecutiveSkips: number;
  /** Set when the loop returned early so the coordinator can re-form the ring. */
  regroupRequested: boolean;
  /** Set when the loop stopped for a signal (after checkpointing). */
  preempted: boolean;
  /** Set when the loop stopped because a callback called stop() (after checkpointing). */
  stoppedByCallback: boolean;
  /** The step of the last checkpoint this loop took (a stop right after it takes no second one). */
  checkpointedAt: number | undefined;
  finalStep: number;
  trainSamples: number;
  trainSeconds: number;
  stoppedEarly: boolean;
  skippedSteps: number;
  lastValidation: SplitMetrics | undefined;
  lastTrainLoss: number | undefined;
  /**
   * The work due after a finished step (validation, checkpoint, epoch end) until all of it is
   * done. A worker failure in the middle of it leaves it set, and the loop re-entered on the new
   * generation redoes the rest before its first step, so no validation record, early-stopping
   * input or epoch-end checkpoint is lost to a regroup.
   */
  pendingBoundary: PendingBoundary | undefined;
  /** A step that a rank completed while the ring broke (its report came with the failure). */
  settledByFailure: { step: number; loss: number; globalCount: number; skipped: boolean } | undefined;
}

/** What is still due after the step that left `nextStep` steps done. */
export interface PendingBoundary {
  nextStep: number;
  epoch: number;
  epochEnd: boolean;
  validate: boolean;
  checkpoint: boolean;
  /** Set once the validation ran and was recorded (it is never recorded twice). */
  validated?: { metrics: Record<string, number>; verdict: EarlyStoppingVerdict | undefined };
}

export function newLoopResult(startStep: number): LoopResult {
  return {
    stepsRun: 0,
    epochLossSum: 0,
    epochLossCount: 0,
    consecutiveSkips: 0,
    regroupRequested: false,
    preempted: false,
    stoppedByCallback: false,
    checkpointedAt: undefined,
    finalStep: startStep,
    trainSamples: 0,
    trainSeconds: 0,
    stoppedEarly: false,
    skippedSteps: 0,
    lastValidation: undefined,
    lastTrainLoss: undefined,
    pendingBoundary: undefined,
    settledByFailure: undefined,
  };
}

/** Runs steps [startStep, last) into `result`; returns early for a regroup or a stop signal. */
export async function trainLoop(ctx: LoopContext, startStep: number, result: LoopResult): Promise<LoopResult> {
  const { job, dataset } = ctx;
  const trainCount = dataset.train.count;
  const batchSize = job.training.batchSize;
  const perEpoch = batchesPerEpoch(trainCount, batchSize);
  const totalSteps = perEpoch * job.training.epochs;
  const lastStep = Math.min(totalSteps, job.training.maxSteps ?? totalSteps, ctx.stopAtStep ?? totalSteps);
  let order: { epoch: number; indices: Uint32Array } | undefined;
  result.regroupRequested = false;
  /** The next step's orders, when they went out early (while the step before still ran). */
  let sentAhead: { plan: StepPlan } | undefined;
  let settledMs = 0;
  const learningRates = ctx.callbacks.learningRates;
  learningRates.restartAt(startStep);
  ctx.reporter.planRun({ lastStep, stepsPerEpoch: perEpoch, epochs: job.training.epochs });

  const planFor = (step: number): StepPlan => {
    // The epoch's seeded order (independent of world size), the next global batch of it.
    const { epoch, batchInEpoch } = cursorOf(step, trainCount, batchSize);
    if (order?.epoch !== epoch) order = { epoch, indices: epochOrder(trainCount, job.seed, epoch) };
    const wantParamHash =
      job.consistencyCheckEverySteps > 0 && (step % job.consistencyCheckEverySteps === 0 || step === lastStep - 1);
    return {
      step,
      epoch,
      batchInEpoch,
      batch: globalBatch(order.indices, batchSize, batchInEpoch),
      learningRate: learningRates.at(step),
      wantParamHash,
      recordParamHash: ctx.recordParamHashes,
    };
  };
  /** The plan of `step`, whose order goes out now: learning-rate changes apply after it. */
  const send = (step: number): StepPlan => {
    const plan = planFor(step);
    learningRates.sent(step);
    return plan;
  };
  /** What happens after step `step` besides bookkeeping: nothing may run ahead across these. */
  const boundaryAfter = (step: number): { epochEnd: boolean; validate: boolean; checkpoint: boolean } => {
    const epochEnd = cursorOf(step, trainCount, batchSize).batchInEpoch === perEpoch - 1;
    return {
      epochEnd,
      validate: epochEnd || (job.validation.everySteps > 0 && (step + 1) % job.validation.everySteps === 0),
      checkpoint:
        (job.checkpoint.everySteps > 0 && (step + 1) % job.checkpoint.everySteps === 0) ||
        (epochEnd && job.checkpoint.atEpochEnd) ||
        step + 1 === lastStep,
    };
  };

  // Re-entered after a regroup: finish the boundary the failure interrupted. A step that a
  // surviving rank completed while the ring broke (startStep one past the last settled step)
  // still owes its boundary too.
  const settled = result.settledByFailure;
  result.settledByFailure = undefined;
  if (startStep === result.finalStep + 1 && settled?.step === result.finalStep) {
    if (!settled.skipped) {
      result.epochLossSum += settled.loss * settled.globalCount;
      result.epochLossCount += settled.globalCount;
    }
    result.finalStep = startStep;
    result.pendingBoundary = {
      nextStep: startStep,
      epoch: cursorOf(startStep - 1, trainCount, batchSize).epoch,
      ...boundaryAfter(startStep - 1),
    };
  }
  if (result.pendingBoundary !== undefined && result.pendingBoundary.nextStep !== startStep)
    result.pendingBoundary = undefined; // the ring went back before that step: it runs again
  if (result.pendingBoundary !== undefined && (await finishBoundary(ctx, result))) return result;

  for (let step = startStep; step < lastStep; step++) {
    let plan: StepPlan;
    let startedMs: number;
    if (sentAhead?.plan.step === step) {
      // Already running on the workers: boundary checks wait until it is settled.
      plan = sentAhead.plan;
      startedMs = settledMs;
      sentAhead = undefined;
    } else {
      // Step boundary: membership changes and stop signals take effect here.
      if (ctx.stopSignal.aborted) {
        await ctx.checkpoint(step, { 'train.loss': result.lastTrainLoss ?? Number.NaN });
        ctx.events.record('preempted', -1, step, `stopped by a signal; checkpointed at step ${step}`);
        result.preempted = true;
        return result;
      }
      if (ctx.callbacks.stopRequested) {
        if (result.checkpointedAt !== step)
          await ctx.checkpoint(step, { 'train.loss': result.lastTrainLoss ?? Number.NaN });
        ctx.events.record('stopped-by-callback', -1, step, `stopped by a callback; checkpointed at step ${step}`);
        result.stoppedByCallback = true;
        return result;
      }
      if (step > startStep && ctx.shouldRegroup()) {
        result.regroupRequested = true;
        return result;
      }
      plan = send(step);
      startedMs = sendStep(ctx.generation, plan);
    }
    const boundary = boundaryAfter(step);
    // Nothing to do between this step and the next: send the next one's orders now, so each
    // worker starts it the moment it finishes this one instead of idling for a control round trip.
    if (
      !boundary.validate &&
      !boundary.checkpoint &&
      step + 1 < lastStep &&
      !ctx.stopSignal.aborted &&
      !ctx.callbacks.stopRequested &&
      !ctx.shouldRegroup()
    ) {
      sentAhead = { plan: send(step + 1) };
      try {
        sendStep(ctx.generation, sentAhead.plan);
      } catch (error) {
        // A worker's stream closed: step `step` is still running on the others, so the failure
        // must surface from settling it (which knows what each rank completed), not from here.
        // Whoever got the early orders answers them as aborted once the ring breaks.
        if (!(error instanceof WorkerFailedError)) throw error;
        ctx.logger.debug({ err: error, step: step + 1 }, 'could not send the next step ahead');
      }
    }
    if (plan.batchInEpoch === 0) {
      result.epochLossSum = 0;
      result.epochLossCount = 0;
    }

    // Execute: workers compute, all-reduce among themselves and apply the same update.
    const outcome = await settleStep(ctx.generation, plan, ctx.stepTimeoutMs, startedMs);
    settledMs = performance.now();
    const { epoch } = plan;
    recordStep(ctx, outcome, epoch, plan.learningRate, result);
    if (!outcome.skipped) {
      result.epochLossSum += outcome.loss * outcome.globalCount;
      result.epochLossCount += outcome.globalCount;
    }
    result.finalStep = step + 1;
    if (ctx.callbacks.stepDue(step + 1))
      await ctx.callbacks.emit('onStep', { epoch, step: step + 1, metrics: { 'train.loss': outcome.loss } });

    // Periodic validation and checkpoints; epoch-end bookkeeping.
    result.pendingBoundary = { nextStep: step + 1, epoch, ...boundary };
    if (await finishBoundary(ctx, result)) break;
  }
  return result;
}

/**
 * Runs the pending boundary: validation (recorded once, fed to early stopping once), checkpoint,
 * best mark, epoch-end report and hook. Clears it when all is done; returns true when early
 * stopping ends the run. A worker failure anywhere in here leaves the rest pending.
 */
async function finishBoundary(ctx: LoopContext, result: LoopResult): Promise<boolean> {
  const pending = result.pendingBoundary;
  if (pending === undefined) return false;
  const { job } = ctx;
  const { nextStep, epoch } = pending;
  const trainLoss = result.epochLossSum / result.epochLossCount;
  result.lastTrainLoss = trainLoss;
  let metrics: Record<string, number> = { 'train.loss': trainLoss };
  if (pending.validate && pending.validated === undefined) {
    const validation = await ctx.evaluator.evaluate(ctx.generation, 'validation', ctx.dataset.validation.count);
    result.lastValidation = validation;
    metrics = { ...metrics, ...prefixed('validation', validation) };
    ctx.runDir.appendMetrics({ type: 'validation', step: nextStep, epoch, ...metrics, at: new Date().toISOString() });
    pending.validated = { metrics, verdict: ctx.earlyStopping?.update(metrics) };
    await ctx.callbacks.emit('onValidationEnd', { step: nextStep, epoch, metrics });
  }
  if (pending.validated !== undefined) metrics = pending.validated.metrics;
  const verdict = pending.validated?.verdict;
  const checkpointNow = pending.checkpoint || verdict?.improved === true;
  if (checkpointNow) {
    await ctx.checkpoint(nextStep, metrics);
    result.checkpointedAt = nextStep;
  }
  // The best state exists as a checkpoint (taken just above) before it is marked as the best.
  if (verdict?.improved === true) await ctx.checkpoints.markBest(nextStep);
  result.pendingBoundary = undefined;
  if (pending.epochEnd) {
    ctx.reporter.epochEnd({
      epoch,
      epochs: job.training.epochs,
      step: nextStep,
      trainLoss,
      validation: result.lastValidation,
    });
    await ctx.callbacks.emit('onEpochEnd', { epoch, step: nextStep, metrics });
  }
  if (verdict?.shouldStop !== true) return false;
  ctx.reporter.note(
    `early stopping after step ${nextStep}: ${job.validation.earlyStopping?.monitor ?? '?'} did not improve for ${verdict.wait} validations (best ${verdict.best.toFixed(4)})`,
  );
  if (!checkpointNow) await ctx.checkpoint(nextStep, metrics);
  result.stoppedEarly = true;
  return true;
}

function recordStep(
  ctx: LoopContext,
  outcome: StepOutcome,
  epoch: number,
  learningRate: number,
  result: LoopResult,
): void {
  result.stepsRun += 1;
  result.trainSamples += outcome.globalCount;
  result.trainSeconds += outcome.wallMs / 1000;
  if (outcome.skipped) {
    result.skippedSteps += 1;
    result.consecutiveSkips += 1;
    ctx.events.record(
      'skipped-step',
      -1,
      outcome.step,
      `non-finite averaged gradient at step ${outcome.step}; update skipped on every rank (${result.consecutiveSkips} in a row)`,
    );
    if (result.consecutiveSkips >= ctx.job.maxConsecutiveSkippedSteps) {
      throw new TrainingDivergedError(
        `${result.consecutiveSkips} consecutive steps had non-finite gradients (last: step ${outcome.step}); parameters were left at their last finite values and the last checkpoint is intact. Lower optimizer.learningRate or set optimizer.clipNorm`,
      );
    }
  } else {
    result.consecutiveSkips = 0;
  }
  ctx.runDir.appendMetrics({
    type: 'step',
    step: outcome.step,
    epoch,
    loss: outcome.loss,
    learningRate,
    samples: outcome.globalCount,
    gradNorm: outcome.gradNorm,
    skipped: outcome.skipped,
    ...(outcome.paramHash === '' ? {} : { paramHash: outcome.paramHash }),
    wallMs: round(outcome.wallMs),
    ranks: outcome.ranks.map((r) => ({
      rank: r.rank,
      samples: r.localCount,
      computeMs: round(r.computeMs),
      allreduceMs: round(r.allreduceMs),
      allreduceWaitMs: round(r.allreduceWaitMs),
      optimizerMs: round(r.optimizerMs),
      idleMs: round(r.idleMs),
    })),
  });
  ctx.reporter.step(outcome);
  ctx.stragglers.observe(
    outcome,
    ctx.generation.members.map((m) => m.session.hello.host),
  );
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
