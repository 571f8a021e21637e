// The coordinator: owns the run directory, membership, the step cursor, validation and
// checkpoints. It sets up (server, workers, ring, initial state), hands over to the training
// loop, then finishes (test metrics, final model, summary) and tears everything down.
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../shared/atomic-file.js';
import { assertBackendInstalled, expectedBackend } from '../shared/backend-check.js';
import { loadDataset, type Dataset } from '../shared/data/dataset.js';
import { PreemptedError, rethrowStorageFull, RingtrainError, WorkerFailedError } from '../shared/errors.js';
import { jobHash, workerBounds } from '../shared/job.js';
import type { Job } from '../shared/job-schema.js';
import { componentLogger, type Logger } from '../shared/logger.js';
import { assertFitsMemory } from '../shared/memory-estimate.js';
import { cursorOf } from '../shared/shard-plan.js';
import { CheckpointStore } from './run/checkpoint-store.js';
import { ControlServer } from './session/control-server.js';
import type { WorkerSession } from './session/worker-session.js';
import { EarlyStopping } from './loop/early-stopping.js';
import { EventLog } from './run/event-log.js';
import { Evaluator } from './loop/evaluator.js';
import { LivenessMonitor } from './loop/liveness-monitor.js';
import { LocalWorkers } from './local-workers.js';
import { Membership, type Generation, type RingMember } from './loop/membership.js';
import { ProgressReporter } from './run/progress-reporter.js';
import { regroup, type Regrouped } from './loop/recovery.js';
import { openRunDirectory } from './run/open-run.js';
import { readMetrics, type RunDirectory } from './run/run-directory.js';
import { asStepFailure, type StepFailedError } from './loop/step-failure.js';
import { finish, type RunSummary } from './run/run-summary.js';

export type { RunSummary } from './run/run-summary.js';
import { StragglerDetector } from './loop/straggler-detector.js';
import { newLoopResult, trainLoop, type LoopResult } from './loop/training-loop.js';
import { UserHooks } from './user-hooks.js';

export interface CoordinatorOptions {
  job: Job;
  /** Where the job came from, for messages. */
  jobSource: string;
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** Spawn this many local workers (embedded mode); 0 = wait for workers to join from elsewhere. */
  localWorkers: number;
  /** GPU index per local worker; empty for none. */
  gpus: number[];
  /** Explicit run directory (`--out`). */
  outDir?: string;
  /** Run directory to resume (`--resume`). */
  resumeDir?: string;
  runsRoot?: string;
  /** Stop this run after global step K, checkpointing there (not part of the job: --resume goes on). */
  stopAtStep?: number;
  /** @default 120000 */
  joinTimeoutMs?: number;
  /** @default 300000 */
  stepTimeoutMs?: number;
  reporter?: ProgressReporter;
  /** Aborting stops the run at the next step boundary (SIGINT/SIGTERM). */
  signal?: AbortSignal;
}

export async function runCoordinator(options: CoordinatorOptions): Promise<RunSummary> {
  const { job } = options;
  const logger = componentLogger('coordinator');
  // Validate everything local before any process starts: dataset, hooks, then the port, and only
  // then create the run directory, so a mistake leaves nothing behind.
  const dataset = loadDataset(job);
  const hooks = await UserHooks.load(job.hooks);
  if (options.localWorkers > 0) assertBackendInstalled(job.backend);
  const bounds =
    options.localWorkers > 0
      ? { min: Math.min(workerBounds(job).min, options.localWorkers), max: options.localWorkers }
      : workerBounds(job);
  // A step that cannot fit the backend's memory is a configuration error, not a worker crash.
  // RINGTRAIN_MEMORY_CHECK=off skips it, for a model the estimate judges wrongly (and for drills).
  if (process.env['RINGTRAIN_MEMORY_CHECK'] !== 'off') assertFitsMemory(job, bounds.min, expectedBackend(job.backend));
  // Workers that say Hello while the coordinator is still starting (their port opened with ours;
  // in Kubernetes that is the normal case) wait here and are offered once membership exists.
  const admit: { membership?: Membership; early: WorkerSession[] } = { early: [] };
  const server = await ControlServer.start({
    host: options.host,
    port: options.port,
    logger,
    onSession: (s) => {
      if (admit.membership !== undefined) admit.membership.offer(s);
      else admit.early.push(s);
    },
  });
  await startupFaultDelay();
  const runDir = await openRunDirectory(options).catch(async (error: unknown) => {
    await server.close();
    throw error;
  });
  const membership = new Membership(job, jobHash(job), runDir.path, logger, bounds.max);
  admit.membership = membership;
  for (const session of admit.early.splice(0)) membership.offer(session);
  const run = new CoordinatorRun(options, dataset, hooks, server, runDir, membership, bounds, logger);
  let failed = true;
  try {
    const summary = await run.execute();
    failed = false;
    return summary;
  } finally {
    // Closing flushes metrics.jsonl; after a failure (a full disk, say) that can fail too, and
    // must not hide the error that ended the run.
    await run.close().catch((error: unknown) => {
      if (!failed) throw error;
      logger.warn({ err: error }, 'could not close the run cleanly after it failed');
    });
  }
}

