// The coordinator's composition root: validates the job's local inputs, then wires the control
// server, the run directory, membership and (embedded mode) the local worker processes; forms
// the first ring, loads its starting state (resume-state.ts), hands over to the elastic loop
// (loop/elastic-training.ts), then finishes (test metrics, final model, summary) and tears
// everything down.
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { writeFileAtomic } from '../shared/atomic-file.js';
import { assertBackendInstalled, expectedBackend } from '../shared/backend-check.js';
import { openDataSource, type DataShape } from '../shared/data/data-source.js';
import {
  PreemptedError,
  rethrowStorageFull,
  RingtrainError,
  StoppedBySignalError,
  WorkerFailedError,
  type StopSignal,
} from '../shared/errors.js';
import { jobHash, workerBounds } from '../shared/job.js';
import type { Job } from '../shared/job-schema.js';
import { componentLogger, runIdOf, type Logger } from '../shared/logger.js';
import { assertFitsMemory } from '../shared/memory-estimate.js';
import { buildModel } from '../worker/replica/model-builder.js';
import { checkOutputGuards } from '../worker/replica/output-guards.js';
import { withRunDefaults } from '../shared/run-defaults.js';
import { epochOfStepsDone } from '../shared/shard-plan.js';
import { securityEnv, securityWarning, type JobSecurity } from '../shared/security/job-security.js';
import type { HttpAddress } from '../shared/http-address.js';
import { LocalWorkers } from './local-workers.js';
import { RunMonitor } from './monitor/run-monitor.js';
import { TensorBoardWriter } from './tensorboard/tensorboard-writer.js';
import type { RingView } from './monitor/run-telemetry.js';
import { probeModel } from './model-probe.js';
import { EarlyStopping } from './loop/early-stopping.js';
import { ElasticTraining, type ElasticContext } from './loop/elastic-training.js';
import { Evaluator } from './loop/evaluator.js';
import { Membership, type Generation } from './loop/membership.js';
import { restoreState, type ResumeContext } from './loop/resume-state.js';
import { StragglerDetector } from './loop/straggler-detector.js';
import type { LoopResult } from './loop/training-loop.js';
import { CheckpointStore } from './run/checkpoint-store.js';
import { EventLog } from './run/event-log.js';
import { ProgressReporter } from './run/progress-reporter.js';
import { openRunDirectory } from './run/open-run.js';
import type { RunDirectory } from './run/run-directory.js';
import { writeEndedSummary } from './run/ended-summary.js';
import { assertBatchFits, plannedSteps } from './run/run-plan.js';
import { finish, type RunSummary } from './run/run-summary.js';
import { ControlServer } from './session/control-server.js';
import type { WorkerSession } from './session/worker-session.js';
import { LearningRates } from './loop/learning-rates.js';
import { CallbackRunner, type TrainingCallbacks } from './training-callbacks.js';
import { hooksAsCallbacks, UserHooks } from './user-hooks.js';

export type { RunSummary } from './run/run-summary.js';

export interface CoordinatorOptions {
  job: Job;
  /** Where the job came from, for messages. */
  jobSource: string;
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** Mutual TLS and the job token, for the control server and the local workers. @default none */
  security?: JobSecurity;
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
  /** How long workers have to join and report Ready. @default RUN_DEFAULTS.joinTimeoutMs (600 s) */
  joinTimeoutMs?: number;
  /** @default RUN_DEFAULTS.stepTimeoutMs (300 s) */
  stepTimeoutMs?: number;
  reporter?: ProgressReporter;
  /** Aborting stops the run at the next step boundary (SIGINT/SIGTERM, train()'s signal). */
  signal?: AbortSignal;
  /** train()'s callbacks, called after the job's hooks. */
  callbacks?: readonly TrainingCallbacks[];
  /** onStep runs after every this-many steps. @default 10 */
  onStepEvery?: number;
  /** Serve /metrics and the live dashboard here (`--http`, the job's `http:`). @default off */
  http?: HttpAddress;
}

/** CoordinatorOptions after `withRunDefaults`: every timeout is a number. */
type ResolvedOptions = ReturnType<typeof withRunDefaults<CoordinatorOptions>>;

