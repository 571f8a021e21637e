// A worker process: joins the coordinator, builds its replica, links into the ring, then obeys
// orders (step, evaluate, send/load state, shut down) until told to leave.
import * as os from 'node:os';
import type { CoordinatorMessage__Output } from '../proto/generated/ringtrain/v1/CoordinatorMessage.js';
import type { Welcome__Output } from '../proto/generated/ringtrain/v1/Welcome.js';
import { loadDataset } from '../shared/data/dataset.js';
import { JobConfigError, RingtrainError } from '../shared/errors.js';
import { formatIssues } from '../shared/job.js';
import { jobSchema, type Job } from '../shared/job-schema.js';
import { componentLogger, type Logger } from '../shared/logger.js';
import { encodeModelBlob } from '../shared/model-blob.js';
import { selectBackend } from './backend.js';
import { ControlConnection, DEFAULT_RETRY, type RetryPolicy } from './control-client.js';
import { buildModel } from './model-builder.js';
import { exportModel } from './model-export.js';
import { Replica } from './replica.js';
import { RingCommunicator, RingDataServer } from './ring-transport.js';
import { TrainerReplica } from './trainer-replica.js';

export interface WorkerOptions {
  /** Coordinator host:port. */
  coordinator: string;
  /** Address to bind the ring data server on. @default '0.0.0.0' */
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
  /** @default 60000 */
  collectiveTimeoutMs?: number;
}

const BLOB_CHUNK_BYTES = 1 << 20;
const HEARTBEAT_MS = 1_000;

/** Runs until the coordinator says shutdown (resolves) or something breaks (throws). */
export async function runWorker(options: WorkerOptions): Promise<void> {
  let logger = componentLogger('worker', { pid: process.pid });
  const server = await RingDataServer.start({ host: options.bindHost, port: options.dataPort, logger });
  let connection: ControlConnection | undefined;
  let comm: RingCommunicator | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  try {
    connection = await ControlConnection.connect(
      options.coordinator,
      { host: os.hostname(), dataAddress: `${options.advertiseHost}:${server.port}`, pid: process.pid, jobHash: options.jobHash, gpuIndex: options.gpuIndex, rankHint: options.rankHint, version: '0.1.0' },
      options.retry ?? DEFAULT_RETRY,
      logger,
    );
    const welcome = connection.welcome;
    logger = componentLogger('worker', { rank: welcome.rank, pid: process.pid });
    const job = parseWireJob(welcome.jobJson);
    if (options.backendOverride !== undefined) job.backend = options.backendOverride as Job['backend'];
    const backend = await selectBackend(job.backend, logger);
    const dataset = loadDataset(job);
    const replica = new Replica(buildModel(job), job, labelScaleOf(dataset.normalization));
    const trainer = new TrainerReplica(job, dataset, replica);
    comm = await joinRing(server, welcome, job, options.collectiveTimeoutMs ?? 60_000, logger);
    connection.send({ ready: { generation: welcome.generation, paramCount: trainer.paramCount, backend: backend.name, dataHash: dataset.hash } });
    let lastStep = -1;
    const conn = connection;
    heartbeat = setInterval(() => conn.send({ heartbeat: { lastStep } }), HEARTBEAT_MS);
    const activeComm = comm;
    connection.onInterrupt((reason) => {
      logger.info({ reason }, 'interrupted; cancelling collectives');
      void activeComm.close();
    });
    await obey(connection, async (message) => {
      switch (message.kind) {
        case 'step': {
          const order = message.step;
          if (!order) return;
          conn.send({ stepReport: await trainer.step(order, (buffer, step) => activeComm.allReduce(buffer, step)) });
          lastStep = order.step;
          return;
        }
        case 'eval': {
          const order = message.eval;
          if (order) conn.send({ evalReport: { requestId: order.requestId, ...trainer.evaluate(order.split, order.sampleIndices) } });
          return;
        }
        case 'blobRequest': {
          const request = message.blobRequest;
          if (!request) return;
          const blob = request.kind === 'model' ? encodeModelBlob(await exportModel(replica.model, { normalization: dataset.normalization ?? null, classNames: dataset.classNames ?? null })) : trainer.exportState();
          sendBlob(conn, request.requestId, blob);
          return;
        }
        default:
          return;
      }
    }, trainer, logger);
    replica.dispose();
  } finally {
    if (heartbeat !== undefined) clearInterval(heartbeat);
    await comm?.close();
    connection?.close();
    await server.close();
  }
}

/** Processes orders one at a time, in order; `shutdown` and a closed stream end the loop. */
async function obey(connection: ControlConnection, handle: (m: CoordinatorMessage__Output) => Promise<void>, trainer: TrainerReplica, logger: Logger): Promise<void> {
  const stateParts: Buffer[] = [];
  for (;;) {
    const message = await connection.next();
    if (message === undefined) throw new RingtrainError(`lost the coordinator: ${connection.ended ?? 'stream ended'}`);
    if (message.kind === 'shutdown') {
      logger.info({ reason: message.shutdown?.reason }, 'coordinator asked this worker to leave');
      return;
    }
    if (message.kind === 'loadState' && message.loadState) {
      stateParts.push(message.loadState.data);
      if (message.loadState.last) {
        trainer.importState(Buffer.concat(stateParts.splice(0)), 'state from coordinator');
        connection.send({ ack: { requestId: message.loadState.requestId } });
      }
      continue;
    }
    await handle(message);
  }
}

async function joinRing(server: RingDataServer, welcome: Welcome__Output, job: Job, collectiveTimeoutMs: number, logger: Logger): Promise<RingCommunicator> {
  const leftRank = (welcome.rank - 1 + welcome.worldSize) % welcome.worldSize;
  server.expect(welcome.generation, leftRank);
  return RingCommunicator.connect({
    server,
    rank: welcome.rank,
    worldSize: welcome.worldSize,
    generation: welcome.generation,
    rightAddress: welcome.rightAddress,
    chunkBytes: job.allreduce.chunkBytes,
    collectiveTimeoutMs,
    logger,
  });
}

function sendBlob(connection: ControlConnection, requestId: number, blob: Uint8Array): void {
  const total = blob.byteLength;
  for (let offset = 0; ; offset += BLOB_CHUNK_BYTES) {
    const end = Math.min(total, offset + BLOB_CHUNK_BYTES);
    connection.send({ blobChunk: { requestId, offset, totalBytes: total, data: Buffer.from(blob.buffer, blob.byteOffset + offset, end - offset), last: end >= total } });
    if (end >= total) return;
  }
}

/** The job arrives as JSON from the coordinator; it is validated like any other input. */
function parseWireJob(json: string): Job {
  const parsed = jobSchema.safeParse(JSON.parse(json));
  if (!parsed.success) throw new JobConfigError('job received from the coordinator', formatIssues(parsed.error.issues));
  return parsed.data;
}

function labelScaleOf(normalization: { labelStd?: number } | undefined): { labelScale?: number } {
  return normalization?.labelStd !== undefined ? { labelScale: normalization.labelStd } : {};
}