/** One coordinator run: owns the workers, the current generation and the event log. */
class CoordinatorRun {
  private readonly reporter: ProgressReporter;
  private readonly events: EventLog;
  private readonly checkpoints: CheckpointStore;
  private readonly stragglers: StragglerDetector;
  private readonly abort = new AbortController();
  private readonly workers: LocalWorkers | undefined;
  private readonly hash: string;
  private generation: Generation | undefined;
  private ringFormed = false;
  private restartsLeft: number;
  private requestId = 1;
  private readonly killOnExit = (): void => this.workers?.killAllNow();

  constructor(
    private readonly options: CoordinatorOptions,
    private readonly dataset: Dataset,
    private readonly hooks: UserHooks,
    private readonly server: ControlServer,
    private readonly runDir: RunDirectory,
    private readonly membership: Membership,
    private readonly bounds: { min: number; max: number },
    private readonly logger: Logger,
  ) {
    const { job } = options;
    this.hash = jobHash(job);
    this.reporter = options.reporter ?? new ProgressReporter();
    this.events = new EventLog(logger, (event) => runDir.appendMetrics({ type: 'event', ...event }));
    this.checkpoints = new CheckpointStore(runDir.checkpointsDir, {
      keep: job.checkpoint.keep,
      jobHash: this.hash,
      logger,
    });
    this.restartsLeft = job.restartWorkers;
    this.stragglers = new StragglerDetector(job.stragglers.margin, job.stragglers.patienceSteps, (r) =>
      this.events.record(
        'straggler',
        r.rank,
        r.step,
        `rank ${r.rank} on ${r.host} has computed more than ${Math.round(job.stragglers.margin * 100)}% slower than the median for ${job.stragglers.patienceSteps} steps (${r.computeMs.toFixed(1)} ms vs ${r.medianMs.toFixed(1)} ms)`,
      ),
    );
    this.workers =
      options.localWorkers > 0
        ? new LocalWorkers({
            count: options.localWorkers,
            coordinatorAddress: server.localAddress,
            gpus: options.gpus,
            logger,
            onExit: (i, code, sig) => this.onLocalWorkerExit(i, code, sig),
          })
        : undefined;
    process.once('exit', this.killOnExit);
    options.signal?.addEventListener('abort', () => this.abort.abort(options.signal?.reason), { once: true });
  }

