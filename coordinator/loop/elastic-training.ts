// The training loop that survives failures (Horovod's elastic run_fn): train until the loop
// ends, a step fails or new workers wait; on failure or growth, regroup at a step boundary
// (evict, pick the most advanced consistent state, form generation g+1, broadcast) and continue
// with the same global batches. Owns the current generation, the liveness monitor and the
// checkpoints the loop takes. Holds workers only through WorkerLink, so it runs in memory too.
import type { DataShape } from '../../shared/data/data-source.js';
import { RingtrainError } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import type { Logger } from '../../shared/logger.js';
import { cursorOf, epochOfStepsDone } from '../../shared/shard-plan.js';
import type { CheckpointStore } from '../run/checkpoint-store.js';
import type { EventLog } from '../run/event-log.js';
import type { ProgressReporter } from '../run/progress-reporter.js';
import type { RunDirectory } from '../run/run-directory.js';
import type { CallbackRunner } from '../training-callbacks.js';
import type { EarlyStopping } from './early-stopping.js';
import { Evaluator } from './evaluator.js';
import { LivenessMonitor } from './liveness-monitor.js';
import type { Generation, Membership, RingMember } from './membership.js';
import { regroup } from './recovery.js';
import { asStepFailure, type StepFailedError } from './step-failure.js';
import type { StragglerDetector } from './straggler-detector.js';
import { newLoopResult, trainLoop, type LoopContext, type LoopResult } from './training-loop.js';

export interface ElasticContext {
  job: Job;
  dataset: DataShape;
  runDir: RunDirectory;
  checkpoints: CheckpointStore;
  /** train()'s callbacks and the job's hooks; owns the learning rates. */
  callbacks: CallbackRunner;
  reporter: ProgressReporter;
  logger: Logger;
  events: EventLog;
  stragglers: StragglerDetector;
  membership: Membership;
  bounds: { min: number; max: number };
  stepTimeoutMs: number;
  /** See LoopContext.recordParamHashes. */
  recordParamHashes: boolean;
  /** How long a regroup waits for a new ring to report Ready and load its state. */
  readyTimeoutMs: number;
  /** Stop after this global step (a run-control flag, not part of the job). */
  stopAtStep: number | undefined;
  /** Aborted on SIGTERM/SIGINT: checkpoint at the next boundary and stop. */
  stopSignal: AbortSignal;
  /** How long a regroup below workers.min waits for replacements (asked at each regroup). */
  replacementMs: () => number;
  /** A hung rank was evicted (embedded mode kills its process). */
  onEvicted: (member: RingMember) => void;
  /** Request ids for blob requests, unique across the coordinator. */
  nextRequestId: () => number;
}

export class ElasticTraining {
  /** The ring now; replaced by every regroup. */
  generation: Generation;

  constructor(
    private readonly ctx: ElasticContext,
    generation: Generation,
  ) {
    this.generation = generation;
  }

  /** Trains steps [startStep, last), regrouping after every failure or to admit new workers. */
  async run(startStep: number, earlyStopping: EarlyStopping | undefined): Promise<LoopResult> {
    const result = newLoopResult(startStep);
    const evaluator = new Evaluator(this.ctx.stepTimeoutMs);
    const monitor = this.watchLiveness(result);
    let step = startStep;
    try {
      for (let attempt = 0; ; attempt++) {
        const generation = this.generation;
        try {
          // Commit: steps run and checkpoints are taken until the loop ends or asks to regroup.
          await trainLoop(this.loopContext(generation, evaluator, earlyStopping), step, result);
          if (!result.regroupRequested) return result;
          // Grow: new workers wait, and there is room for them at this boundary.
          step = await this.regroup(generation, undefined, result.finalStep);
        } catch (error) {
          const failure = asStepFailure(error, generation, result.finalStep);
          if (failure === undefined) throw error;
          // Restore: evict the failed ranks, continue from the most advanced surviving state.
          this.ctx.reporter.note(`worker failure: ${failure.message}; regrouping`);
          step = await this.regroup(generation, failure, result.finalStep);
          this.logFinishedStep(failure, result, step);
          this.ctx.reporter.note(
            `continuing from step ${step} with ${this.generation.members.length} workers (generation ${this.generation.generation})`,
          );
        }
        if (attempt > 1000) throw new RingtrainError('too many regroups');
      }
    } finally {
      monitor.close();
    }
  }

  private loopContext(
    generation: Generation,
    evaluator: Evaluator,
    earlyStopping: EarlyStopping | undefined,
  ): LoopContext {
    const { ctx } = this;
    return {
      job: ctx.job,
      dataset: ctx.dataset,
      generation,
      runDir: ctx.runDir,
      checkpoints: ctx.checkpoints,
      evaluator,
      earlyStopping,
      callbacks: ctx.callbacks,
      reporter: ctx.reporter,
      logger: ctx.logger,
      stepTimeoutMs: ctx.stepTimeoutMs,
      recordParamHashes: ctx.recordParamHashes,
      stopAtStep: ctx.stopAtStep,
      events: ctx.events,
      stragglers: ctx.stragglers,
      stopSignal: ctx.stopSignal,
      shouldRegroup: () => ctx.membership.joinerCount > 0 && generation.members.length < ctx.bounds.max,
      checkpoint: (next, metrics) => this.checkpoint(generation, next, metrics, earlyStopping),
    };
  }

