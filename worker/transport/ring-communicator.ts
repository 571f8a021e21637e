// Raw-TCP edge of the ring all-reduce. TcpRingCommunicator runs `ringAllReduce` (or
// `allGatherSum` for small buffers) over two connections per generation:
//   - receiving: this rank dials its LEFT neighbour's data port (LeftReceiver), so it can read
//     with `onread` straight into pooled payload buffers — only a client socket can;
//   - sending: its RIGHT neighbour dials this rank's TcpRingServer, which hands over that
//     connection; float32 payloads are queued as views of the caller's buffer (no copy) behind
//     a pooled header, with bounded backpressure.
// Failure model: a closed or refusing neighbour aborts the whole generation on this rank, and the
// abort closes both of its connections, so the failure runs around the ring at once instead of
// waiting out a timeout.
//
// Why raw TCP and not gRPC: gRPC copies each frame through protobuf and HTTP/2 framing and pays a
// per-message cost; here the kernel's copies are the only ones on the send side.
//
// Invariant: a collective returns (or rejects) only once no frame of it is unsent, so the caller
// may reuse its buffer; on failure, frames still unsent after UNSENT_GRACE_MS are cut off by
// destroying the connection.
import type * as net from 'node:net';
import { CollectiveError } from '../../shared/errors.js';
import { componentLogger, type Logger } from '../../shared/logger.js';
import { FrameInbox } from '../collectives/frame-inbox.js';
import { CollectiveOrder } from '../collectives/collective-order.js';
import { collectiveStats, NO_WAIT, type CollectiveStats } from '../collectives/collective-stats.js';
import {
  assertRingPosition,
  MAX_CHUNK_ELEMS,
  pipelineChunkElems,
  ringAllReduce,
} from '../collectives/ring-allreduce.js';
import { allGatherSum } from '../collectives/allgather-sum.js';
import { CollectiveLink, type DataFields, type FrameWriter } from './collective-link.js';
import { emptyHeader, FRAME_HEADER_BYTES, FrameKind, writeHeader, type FrameHeader } from './frame.js';
import { LeftReceiver } from './left-receiver.js';
import type { TcpRingServer } from './ring-server.js';
import { UnsentWrites } from './unsent-writes.js';
import type { WireCodec } from '../collectives/wire-compression.js';

export { TcpRingServer } from './ring-server.js';

/** Buffers up to this size take the all-gather latency path. */
export const DEFAULT_SMALL_BUFFER_BYTES = 64 * 1024;
/** Default bound on queued, unsent bytes to the right neighbour (see queueLimitBytes). */
const QUEUE_LIMIT_BYTES = 16 * 1024 * 1024;
/** After a failure, how long unsent frames may take to drain (so a REFUSE can follow them) before the connection is cut. */
const UNSENT_GRACE_MS = 1_000;

export interface TcpRingCommunicatorOptions {
  /** This rank's own data port; the right neighbour connects there to receive. */
  server: TcpRingServer;
  rank: number;
  worldSize: number;
  generation: number;
  /** host:port of the left neighbour's data port; this rank receives from there. */
  leftAddress: string;
  /** Upper bound on one frame's float32 payload; rounded down to whole floats. */
  chunkBytes: number;
  /** Bound on connecting, on waiting for any one chunk, and on backpressure stalls. */
  collectiveTimeoutMs: number;
  /** Wire form of ring chunks. @default 'none' */
  compression?: WireCodec;
  /** Buffers of at most this many bytes use `allGatherSum`. @default 65536 */
  smallBufferBytes?: number;
  logger?: Logger;
}

export class TcpRingCommunicator {
  private left: LeftReceiver | undefined;
  private right: net.Socket | undefined;
  private readonly inbox: FrameInbox;
  private broken: CollectiveError | undefined;
  private readonly aborted = new AbortController();
  private inFlight = false;
  private readonly order: CollectiveOrder;
  /** Reused for every outgoing DATA header (serialised before the write is queued). */
  private readonly header: FrameHeader = emptyHeader();
  private readonly unsent = new UnsentWrites();

