// A worker process: joins the coordinator, builds its replica, links into the ring, then obeys
// orders (step, evaluate, send/load state, shut down) until told to leave.
import * as os from 'node:os';
import { collectGarbage } from '../../shared/collect-garbage.js';
import { openDataSource } from '../../shared/data/data-source.js';
import { describeError, JobConfigError, JoinRejectedError, RingtrainError } from '../../shared/errors.js';
import { formatIssues, jobHash } from '../../shared/job.js';
import { resolvedJobSchema, type Job } from '../../shared/job-schema.js';
import { componentLogger, runIdOf, type Logger } from '../../shared/logger.js';
import { setStderrRank } from '../../shared/stderr-prefix.js';
import { withRunDefaults } from '../../shared/run-defaults.js';
import { securityWarning, type JobSecurity } from '../../shared/security/job-security.js';
import { ringtrainVersion } from '../../shared/version.js';
import { selectBackend } from '../backend/backend.js';
import type { Hello } from '../../proto/generated/ringtrain/v1/Hello.js';
import { ControlConnection, defaultRetry, type RetryPolicy } from './control-client.js';
import { createJobModel } from '../replica/model-source.js';
import { Replica } from '../replica/replica.js';
import { rogueStep } from '../replica/rogue-fault.js';
import { RingEndpoint } from '../transport/ring-endpoint.js';
import { TrainerReplica } from '../replica/trainer-replica.js';
import { WorkerRuntime } from './worker-runtime.js';

export interface WorkerOptions {
  /** Coordinator host:port. */
  coordinator: string;
  /** Address to bind the ring data server on (the CLI: 127.0.0.1 without TLS, 0.0.0.0 with it). */
  bindHost: string;
  /** Host other workers use to reach this one. @default os.hostname() */
  advertiseHost: string;
  /** @default 0 (ephemeral) */
  dataPort: number;
  rankHint: number;
  gpuIndex: number;
  /** Hash of the worker's own job file, checked against the coordinator's; '' = take the coordinator's. */
  jobHash: string;
  backendOverride?: string;
  retry?: RetryPolicy;
  /** Overrides the job's timeouts.collectiveMs. */
  collectiveTimeoutMs?: number;
  /** Aborting makes the worker leave cleanly: runWorker then resolves. */
  signal?: AbortSignal;
  /**
   * After losing the coordinator, keep the replica and try to rejoin a restarted coordinator at
   * the same address for this long; 0 = exit at once (embedded workers). @default RUN_DEFAULTS.reconnectMs
   */
  reconnectMs?: number;
  /** Mutual TLS on both planes and the job token this worker presents. @default none (plaintext) */
  security?: JobSecurity;
}

/** How long a failing worker waits for its WorkerFailure to leave before exiting anyway. */
const FAILURE_SEND_MS = 2_000;

/** Runs until the coordinator says shutdown (resolves) or something breaks (throws). */
export async function runWorker(given: WorkerOptions): Promise<void> {
  const options = withRunDefaults(given);
  let logger = componentLogger('worker');
  const security = options.security ?? {};
  // Info, not warn: the coordinator says it once for the whole job (a worker's stderr is for
  // failures). Logged once joined, so the line carries the run's id like every other.
  const warning = securityWarning(security, 'this worker');
  const server = await RingEndpoint.start({ host: options.bindHost, port: options.dataPort, logger, security });
  const hello = (position: { completedSteps: number; generation: number }, jobHash: string): Hello => ({
    host: os.hostname(),
    dataAddress: `${options.advertiseHost}:${server.port}`,
    pid: process.pid,
    jobHash,
    gpuIndex: options.gpuIndex,
    rankHint: options.rankHint,
    version: ringtrainVersion(),
    ...position,
  });
  let connection: ControlConnection | undefined;
  let runtime: WorkerRuntime | undefined;
  try {
    connection = await ControlConnection.connect(
      options.coordinator,
      hello(
        rogueStep === undefined ? { completedSteps: 0, generation: 0 } : { completedSteps: rogueStep, generation: 1 },
        options.jobHash,
      ),
      options.retry ?? defaultRetry(),
      logger,
      { security },
    );
    // The run's lines carry its id; WorkerRuntime adds the rank and generation of each ring.
    logger = componentLogger('worker', { runId: runIdOf(connection.welcome.runId) });
    if (warning !== undefined) logger.info({ bind: options.bindHost }, warning);
    setStderrRank(connection.welcome.rank);
    const job = parseWireJob(connection.welcome.jobJson);
    if (options.backendOverride !== undefined) job.backend = options.backendOverride as Job['backend'];
    const backend = await selectBackend(job.backend, logger);
    const dataset = await openDataSource(job);
    await collectGarbage(); // the raw samples: before the model and the first steps pile up on them
    // The job came over the network, but no code in it is evaluated: a `module` model is imported
    // from this worker's own disk (a file: URL), and only once its digest matched the coordinator's.
    checkModelFiles(job, connection.welcome.jobHash);
    const replica = new Replica(await createJobModel(job), job, labelScaleOf(dataset.normalization));
    runtime = new WorkerRuntime(
      connection,
      server,
      job,
      dataset,
      replica,
      new TrainerReplica(job, dataset, replica),
      backend.name,
      options.collectiveTimeoutMs ?? job.timeouts.collectiveMs,
      logger,
    );
    for (;;) {
      const current = connection;
      const onSignal = (): void => current.close();
      options.signal?.addEventListener('abort', onSignal, { once: true });
      await runtime.join(current.welcome);
      const ended = await obey(current, runtime, logger, options.signal);
      options.signal?.removeEventListener('abort', onSignal);
      if (ended !== 'lost') break;
      // The coordinator died: keep the replica and rejoin its successor (which may resume from it).
      const { reconnectMs } = options;
      if (reconnectMs <= 0) throw new RingtrainError(`lost the coordinator: ${current.ended ?? 'stream ended'}`);
      current.close();
      logger.warn({ reconnectMs, ...runtime.position }, 'lost the coordinator; trying to rejoin a restarted one');
      connection = await ControlConnection.connect(
        options.coordinator,
        hello(runtime.position, runtime.jobHash),
        retryFor(reconnectMs),
        logger,
        { security },
      );
      runtime.attach(connection);
    }
    replica.dispose();
  } catch (error) {
    // Tell the coordinator why before going: otherwise all it sees is the stream ending.
    // Bounded: a coordinator that stopped reading must not keep this worker from exiting.
    await connection?.sendLast({ failure: { code: errorCode(error), message: describeError(error) } }, FAILURE_SEND_MS);
    throw error;
  } finally {
    await runtime?.close();
    connection?.close();
    await server.close();
  }
}

