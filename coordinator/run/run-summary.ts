// The end of a run: final metrics on every split, the final model in TensorFlow.js layers format,
// and summary.json (what the run did, including failures, recoveries and stragglers).
import * as os from 'node:os';
import type { Dataset } from '../../shared/data/dataset.js';
import { RingtrainError } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import { decodeModelBlob } from '../../shared/model-blob.js';
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

export interface RunSummary extends Record<string, unknown> {
  runDir: string;
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
  requestId: number;
  stepTimeoutMs: number;
  startStep: number;
  events: EventLog;
  stragglers: StragglerReport[];
}

/** Final metrics on every split, the final model, and summary.json. */
export async function finish(
  generation: Generation,
  dataset: Dataset,
  evaluator: Evaluator,
  runDir: RunDirectory,
  loop: LoopResult,
  ctx: FinishContext,
): Promise<RunSummary> {
  const train = await evaluator.evaluate(generation, 'train', dataset.train.count);
  const validation = await evaluator.evaluate(generation, 'validation', dataset.validation.count);
  const test = await evaluator.evaluate(generation, 'test', dataset.test.count);
  ctx.reporter.final('test', test);
  const model = decodeModelBlob(
    await leaderOf(generation).session.fetchBlob(ctx.requestId + 1, 'model', ctx.stepTimeoutMs),
  );
  await runDir.writeModel({ 'model.json': model.modelJson, 'weights.bin': model.weights });
  const summary: RunSummary = {
    name: ctx.job.name,
    jobHash: ctx.hash,
    runDir: runDir.path,
    worldSize: generation.members.length,
    epochs: ctx.job.training.epochs,
    steps: loop.finalStep,
    stepsThisRun: loop.stepsRun,
    resumedFromStep: ctx.startStep,
    globalBatchSize: ctx.job.training.batchSize,
    samplesPerSecond: loop.trainSeconds > 0 ? loop.trainSamples / loop.trainSeconds : 0,
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
  ctx.reporter.note(`run directory: ${runDir.path}`);
  return summary;
}

function leaderOf(generation: Generation): Generation['members'][number] {
  const member = generation.members[0];
  if (member === undefined) throw new RingtrainError('the ring has no members');
  return member;
}