  private constructor(
    private readonly options: TcpRingCommunicatorOptions,
    private readonly logger: Logger,
  ) {
    this.inbox = new FrameInbox(this.leftRank);
    this.order = new CollectiveOrder(options.rank);
  }

  private get leftRank(): number {
    return (this.options.rank - 1 + this.options.worldSize) % this.options.worldSize;
  }

  private get rightRank(): number {
    return (this.options.rank + 1) % this.options.worldSize;
  }

  /** Dials the left neighbour (retrying while it comes up) and sends a HANDSHAKE; the right neighbour's connection is awaited by the first collective. */
  static async connect(options: TcpRingCommunicatorOptions): Promise<TcpRingCommunicator> {
    const { rank, worldSize, generation } = options;
    assertRingPosition(rank, worldSize);
    const logger = options.logger ?? componentLogger('tcp-ring-communicator', { rank, generation });
    options.server.expect(generation, (rank + 1) % worldSize);
    const communicator = new TcpRingCommunicator(options, logger);
    if (worldSize > 1) {
      communicator.left = await LeftReceiver.connect({
        address: options.leftAddress,
        rank,
        leftRank: communicator.leftRank,
        generation,
        pool: options.server.pool,
        inbox: communicator.inbox,
        connectTimeoutMs: options.collectiveTimeoutMs,
        onFailure: (error) => communicator.abort(error),
        security: options.server.security,
      });
    }
    return communicator;
  }

  /**
   * Sum all-reduce in place; every rank ends bit-identical. Frames carry (generation, step,
   * collective) and are checked on receipt. Resolves with how long this rank waited for its left
   * neighbour's first frame.
   */
  async allReduce(buffer: Float32Array, step: number, collective = 0): Promise<CollectiveStats> {
    this.beginCollective(step, collective);
    const startedMs = performance.now();
    const { rank, worldSize, collectiveTimeoutMs } = this.options;
    if (worldSize === 1) return NO_WAIT;
    this.inFlight = true;
    let link: CollectiveLink | undefined;
    try {
      this.right ??= await this.attachRight();
      this.inbox.openCollective(step, collective);
      const small = buffer.byteLength <= (this.options.smallBufferBytes ?? DEFAULT_SMALL_BUFFER_BYTES);
      // The latency path is not worth compressing, and its forwarding must stay exact.
      const codec = small ? 'none' : (this.options.compression ?? 'none');
      const write: FrameWriter = (fields, payload, written) => this.writeData(fields, payload, written);
      link = new CollectiveLink(write, this.inbox, this.left!, this.options.server.pool, {
        step,
        collective,
        worldSize,
        codec,
        timeoutMs: collectiveTimeoutMs,
      });
      if (small) await allGatherSum(buffer, rank, worldSize, link);
      else await ringAllReduce(buffer, rank, worldSize, link, this.chunkElemsFor(buffer.length));
      // Sent chunks are views of `buffer`: it is the caller's again only once the kernel has them.
      if (this.unsent.count > 0) await this.guard(this.unsent.settled());
      return collectiveStats(startedMs, this.inbox.firstArrivalMs(step, collective));
    } catch (cause) {
      this.abort(
        cause instanceof CollectiveError
          ? cause
          : new CollectiveError(`all-reduce failed: ${String(cause)}`, { cause }),
      );
      await this.cutUnsent();
      throw this.broken ?? cause;
    } finally {
      link?.close();
      this.inFlight = false;
    }
  }

  /** Closes both connections of this generation; pending and later collectives reject. */
  close(): Promise<void> {
    this.abort(
      new CollectiveError(
        `ring communicator of rank ${this.options.rank} (generation ${this.options.generation}) was closed`,
      ),
    );
    return Promise.resolve();
  }

  /** Checks that collectives arrive one at a time and in strictly increasing (step, collective) order. */
  private beginCollective(step: number, collective: number): void {
    if (this.broken !== undefined) throw this.broken;
    this.order.begin(step, collective, this.inFlight);
  }