/** Backoff attempts (the default backoff) that add up to about `totalMs`. */
function retryFor(totalMs: number): RetryPolicy {
  const policy = defaultRetry();
  return { ...policy, attempts: Math.max(2, 5 + Math.ceil(totalMs / policy.maxDelayMs)) };
}

/** Processes orders one at a time, in order; `shutdown` and a closed stream end the loop. */
async function obey(
  connection: ControlConnection,
  runtime: WorkerRuntime,
  logger: Logger,
  signal: AbortSignal | undefined,
): Promise<'shutdown' | 'signal' | 'lost'> {
  const stateParts: Buffer[] = [];
  for (;;) {
    const message = await connection.next();
    if (message === undefined && signal?.aborted === true) {
      logger.info('leaving on a signal');
      return 'signal';
    }
    if (message === undefined) return 'lost';
    // Refused after the Welcome (e.g. it runs a different backend from the other ranks): fatal.
    if (message.kind === 'reject')
      throw new JoinRejectedError(message.reject?.code ?? 'UNKNOWN', message.reject?.message ?? '');
    if (message.kind === 'shutdown') {
      logger.info({ reason: message.shutdown?.reason }, 'coordinator asked this worker to leave');
      return 'shutdown';
    }
    if (message.kind === 'loadState' && message.loadState) {
      stateParts.push(message.loadState.data);
      if (message.loadState.last) {
        runtime.importState(Buffer.concat(stateParts.splice(0)));
        connection.send({ ack: { requestId: message.loadState.requestId } });
      }
      continue;
    }
    await runtime.handle(message);
  }
}

/** A short code for a WorkerFailure: the error's class name (`DatasetError`, `RangeError`, ...). */
function errorCode(error: unknown): string {
  return error instanceof Error ? error.name : 'Error';
}

/** The job arrives as JSON from the coordinator; it is validated like any other input. */
function parseWireJob(json: string): Job {
  const parsed = resolvedJobSchema.safeParse(JSON.parse(json));
  if (!parsed.success) throw new JobConfigError('job received from the coordinator', formatIssues(parsed.error.issues));
  return parsed.data;
}

function labelScaleOf(normalization: { labelStd?: number } | undefined): { labelScale?: number } {
  return normalization?.labelStd !== undefined ? { labelScale: normalization.labelStd } : {};
}

/**
 * A `from`/`module` model is read from this worker's disk: its files must be the coordinator's
 * (their digest is in the job hash), or this worker would train another model.
 */
function checkModelFiles(job: Job, coordinatorHash: string): void {
  if (job.model.from === undefined && job.model.module === undefined) return;
  if (jobHash(job) === coordinatorHash) return;
  throw new JobConfigError(job.model.from ?? job.model.module ?? 'model', [
    "model: this worker's copy of the file differs from the coordinator's (the job hashes differ); give every worker the same file at the same path",
  ]);
}
