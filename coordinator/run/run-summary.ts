// The end of a run: final metrics on every split, the final model in TensorFlow.js layers format
// (from the best step with earlyStopping.restoreBestWeights; else the last step, with the best in
// model-best/ beside it), and summary.json (how the run ended, which step each model holds, what
// it did, including failures, recoveries and stragglers). A run that ends by a signal or an error
// gets its summary from ended-summary.ts.
import * as os from 'node:os';
import type { DataShape } from '../../shared/data/data-source.js';
import { RingtrainError } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import { decodeModelBlob } from '../../shared/model-blob.js';
import { broadcastState } from '../loop/resume-state.js';
import type { CheckpointStore } from './checkpoint-store.js';
import type { EventLog } from './event-log.js';
import { prefixed, type Evaluator, type SplitMetrics } from '../loop/evaluator.js';
import { epochOfStepsDone } from '../../shared/shard-plan.js';
import type { Generation } from '../loop/membership.js';
import type { ProgressReporter } from './progress-reporter.js';
import type { RunDirectory } from './run-directory.js';
import type { StragglerReport } from '../loop/straggler-detector.js';
import type { LearningRateChange } from '../loop/learning-rates.js';
import type { LoopResult } from '../loop/training-loop.js';
import type { CallbackRunner } from '../training-callbacks.js';
import { finalLine, statusOf, type RunStatus } from './run-status.js';

export interface RunSummary extends Record<string, unknown> {
  runDir: string;
  status: RunStatus;
  worldSize: number;
  steps: number;
  test: SplitMetrics;
  /** A callback called stop(): the run ended at that boundary, with a checkpoint. */
  stoppedByCallback: boolean;
  /** The learning-rate changes callbacks made (each from its step on). */
  learningRateChanges: readonly LearningRateChange[];
}

export interface FinishContext {
  job: Job;
  hash: string;
  reporter: ProgressReporter;
  callbacks: CallbackRunner;
  checkpoints: CheckpointStore;
  nextRequestId: () => number;
  stepTimeoutMs: number;
  startStep: number;
  /** Steps the job's epochs plan (batches per epoch × epochs). */
  plannedSteps: number;
  events: EventLog;
  stragglers: StragglerReport[];
}

/** Final metrics on every split, the final model (and model-best/), and summary.json. */
export async function finish(
  generation: Generation,
  dataset: DataShape,
  evaluator: Evaluator,
  runDir: RunDirectory,
  loop: LoopResult,
  ctx: FinishContext,
): Promise<RunSummary> {
  const bestStep = await ctx.checkpoints.bestStep();
  const restoreBest = ctx.job.validation.earlyStopping?.restoreBestWeights === true && bestStep !== undefined;
  // restoreBestWeights: the best step's state goes back into the workers before anything is
  // measured or exported, so model/ and every final metric are of that step.
  const modelStep = restoreBest ? bestStep : loop.finalStep;
  if (modelStep !== loop.finalStep) await loadCheckpoint(generation, modelStep, ctx);
  const train = await evaluator.evaluate(generation, 'train', dataset.train.count);
  const validation = await evaluator.evaluate(generation, 'validation', dataset.validation.count);
  const test = await evaluator.evaluate(generation, 'test', dataset.test.count);
  ctx.reporter.final('test', test);
  await exportModel(generation, runDir, runDir.modelDir, ctx);
  // Otherwise the best is exported beside the last: nobody has to dig it out of a checkpoint.
  const bestModelStep = !restoreBest && bestStep !== undefined ? bestStep : undefined;
  if (bestModelStep !== undefined) {
    if (bestModelStep !== modelStep) await loadCheckpoint(generation, bestModelStep, ctx);
    await exportModel(generation, runDir, runDir.bestModelDir, ctx);
  }
  const status = statusOf({ ...loop, plannedSteps: ctx.plannedSteps });
  const summary: RunSummary = {
    name: ctx.job.name,
    status,
    jobHash: ctx.hash,
    runDir: runDir.path,
    worldSize: generation.members.length,
    epochs: ctx.job.training.epochs,
    plannedSteps: ctx.plannedSteps,
    steps: loop.finalStep,
    stepsThisRun: loop.stepsRun,
    resumedFromStep: ctx.startStep,
    modelStep,
    bestStep: bestStep ?? null,
    restoredBestWeights: restoreBest,
    modelBestStep: bestModelStep ?? null,
    globalBatchSize: ctx.job.training.batchSize,
    samplesPerSecond: loop.trainSeconds > 0 ? loop.trainSamples / loop.trainSeconds : 0,
    /** Without the warm-up (the first epoch this process ran); null when too few steps ran to tell. */
    steadySamplesPerSecond: ctx.reporter.throughput().steadySamplesPerSecond ?? null,
    trainSeconds: loop.trainSeconds,
    stoppedEarly: loop.stoppedEarly,
    stoppedByCallback: loop.stoppedByCallback,
    learningRateChanges: ctx.callbacks.learningRates.history,
    skippedSteps: loop.skippedSteps,
    train: train ?? {},
    validation: validation ?? {},
    test: test ?? {},
    workers: generation.members.map((m) => ({
      rank: m.rank,
      host: m.session.hello.host,
      pid: m.session.hello.pid,
      gpuIndex: m.session.hello.gpuIndex,
      backend: m.backend,
    })),
    recoveries: ctx.events.count('recovery'),
    stragglers: ctx.stragglers,
    events: ctx.events.events,
    coordinatorHost: os.hostname(),
    finishedAt: new Date().toISOString(),
  };
  await runDir.writeSummary(summary);
  await ctx.callbacks.emit('onTrainEnd', {
    epoch: epochOfStepsDone(loop.finalStep, dataset.train.count, ctx.job.training.batchSize),
    step: loop.finalStep,
    metrics: { ...prefixed('train', train), ...prefixed('validation', validation), ...prefixed('test', test) },
    summary,
  });
  ctx.reporter.end({
    status,
    step: loop.finalStep,
    plannedSteps: ctx.plannedSteps,
    runDir: runDir.path,
    text: finalLine({ ...loop, status, plannedSteps: ctx.plannedSteps, runDir: runDir.path, modelStep, bestModelStep }),
  });
  return summary;
}

/** Loads checkpoint `step` into every member (its state is the whole training state). */
async function loadCheckpoint(generation: Generation, step: number, ctx: FinishContext): Promise<void> {
  const { state } = await ctx.checkpoints.load(step);
  await broadcastState(generation, state, undefined, ctx.nextRequestId(), ctx.stepTimeoutMs);
}

/** The leader's model, in TensorFlow.js layers format, into `dir` (atomically). */
async function exportModel(
  generation: Generation,
  runDir: RunDirectory,
  dir: string,
  ctx: FinishContext,
): Promise<void> {
  const model = decodeModelBlob(
    await leaderOf(generation).session.fetchBlob(ctx.nextRequestId(), 'model', ctx.stepTimeoutMs),
  );
  await runDir.writeModel({ 'model.json': model.modelJson, 'weights.bin': model.weights }, dir);
}

function leaderOf(generation: Generation): Generation['members'][number] {
  const member = generation.members[0];
  if (member === undefined) throw new RingtrainError('the ring has no members');
  return member;
}