export async function runCoordinator(given: CoordinatorOptions): Promise<RunSummary> {
  const options = withRunDefaults(given);
  const { job } = options;
  const logger = componentLogger('coordinator');
  // Validate everything local before any process starts: dataset, hooks, then the port, and only
  // then create the run directory, so a mistake leaves nothing behind.
  const dataset = await openDataSource(job);
  assertBatchFits(job, dataset, options.jobSource);
  const hooks = await UserHooks.load(job.hooks);
  if (options.localWorkers > 0) assertBackendInstalled(job.backend);
  const bounds =
    options.localWorkers > 0
      ? { min: Math.min(workerBounds(job).min, options.localWorkers), max: options.localWorkers }
      : workerBounds(job);
  // A step that cannot fit the backend's memory is a configuration error, not a worker crash.
  // RINGTRAIN_MEMORY_CHECK=off skips it, for a model the estimate judges wrongly (and for drills).
  // The model, built once here from its source, must fit the data and the loss (model-probe.ts).
  const probe = await probeModel(job, dataset, options.jobSource);
  if (process.env['RINGTRAIN_MEMORY_CHECK'] !== 'off')
    assertFitsMemory(job, bounds.min, expectedBackend(job.backend), probe);
  // A YAML stack (no probe size: checked by shape arithmetic) is built only once it is known to fit.
  if (probe === undefined) checkModelAgainstLoss(job, dataset);
  // Workers that say Hello while the coordinator is still starting (their port opened with ours;
  // in Kubernetes that is the normal case) wait here and are offered once membership exists.
  const admit: { membership?: Membership; early: WorkerSession[] } = { early: [] };
  const security = options.security ?? {};
  const server = await ControlServer.start({
    host: options.host,
    port: options.port,
    logger,
    security,
    onSession: (s) => {
      if (admit.membership !== undefined) admit.membership.offer(s);
      else admit.early.push(s);
    },
  });
  // The monitor binds before the run directory exists too: a taken --http port leaves nothing.
  const monitor =
    options.http === undefined
      ? undefined
      : await RunMonitor.start({
          ...options.http,
          title: job.name,
          stragglerMargin: job.stragglers.margin,
          logger,
        }).catch(async (error: unknown) => {
          await server.close();
          throw error;
        });
  await startupFaultDelay();
  const runDir = await openRunDirectory(options).catch(async (error: unknown) => {
    await server.close();
    await monitor?.close();
    throw error;
  });
  // From here on every coordinator line names the run.
  const runLogger = logger.child({ runId: runIdOf(runDir.path) });
  const membership = new Membership(job, jobHash(job), runDir.path, runLogger, bounds.max);
  admit.membership = membership;
  for (const session of admit.early.splice(0)) membership.offer(session);
  const learningRates = LearningRates.forJob(job, dataset.train.count, runDir.path);
  const callbacks = new CallbackRunner(
    [hooksAsCallbacks(hooks), ...(options.callbacks ?? []).map((c) => ({ callbacks: c }))],
    learningRates,
    runDir.path,
    options.onStepEvery ?? 10,
  );
  const run = new CoordinatorRun(options, dataset, callbacks, server, runDir, membership, bounds, runLogger, monitor);
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
  /** The elastic loop, from the moment the first ring formed; it owns the current generation. */
  private elastic: ElasticTraining | undefined;
  /** The run's TensorBoard event file (job `tensorboard: true`), from execute() on. */
  private tensorboard: TensorBoardWriter | undefined;
  private ringFormed = false;
  private restartsLeft: number;
  private requestId = 1;
  private readonly killOnExit = (): void => this.workers?.killAllNow();
  /** The CLI aborts with a StoppedBySignalError naming the signal; any other abort is train()'s signal. */
  private readonly onStopSignal = (): void => {
    const reason: unknown = this.options.signal?.reason;
    this.abort.abort(reason instanceof StoppedBySignalError ? reason : new StoppedBySignalError('abort'));
  };

  constructor(
    private readonly options: ResolvedOptions,
    private readonly dataset: DataShape,
    private readonly callbacks: CallbackRunner,
    private readonly server: ControlServer,
    private readonly runDir: RunDirectory,
    private readonly membership: Membership,
    private readonly bounds: { min: number; max: number },
    private readonly logger: Logger,
    private readonly monitor: RunMonitor | undefined,
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
            env: securityEnv(options.security ?? {}),
            onExit: (i, code, sig) => this.onLocalWorkerExit(i, code, sig),
          })
        : undefined;
    process.once('exit', this.killOnExit);
    // A signal that came during setup (loading data, binding) stops the run as soon as it starts.
    if (options.signal?.aborted === true) this.onStopSignal();
    else options.signal?.addEventListener('abort', this.onStopSignal, { once: true });
  }

  async execute(): Promise<RunSummary> {
    const { job } = this.options;
    // Where to find this coordinator (tests, scripts and operators read it).
    const addressFile = path.join(this.runDir.path, 'coordinator.json');
    await writeFileAtomic(
      addressFile,
      JSON.stringify({
        host: this.server.host,
        port: this.server.port,
        pid: process.pid,
        hostname: os.hostname(),
        ...(this.monitor !== undefined ? { http: this.monitor.address } : {}),
      }),
    ).catch((error: unknown) => rethrowStorageFull(error, addressFile));
    this.reporter.note(`ringtrain: run ${this.runDir.path}`);
    // Said once, at start, where the run's other notes go (stdout, not the error stream).
    const warning = securityWarning(this.options.security ?? {}, 'this job');
    if (warning !== undefined) this.reporter.note(`ringtrain: warning: ${warning}`);
    // The one place the monitor reads the run: metrics.jsonl's records and the current ring.
    this.monitor?.attach(this.runDir, () => ringView(this.elastic?.generation));
    if (job.tensorboard) this.tensorboard = TensorBoardWriter.openOrWarn(this.runDir, this.logger);
    if (this.monitor !== undefined)
      this.reporter.note(`dashboard ${this.monitor.url}  metrics ${this.monitor.url}metrics`);
    if (this.workers === undefined)
      this.reporter.note(
        `coordinator listening on ${this.server.host}:${this.server.port}, waiting for ${this.bounds.max} workers`,
      );
    this.workers?.start();
    try {
      const { joinTimeoutMs } = this.options;
      const sessions = await raceAbort(
        this.membership.waitForWorkers(this.bounds.max, joinTimeoutMs, this.abort.signal),
        this.abort.signal,
      );
      const first = await raceAbort(
        this.membership.formRing(sessions, this.dataset.hash, joinTimeoutMs),
        this.abort.signal,
      );
      this.ringFormed = true;
      this.elastic = new ElasticTraining(this.elasticContext(), first);
      const earlyStopping =
        job.validation.earlyStopping === undefined ? undefined : new EarlyStopping(job.validation.earlyStopping);
      const startStep = await restoreState(this.resumeContext(), first, earlyStopping);
      if (this.options.resumeDir !== undefined) await this.callbacks.learningRates.resumeAt(startStep);
      this.reporter.note(
        `${first.members.length} workers (${first.members[0]?.backend ?? '?'} backend), ${first.paramCount.toLocaleString('en-US')} parameters, ${this.dataset.train.count}/${this.dataset.validation.count}/${this.dataset.test.count} train/validation/test samples${startStep > 0 ? `, resuming at step ${startStep}` : ''}`,
      );
      await this.callbacks.emit('onTrainBegin', {
        job,
        worldSize: first.members.length,
        startStep,
        epoch: epochOfStepsDone(startStep, this.dataset.train.count, job.training.batchSize),
        step: startStep,
        metrics: {},
      });
      const loop = await this.elastic.run(startStep, earlyStopping);
      if (loop.preempted) throw new PreemptedError(loop.finalStep, this.runDir.path, stopSignalOf(this.abort.signal));
      const summary = await this.finish(loop, startStep);
      for (const member of this.elastic.generation.members) member.session.shutdown('training complete');
      return summary;
    } catch (error) {
      await writeEndedSummary(this.runDir, this.checkpoints, error, {
        job,
        hash: this.hash,
        plannedSteps: plannedSteps(job, this.dataset),
        events: this.events,
        logger: this.logger,
      });
      const reason = `job failed: ${error instanceof Error ? error.message : String(error)}`;
      for (const member of this.elastic?.generation.members ?? []) member.session.shutdown(reason);
      this.membership.shutdownAll(reason); // also workers of a ring that failed to form, and spares
      throw error;
    }
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

  private elasticContext(): ElasticContext {
    const { job } = this.options;
    return {
      job,
      dataset: this.dataset,
      runDir: this.runDir,
      checkpoints: this.checkpoints,
      callbacks: this.callbacks,
      reporter: this.reporter,
      logger: this.logger,
      events: this.events,
      stragglers: this.stragglers,
      membership: this.membership,
      bounds: this.bounds,
      stepTimeoutMs: this.options.stepTimeoutMs,
      recordParamHashes: this.options.localWorkers === 0,
      readyTimeoutMs: this.options.joinTimeoutMs,
      stopAtStep: this.options.stopAtStep,
      stopSignal: this.abort.signal,
      // Embedded mode with no restart left: nobody will replace the failed worker, so wait little.
      replacementMs: () => this.replacementWaitMs(),
      onEvicted: (member) => this.workers?.kill(member.session.hello.pid),
      nextRequestId: () => this.requestId++,
    };
  }

  private resumeContext(): ResumeContext {
    return {
      resumeDir: this.options.resumeDir,
      jobHash: this.hash,
      checkpoints: this.checkpoints,
      runDir: this.runDir,
      reporter: this.reporter,
      events: this.events,
      nextRequestId: () => this.requestId++,
      stateTimeoutMs: this.options.stepTimeoutMs,
      broadcastInitialState: this.options.job.model.module !== undefined,
    };
  }

  /** Embedded mode: a local worker exited. Before the ring forms that is fatal; after, respawn. */
  private onLocalWorkerExit(index: number, code: number | null, signal: NodeJS.Signals | null): void {
    const how = `exited (code ${code ?? '-'}, signal ${signal ?? '-'})`;
    if (!this.ringFormed) {
      const worker = { rank: -1, host: os.hostname(), pid: this.workers?.pids[index] ?? -1 };
      this.abort.abort(
        new WorkerFailedError(worker, `local worker ${index} ${how} before training started; see its error above`),
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

  private async finish(loop: LoopResult, startStep: number): Promise<RunSummary> {
    const generation = this.elastic?.generation;
    if (generation === undefined) throw new RingtrainError('no ring');
    return finish(generation, this.dataset, new Evaluator(this.options.stepTimeoutMs), this.runDir, loop, {
      job: this.options.job,
      hash: this.hash,
      reporter: this.reporter,
      callbacks: this.callbacks,
      checkpoints: this.checkpoints,
      nextRequestId: () => this.requestId++,
      stepTimeoutMs: this.options.stepTimeoutMs,
      startStep,
      plannedSteps: plannedSteps(this.options.job, this.dataset),
      events: this.events,
      stragglers: this.stragglers.reports,
    });
  }

  async close(): Promise<void> {
    await this.workers?.stopAll();
    process.removeListener('exit', this.killOnExit);
    this.options.signal?.removeEventListener('abort', this.onStopSignal);
    await this.server.close();
    await this.monitor?.close();
    this.tensorboard?.close();
    this.reporter.close();
    await this.runDir.close();
  }
}

/** The ring as the monitor shows it (hosts, generation, buffer size). */
function ringView(generation: Generation | undefined): RingView | undefined {
  if (generation === undefined) return undefined;
  return {
    generation: generation.generation,
    paramCount: generation.paramCount,
    members: generation.members.map((m) => ({ rank: m.rank, host: m.session.hello.host, pid: m.session.hello.pid })),
  };
}

async function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  // When the abort wins, `work` may still fail later (it sees the same abort): that failure is
  // expected, and must not surface as an unhandled rejection in the caller's process.
  work.catch(() => undefined);
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new RingtrainError('run aborted');
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void =>
      reject(signal.reason instanceof Error ? signal.reason : new RingtrainError('run aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** The signal that stopped the run (SIGTERM unless the stop came from a SIGINT). */
function stopSignalOf(signal: AbortSignal): StopSignal {
  return signal.reason instanceof StoppedBySignalError ? signal.reason.signal : 'SIGTERM';
}

/**
 * Fault injection for drills and tests: RINGTRAIN_FAULT_START_DELAY_MS holds the coordinator this
 * long between opening its port and being ready to admit workers, widening the startup window.
 */
async function startupFaultDelay(): Promise<void> {
  const ms = Number(process.env['RINGTRAIN_FAULT_START_DELAY_MS'] ?? 0);
  if (Number.isFinite(ms) && ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Loss, model output and metrics agree (worker/replica/output-guards.ts), checked on the built model. */
function checkModelAgainstLoss(job: Job, dataset: DataShape): void {
  tf.enableProdMode(); // no tfjs console banner ("install tfjs-node") among the coordinator's lines
  const model = buildModel(job);
  try {
    checkOutputGuards(job, dataset.task, model);
  } finally {
    model.dispose();
  }
}