  async execute(): Promise<RunSummary> {
    const { job } = this.options;
    // Where to find this coordinator (tests, scripts and operators read it).
    const addressFile = path.join(this.runDir.path, 'coordinator.json');
    await writeFileAtomic(
      addressFile,
      JSON.stringify({ host: this.server.host, port: this.server.port, pid: process.pid, hostname: os.hostname() }),
    ).catch((error: unknown) => rethrowStorageFull(error, addressFile));
    this.reporter.note(`ringtrain: run ${this.runDir.path}`);
    if (this.workers === undefined)
      this.reporter.note(
        `coordinator listening on ${this.server.host}:${this.server.port}, waiting for ${this.bounds.max} workers`,
      );
    this.workers?.start();
    try {
      const joinTimeoutMs = this.options.joinTimeoutMs ?? 120_000;
      const sessions = await raceAbort(
        this.membership.waitForWorkers(this.bounds.max, joinTimeoutMs, this.abort.signal),
        this.abort.signal,
      );
      this.generation = await raceAbort(
        this.membership.formRing(sessions, this.dataset.hash, joinTimeoutMs),
        this.abort.signal,
      );
      this.ringFormed = true;
      const earlyStopping =
        job.validation.earlyStopping === undefined ? undefined : new EarlyStopping(job.validation.earlyStopping);
      const startStep = await this.restoreState(this.generation, earlyStopping);
      this.reporter.note(
        `${this.generation.members.length} workers (${this.generation.members[0]?.backend ?? '?'} backend), ${this.generation.paramCount.toLocaleString('en-US')} parameters, ${this.dataset.train.count}/${this.dataset.validation.count}/${this.dataset.test.count} train/validation/test samples${startStep > 0 ? `, resuming at step ${startStep}` : ''}`,
      );
      await this.hooks.call('onTrainBegin', {
        job,
        worldSize: this.generation.members.length,
        startStep,
        runDir: this.runDir.path,
      });
      const loop = await this.trainElastic(startStep, earlyStopping);
      if (loop.preempted) throw new PreemptedError(loop.finalStep, this.runDir.path);
      const summary = await this.finish(loop, startStep);
      for (const member of this.generation.members) member.session.shutdown('training complete');
      return summary;
    } catch (error) {
      const reason = `job failed: ${error instanceof Error ? error.message : String(error)}`;
      for (const member of this.generation?.members ?? []) member.session.shutdown(reason);
      this.membership.shutdownAll(reason); // also workers of a ring that failed to form, and spares
      throw error;
    }
  }

