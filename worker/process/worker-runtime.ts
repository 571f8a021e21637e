// A joined worker's life: generations come and go (a new Welcome re-forms the ring) while the
// replica and its data stay. Owns the heartbeat (a thread, see heartbeat.ts) and the ring
// collective of the current generation.
import { BLOB_CHUNK_BYTES } from '../../shared/control-limits.js';
import type { CoordinatorMessage__Output } from '../../proto/generated/ringtrain/v1/CoordinatorMessage.js';
import type { StepOrder__Output } from '../../proto/generated/ringtrain/v1/StepOrder.js';
import type { Welcome__Output } from '../../proto/generated/ringtrain/v1/Welcome.js';
import type { DataShape } from '../../shared/data/data-source.js';
import { GradientOutlierError } from '../replica/gradient-outliers.js';
import { CollectiveError, outOfMemoryFrom, RingtrainError } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import type { Logger } from '../../shared/logger.js';
import { setStderrRank } from '../../shared/stderr-prefix.js';
import { encodeModelBlob } from '../../shared/model-blob.js';
import type { ControlConnection } from './control-client.js';
import { dieIfEvalFault } from './eval-fault.js';
import { Heartbeat } from './heartbeat.js';
import { exportDeployableModel } from '../replica/deployable-model.js';
import type { Replica } from '../replica/replica.js';
import type { RingCollective } from '../collectives/ring-collective.js';
import type { RingEndpoint } from '../transport/ring-endpoint.js';
import type { TrainerReplica } from '../replica/trainer-replica.js';

/**
 * One worker's life after joining: generations come and go (a new Welcome re-forms the ring),
 * the replica and its data stay. A failed collective is reported, never fatal: the replica's
 * state is untouched until an all-reduce completes, so the coordinator can regroup.
 */
export class WorkerRuntime {
  private comm: RingCollective | undefined;
  private generation = 0;
  private readonly heartbeat: Heartbeat;
  /** The worker's logger bound to its current rank and generation (re-bound at each join). */
  private logger: Logger;
  /** Settles when the heartbeat of the current connection beats (Ready waits for it). */
  private heartbeatStarted: Promise<void> = Promise.resolve();
  private connection!: ControlConnection;
  /** The job hash this replica was built for; a later coordinator must run the same job. */
  readonly jobHash: string;

  constructor(
    connection: ControlConnection,
    private readonly server: RingEndpoint,
    private readonly job: Job,
    private readonly dataset: DataShape,
    private readonly replica: Replica,
    private readonly trainer: TrainerReplica,
    private readonly backend: string,
    private readonly collectiveTimeoutMs: number,
    private readonly baseLogger: Logger,
  ) {
    this.jobHash = connection.welcome.jobHash;
    this.logger = baseLogger.child({ rank: connection.welcome.rank, generation: connection.welcome.generation });
    this.heartbeat = new Heartbeat(baseLogger);
    this.attach(connection);
  }

  /** Steps and generation this replica holds, for a Hello to a new coordinator. */
  get position(): { completedSteps: number; generation: number } {
    return { completedSteps: this.trainer.completedSteps, generation: this.generation };
  }

  /** Serves `connection` from now on (the first one, or a restarted coordinator's). */
  attach(connection: ControlConnection): void {
    this.connection = connection;
    this.heartbeat.finished(this.trainer.completedSteps - 1);
    this.heartbeatStarted = this.heartbeat.start(
      connection.address,
      connection.security,
      connection.welcome.sessionId,
      (reason) => {
        this.logger.warn({ reason }, 'heartbeats to the coordinator failed; giving up this session');
        connection.abandon(reason);
      },
    );
    connection.onInterrupt((reason) => {
      this.logger.info({ reason }, 'coordinator gone or leaving; cancelling collectives');
      void this.comm?.close();
    });
    connection.onQueuedStep((order) => {
      // A hint only: a read-ahead that fails leaves the step to read (and report) its rows itself.
      try {
        if (order.generation === this.generation) this.trainer.readAhead(order);
      } catch (error) {
        this.logger.debug({ step: order.step, reason: String(error) }, 'read-ahead skipped');
      }
    });
    connection.onAbort((reason) => {
      this.logger.info({ reason }, 'coordinator aborted the collective');
      void this.comm?.close();
    });
  }

  /** Links into the ring of `welcome.generation` and reports ready. */
  async join(welcome: Welcome__Output): Promise<void> {
    if (welcome.jobHash !== '' && this.jobHash !== welcome.jobHash) {
      throw new RingtrainError(
        `coordinator changed the job (hash ${this.jobHash} -> ${welcome.jobHash}); restart this worker`,
      );
    }
    const previous = this.comm;
    this.comm = undefined;
    await previous?.close();
    this.generation = welcome.generation;
    this.trainer.joinGeneration(welcome.rank, welcome.worldSize);
    // Every line of this generation carries its rank and generation (bound once: no duplicate keys).
    this.logger = this.baseLogger.child({ rank: welcome.rank, generation: welcome.generation });
    setStderrRank(welcome.rank);
    try {
      this.comm = await joinRing(this.server, welcome, this.job, this.collectiveTimeoutMs, this.logger);
    } catch (error) {
      // A neighbour of this generation is gone (it died while the ring formed): not fatal. The
      // coordinator notices the same death and sends a new Welcome (or a shutdown), queued next.
      if (!(error instanceof CollectiveError)) throw error;
      this.logger.warn(
        { reason: error.message },
        'could not link into the ring; waiting for the coordinator to form it again',
      );
      return;
    }
    await this.heartbeatStarted;
    this.connection.send({
      ready: {
        generation: welcome.generation,
        paramCount: this.trainer.paramCount,
        backend: this.backend,
        dataHash: this.dataset.hash,
      },
    });
  }