  /** Evicts ranks whose control stream went silent (SIGSTOP, a cut link). */
  private watchLiveness(result: LoopResult): LivenessMonitor {
    return new LivenessMonitor(
      () => this.generation.members,
      this.ctx.job.timeouts.hangMs,
      (member, silentMs) => {
        this.ctx.events.record(
          'eviction',
          member.rank,
          result.finalStep,
          `${member.session.hello.host} pid ${member.session.hello.pid} sent nothing for ${Math.round(silentMs / 1000)} s (last finished step ${member.session.lastStep}); evicting it`,
        );
        member.session.abort(`no heartbeat for ${Math.round(silentMs / 1000)} s`);
        this.ctx.onEvicted(member);
      },
      (member, busy) =>
        this.ctx.reporter.note(
          `rank ${member.rank} (${member.session.hello.host} pid ${member.session.hello.pid}) has been busy with ${busy.kind} ${busy.step} for ${Math.round(busy.busyMs / 1000)} s; its heartbeats arrive, so it is slow, not hung`,
        ),
    );
  }

  /**
   * A rank that finished the failed step carried it forward (unless it died before handing its
   * state over, and the ring continues from an earlier step): log the step like any other.
   */
  private logFinishedStep(failure: StepFailedError, result: LoopResult, continuesAt: number): void {
    const finished = failure.outcomes.find((o) => o.kind === 'done');
    if (finished?.kind === 'done' && continuesAt === failure.step + 1) {
      this.ctx.runDir.appendMetrics({
        type: 'step',
        step: failure.step,
        loss: finished.report.loss,
        samples: finished.report.globalCount,
        skipped: finished.report.skipped,
        ...(finished.report.paramHash === '' ? {} : { paramHash: finished.report.paramHash }),
        recoveredFrom: 'rank that completed the step before the failure',
      });
      // Counted in the epoch's train loss: the ring carries on from that rank's state.
      result.settledByFailure = {
        step: failure.step,
        loss: finished.report.loss,
        globalCount: finished.report.globalCount,
        skipped: finished.report.skipped,
      };
    }
  }

  /** Forms the next generation; returns the step it continues from. */
  private async regroup(
    previous: Generation,
    failure: StepFailedError | undefined,
    boundaryStep: number,
  ): Promise<number> {
    const { ctx } = this;
    const regrouped = await regroup({
      membership: ctx.membership,
      previous,
      failure,
      boundaryStep,
      bounds: ctx.bounds,
      dataHash: ctx.dataset.hash,
      readyTimeoutMs: ctx.readyTimeoutMs,
      replacementMs: ctx.replacementMs(),
      events: ctx.events,
      logger: ctx.logger,
      abort: ctx.stopSignal,
      runDirPath: ctx.runDir.path,
      saveBeforeFailing: async (state, step) => {
        const cursor = cursorOf(step, ctx.dataset.train.count, ctx.job.training.batchSize);
        await ctx.checkpoints.save({ step, ...cursor, state });
      },
      hasCheckpoint: async () => (await ctx.checkpoints.list()).length > 0,
    });
    this.generation = regrouped.generation;
    ctx.stragglers.reset();
    return regrouped.startStep;
  }

  /** Takes a checkpoint of rank 0's state (all ranks hold the same one). */
  private async checkpoint(
    generation: Generation,
    nextStep: number,
    metrics: Record<string, number>,
    earlyStopping: EarlyStopping | undefined,
  ): Promise<void> {
    const { ctx } = this;
    const state = await leader(generation).session.fetchBlob(ctx.nextRequestId(), 'state', ctx.stepTimeoutMs);
    const cursor = cursorOf(nextStep, ctx.dataset.train.count, ctx.job.training.batchSize);
    const finite = Object.fromEntries(Object.entries(metrics).filter(([, v]) => Number.isFinite(v)));
    const info = await ctx.checkpoints.save({
      step: nextStep,
      ...cursor,
      state,
      metrics: finite,
      extra: { earlyStopping: earlyStopping?.exportState() ?? null },
    });
    const epoch = epochOfStepsDone(nextStep, ctx.dataset.train.count, ctx.job.training.batchSize);
    await ctx.callbacks.emit('onCheckpoint', { epoch, step: nextStep, dir: info.dir, metrics: finite });
  }
}

export function leader(generation: Generation): RingMember {
  const member = generation.members[0];
  if (member === undefined) throw new RingtrainError('the ring has no members');
  return member;
}