  /** The training loop, re-entered after every regroup (failure or growth). */
  private async trainElastic(startStep: number, earlyStopping: EarlyStopping | undefined): Promise<LoopResult> {
    const { job } = this.options;
    const stepTimeoutMs = this.options.stepTimeoutMs ?? 300_000;
    const evaluator = new Evaluator(stepTimeoutMs);
    const result = newLoopResult(startStep);
    const monitor = new LivenessMonitor(
      () => this.generation?.members ?? [],
      job.timeouts.hangMs,
      (member, silentMs) => {
        this.events.record(
          'eviction',
          member.rank,
          result.finalStep,
          `${member.session.hello.host} pid ${member.session.hello.pid} sent nothing for ${Math.round(silentMs / 1000)} s (last finished step ${member.session.lastStep}); evicting it`,
        );
        member.session.abort(`no heartbeat for ${Math.round(silentMs / 1000)} s`);
        this.workers?.kill(member.session.hello.pid);
      },
      (member, busy) =>
        this.reporter.note(
          `rank ${member.rank} (${member.session.hello.host} pid ${member.session.hello.pid}) has been busy with ${busy.kind} ${busy.step} for ${Math.round(busy.busyMs / 1000)} s; its heartbeats arrive, so it is slow, not hung`,
        ),
    );
    let step = startStep;
    try {
      for (let attempt = 0; ; attempt++) {
        const generation = this.generation;
        if (generation === undefined) throw new RingtrainError('no ring');
        try {
          await trainLoop(
            {
              job,
              dataset: this.dataset,
              generation,
              runDir: this.runDir,
              checkpoints: this.checkpoints,
              evaluator,
              earlyStopping,
              hooks: this.hooks,
              reporter: this.reporter,
              logger: this.logger,
              stepTimeoutMs,
              stopAtStep: this.options.stopAtStep,
              events: this.events,
              stragglers: this.stragglers,
              stopSignal: this.abort.signal,
              shouldRegroup: () => this.membership.joinerCount > 0 && generation.members.length < this.bounds.max,
              checkpoint: (next, metrics) => this.checkpoint(generation, next, metrics, earlyStopping),
            },
            step,
            result,
          );
          if (!result.regroupRequested) return result;
          ({ generation: this.generation, startStep: step } = await this.regroup(
            generation,
            undefined,
            result.finalStep,
          ));
          this.stragglers.reset();
        } catch (error) {
          const failure = asStepFailure(error, generation, result.finalStep);
          if (failure === undefined) throw error;
          this.reporter.note(`worker failure: ${failure.message}; regrouping`);
          ({ generation: this.generation, startStep: step } = await this.regroup(
            generation,
            failure,
            result.finalStep,
          ));
          // A rank that finished the failed step carried it forward (unless it died before
          // handing its state over): log the step like any other.
          const finished = failure.outcomes.find((o) => o.kind === 'done');
          if (finished?.kind === 'done' && step === failure.step + 1) {
            this.runDir.appendMetrics({
              type: 'step',
              step: failure.step,
              loss: finished.report.loss,
              samples: finished.report.globalCount,
              skipped: finished.report.skipped,
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
          this.stragglers.reset();
          this.reporter.note(
            `continuing from step ${step} with ${this.generation.members.length} workers (generation ${this.generation.generation})`,
          );
        }
        if (attempt > 1000) throw new RingtrainError('too many regroups');
      }
    } finally {
      monitor.close();
    }
  }

  private async regroup(
    previous: Generation,
    failure: StepFailedError | undefined,
    boundaryStep: number,
  ): Promise<Regrouped> {
    return regroup({
      membership: this.membership,
      previous,
      failure,
      boundaryStep,
      bounds: this.bounds,
      dataHash: this.dataset.hash,
      readyTimeoutMs: this.options.joinTimeoutMs ?? 120_000,
      replacementMs: this.replacementWaitMs(),
      events: this.events,
      logger: this.logger,
      abort: this.abort.signal,
      saveBeforeFailing: async (state, step) => {
        const cursor = cursorOf(step, this.dataset.train.count, this.options.job.training.batchSize);
        await this.checkpoints.save({ step, ...cursor, state });
      },
      hasCheckpoint: async () => (await this.checkpoints.list()).length > 0,
    });
  }

  /**
   * Embedded mode with no restarts left, nobody waiting and no respawned local worker still
   * starting: no replacement can come, so the wait is short. A replacement that is still starting
   * (two workers lost at once, on a busy machine) gets the job's whole timeouts.replacementMs.
   */
  private replacementWaitMs(): number {
    const full = this.options.job.timeouts.replacementMs;
    if (this.workers === undefined || this.restartsLeft > 0 || this.membership.joinerCount > 0) return full;
    const starting = this.workers.alivePids().some((pid) => !this.membership.hasLiveSession(pid));
    return starting ? full : Math.min(5_000, full);
  }

  /** Takes a checkpoint of rank 0's state (all ranks hold the same one). */
  private async checkpoint(
    generation: Generation,
    nextStep: number,
    metrics: Record<string, number>,
    earlyStopping: EarlyStopping | undefined,
  ): Promise<void> {
    const state = await leader(generation).session.fetchBlob(
      this.requestId++,
      'state',
      this.options.stepTimeoutMs ?? 300_000,
    );
    const cursor = cursorOf(nextStep, this.dataset.train.count, this.options.job.training.batchSize);
    const finite = Object.fromEntries(Object.entries(metrics).filter(([, v]) => Number.isFinite(v)));
    const info = await this.checkpoints.save({
      step: nextStep,
      ...cursor,
      state,
      metrics: finite,
      extra: { earlyStopping: earlyStopping?.exportState() ?? null },
    });
    await this.hooks.call('onCheckpoint', { step: nextStep, dir: info.dir, metrics: finite });
  }

  /** Embedded mode: a local worker exited. Before the ring forms that is fatal; after, respawn. */
  private onLocalWorkerExit(index: number, code: number | null, signal: NodeJS.Signals | null): void {
    const how = `exited (code ${code ?? '-'}, signal ${signal ?? '-'})`;
    if (!this.ringFormed) {
      this.abort.abort(
        new WorkerFailedError(index, `local worker ${index} ${how} before training started; see its error above`),
      );
      return;
    }
    if (this.restartsLeft > 0) {
      this.restartsLeft -= 1;
      this.events.record(
        'restart',
        -1,
        -1,
        `local worker ${index} ${how}; starting a replacement (${this.restartsLeft} restarts left)`,
      );
      this.workers?.respawn(index);
    }
  }

  /**
   * On resume, loads the most advanced state into every rank and returns the step to start at:
   * the newest valid checkpoint, or the in-memory state of a rejoining worker when that is newer
   * (workers keep their replica when a coordinator dies, and reconnect to its successor).
   */
  private async restoreState(generation: Generation, earlyStopping: EarlyStopping | undefined): Promise<number> {
    const latest = this.options.resumeDir === undefined ? undefined : await this.checkpoints.loadLatestValid();
    for (const warning of latest?.warnings ?? []) {
      this.reporter.note(`warning: ${warning}`);
      this.events.record('checkpoint-fallback', -1, latest?.info.step ?? 0, warning);
    }
    const esState = latest?.info.extra?.['earlyStopping'];
    if (earlyStopping !== undefined && esState !== null && typeof esState === 'object')
      earlyStopping.importState(esState as Record<string, number>);
    const veteran = generation.members
      .filter((m) => m.session.hello.jobHash === this.hash)
      .sort((a, b) => b.session.hello.completedSteps - a.session.hello.completedSteps)[0];
    const checkpointStep = latest?.info.step ?? 0;
    if (veteran !== undefined && veteran.session.hello.completedSteps > checkpointStep) {
      const step = veteran.session.hello.completedSteps;
      const state = await veteran.session.fetchBlob(this.requestId++, 'state', 120_000);
      await this.broadcastState(generation, state, veteran);
      this.events.record(
        'recovery',
        veteran.rank,
        step,
        `continuing from the in-memory state of rank ${veteran.rank} (step ${step}), newer than the checkpoint (step ${checkpointStep})`,
      );
      this.reporter.note(`resumed from the in-memory state of a rejoining worker at step ${step}`);
      this.logUnrecordedSteps(step);
      return step;
    }
    if (latest === undefined) {
      if (this.options.resumeDir !== undefined)
        this.reporter.note('no valid checkpoint to resume from; starting from step 0');
      return 0;
    }
    await this.broadcastState(generation, latest.state, undefined);
    this.reporter.note(`resumed from checkpoint ${latest.info.dir}`);
    return latest.info.step;
  }

  /** Steps the workers finished while no coordinator recorded them still get their line (without a loss). */
  private logUnrecordedSteps(upTo: number): void {
    const logged = new Set(
      readMetrics(this.runDir.metricsFile)
        .filter((r) => r['type'] === 'step')
        .map((r) => Number(r['step'])),
    );
    for (let step = 0; step < upTo; step++)
      if (!logged.has(step))
        this.runDir.appendMetrics({
          type: 'step',
          step,
          unrecorded: 'finished by the workers while the coordinator was down',
        });
  }

  private async broadcastState(
    generation: Generation,
    state: Uint8Array,
    except: RingMember | undefined,
  ): Promise<void> {
    const requestId = this.requestId++;
    const targets = generation.members.filter((m) => m !== except);
    for (const member of targets) member.session.sendState(requestId, state);
    await Promise.all(targets.map((m) => m.session.waitAck(requestId, 120_000)));
  }

  private async finish(loop: LoopResult, startStep: number): Promise<RunSummary> {
    const generation = this.generation;
    if (generation === undefined) throw new RingtrainError('no ring');
    return finish(generation, this.dataset, new Evaluator(this.options.stepTimeoutMs ?? 300_000), this.runDir, loop, {
      job: this.options.job,
      hash: this.hash,
      reporter: this.reporter,
      hooks: this.hooks,
      requestId: this.requestId++,
      stepTimeoutMs: this.options.stepTimeoutMs ?? 300_000,
      startStep,
      events: this.events,
      stragglers: this.stragglers.reports,
    });
  }

  async close(): Promise<void> {
    await this.workers?.stopAll();
    process.removeListener('exit', this.killOnExit);
    await this.server.close();
    await this.runDir.close();
  }
}

/**
 * Fault injection for drills and tests: RINGTRAIN_FAULT_START_DELAY_MS holds the coordinator this
 * long between opening its port and being ready to admit workers, widening the startup window.
 */
async function startupFaultDelay(): Promise<void> {
  const ms = Number(process.env['RINGTRAIN_FAULT_START_DELAY_MS'] ?? 0);
  if (Number.isFinite(ms) && ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
}

function leader(generation: Generation): Generation['members'][number] {
  const member = generation.members[0];
  if (member === undefined) throw new RingtrainError('the ring has no members');
  return member;
}

async function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new RingtrainError('run aborted');
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void =>
      reject(signal.reason instanceof Error ? signal.reason : new RingtrainError('run aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