  async handle(message: CoordinatorMessage__Output): Promise<void> {
    switch (message.kind) {
      case 'welcome':
        if (message.welcome) await this.join(message.welcome);
        return;
      case 'step':
        if (message.step) await this.step(message.step);
        return;
      case 'eval': {
        const order = message.eval;
        if (order) {
          dieIfEvalFault(order.split, this.trainer.completedSteps);
          const sums = await this.heartbeat
            .busy('eval', this.trainer.completedSteps, () => this.trainer.evaluate(order.split, order.sampleIndices))
            .catch((error: unknown) => {
              throw this.reportOutOfMemory(error, `evaluating ${order.split}`);
            });
          this.connection.send({ evalReport: { requestId: order.requestId, ...sums } });
        }
        return;
      }
      case 'blobRequest': {
        const request = message.blobRequest;
        if (!request) return;
        const blob = await this.heartbeat.busy('export', this.trainer.completedSteps, async () =>
          request.kind === 'model'
            ? encodeModelBlob(await exportDeployableModel(this.replica.model, this.job, this.dataset))
            : this.trainer.exportState(),
        );
        sendBlob(this.connection, request.requestId, blob);
        this.trainer.markBusyUntilNow();
        return;
      }
      default:
        return;
    }
  }

  private async step(order: StepOrder__Output): Promise<void> {
    const comm = this.comm;
    try {
      if (comm === undefined || order.generation !== this.generation)
        throw new CollectiveError(
          `step ${order.step} is for generation ${order.generation}, this rank is in ${this.generation}`,
        );
      // The next order is usually queued already (the coordinator sends one ahead): flushed
      // first, the report reaches the coordinator now rather than after that step's compute,
      // so the order after that one is not sent late.
      const stepReport = await this.heartbeat.busy('step', order.step, () =>
        this.trainer.step(order, (buffer, step, collective) => comm.allReduce(buffer, step, collective)),
      );
      this.heartbeat.finished(this.trainer.completedSteps - 1);
      await this.connection.sendFlushed({ stepReport });
    } catch (error) {
      if (!(error instanceof CollectiveError)) throw this.reportOutOfMemory(error, `step ${order.step}`);
      this.logger.warn(
        { step: order.step, reason: error.message },
        'step aborted; waiting for the coordinator to regroup',
      );
      this.connection.send({
        stepAborted: {
          generation: order.generation,
          step: order.step,
          completedSteps: this.trainer.completedSteps,
          reason: error.message,
          outlierRanks: error instanceof GradientOutlierError ? error.outlierRanks : [],
        },
      });
    }
  }

  /**
   * An out-of-memory failure as an OutOfMemoryError (others as they are). runWorker sends the
   * coordinator every fatal error as a WorkerFailure before exiting, so its session fails with
   * this one line instead of "control stream ended".
   */
  private reportOutOfMemory(error: unknown, doing: string): unknown {
    const oom = outOfMemoryFrom(error, doing, this.backend);
    if (oom === undefined) return error;
    this.logger.error({ doing, backend: this.backend }, oom.message);
    return oom;
  }

  /** Loads a full state (resume, or a survivor's state after a regroup). */
  importState(bytes: Uint8Array): void {
    this.trainer.importState(bytes, 'state from coordinator');
    this.heartbeat.finished(this.trainer.completedSteps - 1);
  }

  async close(): Promise<void> {
    await this.heartbeat.stop();
    await this.comm?.close();
  }
}

/** Joins the welcome's generation over the job's `allreduce.transport` (both are served on the one data port). */
async function joinRing(
  server: RingEndpoint,
  welcome: Welcome__Output,
  job: Job,
  collectiveTimeoutMs: number,
  logger: Logger,
): Promise<RingCollective> {
  const { rank, worldSize, generation, leftAddress, rightAddress } = welcome;
  return server.connect(
    { rank, worldSize, generation, leftAddress, rightAddress },
    job.allreduce,
    collectiveTimeoutMs,
    logger,
  );
}

function sendBlob(connection: ControlConnection, requestId: number, blob: Uint8Array): void {
  const total = blob.byteLength;
  for (let offset = 0; ; offset += BLOB_CHUNK_BYTES) {
    const end = Math.min(total, offset + BLOB_CHUNK_BYTES);
    connection.send({
      blobChunk: {
        requestId,
        offset,
        totalBytes: total,
        data: Buffer.from(blob.buffer, blob.byteOffset + offset, end - offset),
        last: end >= total,
      },
    });
    if (end >= total) return;
  }
}