  private async attachRight(): Promise<net.Socket> {
    const { server, generation, collectiveTimeoutMs } = this.options;
    const socket = await this.guard(server.waitForRight(generation, collectiveTimeoutMs));
    socket.once('close', () =>
      this.abort(
        new CollectiveError(
          `right neighbour rank ${this.rightRank} closed the ring connection (generation ${generation})`,
        ),
      ),
    );
    return socket;
  }

  /**
   * Queues one DATA frame: a pooled header, then `payload` itself, in one corked write. Waits only
   * while more than the queue limit is unsent (backpressure).
   */
  private async writeData(fields: DataFields, payload: Uint8Array, written?: () => void): Promise<void> {
    if (this.broken !== undefined) throw this.broken;
    const socket = this.right!;
    const pool = this.options.server.pool;
    const header = pool.take(FRAME_HEADER_BYTES);
    writeHeader(
      Buffer.from(header),
      Object.assign(this.header, fields, {
        kind: FrameKind.data,
        generation: this.options.generation,
        senderRank: this.options.rank,
        payloadBytes: payload.byteLength,
      }),
    );
    const sent = this.unsent.add();
    socket.cork();
    socket.write(new Uint8Array(header));
    socket.write(payload, () => {
      pool.give(header);
      written?.();
      sent();
    });
    socket.uncork();
    if (socket.writableLength > this.queueLimitBytes)
      await this.guard(new Promise<void>((resolve) => socket.once('drain', resolve)));
  }

  /** After a failure: lets unsent frames drain for a short grace, then destroys the connection so none can still read the caller's buffer. */
  private async cutUnsent(): Promise<void> {
    if (this.unsent.count === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.unsent.settled(),
      new Promise((resolve) => (timer = setTimeout(resolve, UNSENT_GRACE_MS))),
    ]);
    clearTimeout(timer);
    if (this.unsent.count > 0) this.right?.destroy();
  }

  /** The ring's chunk for a buffer of `length` floats: allreduce.chunkBytes, larger for long segments. */
  private chunkElemsFor(length: number): number {
    return pipelineChunkElems(length, this.options.worldSize, Math.max(1, Math.floor(this.options.chunkBytes / 4)));
  }

  /** Unsent bytes allowed to pile up before a send waits: enough to keep the socket busy while this rank reduces. */
  private get queueLimitBytes(): number {
    return Math.max(QUEUE_LIMIT_BYTES, 2 * this.options.chunkBytes, 2 * MAX_CHUNK_ELEMS * 4);
  }

  /** Resolves with `work`, or rejects on abort or after collectiveTimeoutMs. */
  private guard<T>(work: Promise<T>): Promise<T> {
    const signal = this.aborted.signal;
    const timeoutMs = this.options.collectiveTimeoutMs;
    if (this.broken !== undefined) return Promise.reject(this.broken);
    return new Promise<T>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        finish();
        reject(this.broken ?? new CollectiveError('ring collective aborted'));
      };
      const timer = setTimeout(() => {
        finish();
        reject(new CollectiveError(`right neighbour rank ${this.rightRank} made no progress for ${timeoutMs} ms`));
      }, timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      work.then(
        (value) => {
          finish();
          resolve(value);
        },
        (error: unknown) => {
          finish();
          reject(error instanceof Error ? error : new CollectiveError(String(error)));
        },
      );
    });
  }

  /** Fails this generation on this rank; the first failure wins and is what every caller sees. */
  private abort(error: CollectiveError): void {
    if (this.broken !== undefined) return;
    this.broken = error;
    // Neighbours leaving between collectives is how every run ends; only a broken collective is a warning.
    if (this.inFlight) this.logger.warn({ err: error }, 'ring collective aborted');
    else this.logger.debug({ err: error }, 'ring generation closed');
    this.aborted.abort();
    this.inbox.fail(error);
    this.options.server.abortGeneration(this.options.generation, error);
    this.left?.close();
  }
}
