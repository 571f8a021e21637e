// gRPC edge of the ring all-reduce: RingDataServer receives the left neighbour's frames into a
// FrameInbox; RingCommunicator pushes frames to the right neighbour and runs `ringAllReduce`
// over the pair. Wire form: one long-lived RingPeer.Push client stream per neighbour per
// generation; first frame HANDSHAKE, then DATA frames carrying raw little-endian float32 bytes.
// Failure model: any broken stream or protocol violation aborts the whole generation on this
// rank; the abort cancels both of its streams, so the failure spreads around the ring at once
// instead of every rank waiting out its timeout.
import * as grpc from '@grpc/grpc-js';
import type { Frame } from '../proto/generated/ringtrain/v1/Frame.js';
import type { PushAck__Output } from '../proto/generated/ringtrain/v1/PushAck.js';
import type { RingPeerClient } from '../proto/generated/ringtrain/v1/RingPeer.js';
import { CollectiveError } from '../shared/errors.js';
import { componentLogger, type Logger } from '../shared/logger.js';
import { GRPC_CHANNEL_OPTIONS, loadProto } from '../shared/proto.js';
import { encodeFloat32LE } from './float-codec.js';
import type { FrameInbox } from './frame-inbox.js';
import { CollectiveOrder } from './collective-order.js';
import { collectiveStats, NO_WAIT, type CollectiveStats } from './collective-stats.js';
import { assertRingPosition, ringAllReduce, type RingChunk, type RingLink } from './ring-allreduce.js';
import type { RingDataServer } from './ring-data-server.js';

export { RingDataServer } from './ring-data-server.js';

/** How long `close` waits for the right neighbour to acknowledge the end of the stream. */
const CLOSE_GRACE_MS = 1_000;

export interface RingCommunicatorOptions {
  /** This rank's own data server; receives from the left neighbour. */
  server: RingDataServer;
  rank: number;
  worldSize: number;
  generation: number;
  /** host:port of the right neighbour's RingDataServer. */
  rightAddress: string;
  /** Upper bound on one frame's payload; rounded down to whole floats. */
  chunkBytes: number;
  /** Bound on connecting, on waiting for any one chunk, and on backpressure stalls. */
  collectiveTimeoutMs: number;
  logger?: Logger;
}

interface RightStream {
  readonly client: RingPeerClient;
  readonly call: grpc.ClientWritableStream<Frame>;
  /** Resolves once the right neighbour answered the call (status OK or error). */
  readonly answered: Promise<void>;
}

export class RingCommunicator {
  private right: RightStream | undefined;
  private broken: CollectiveError | undefined;
  private readonly aborted = new AbortController();
  private closing = false;
  private inFlight = false;
  private readonly order: CollectiveOrder;

  private constructor(
    private readonly options: RingCommunicatorOptions,
    private readonly logger: Logger,
  ) {
    this.order = new CollectiveOrder(options.rank);
  }

  private get rightRank(): number {
    return (this.options.rank + 1) % this.options.worldSize;
  }

  /** Connects to the right neighbour's RingDataServer (retrying briefly while it comes up), sends a HANDSHAKE frame, and pairs with `server` for receiving. */
  static async connect(options: RingCommunicatorOptions): Promise<RingCommunicator> {
    const { rank, worldSize, generation } = options;
    assertRingPosition(rank, worldSize);
    const logger = options.logger ?? componentLogger('ring-communicator', { rank, generation });
    options.server.expect(generation, (rank - 1 + worldSize) % worldSize);
    const communicator = new RingCommunicator(options, logger);
    if (worldSize > 1) communicator.right = await communicator.openRightStream();
    return communicator;
  }

  /**
   * Sum all-reduce in place. `step` and `collective` (a per-step sequence number) go in every
   * frame header and are checked on receipt; a frame for the wrong generation/step/collective, or
   * with length ≠ payload size, is a CollectiveError. Resolves with how long this rank waited for
   * its left neighbour's first frame.
   */
  async allReduce(buffer: Float32Array, step: number, collective = 0): Promise<CollectiveStats> {
    this.beginCollective(step, collective);
    const startedMs = performance.now();
    if (this.options.worldSize === 1) return NO_WAIT;
    this.inFlight = true;
    try {
      const inbox = this.options.server.inboxFor(this.options.generation);
      inbox.openCollective(step, collective);
      const chunkElems = Math.max(1, Math.floor(this.options.chunkBytes / 4));
      await ringAllReduce(
        buffer,
        this.options.rank,
        this.options.worldSize,
        this.link(inbox, step, collective),
        chunkElems,
      );
      return collectiveStats(startedMs, inbox.firstArrivalMs(step, collective));
    } catch (cause) {
      this.abort(
        cause instanceof CollectiveError
          ? cause
          : new CollectiveError(`all-reduce failed: ${String(cause)}`, { cause }),
      );
      throw this.broken ?? cause;
    } finally {
      this.inFlight = false;
    }
  }

  /** Closes the outgoing stream; pending operations reject. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.abort(
      new CollectiveError(
        `ring communicator of rank ${this.options.rank} (generation ${this.options.generation}) was closed`,
      ),
    );
    const right = this.right;
    if (right === undefined) return;
    right.call.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([right.answered, new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    right.client.close();
  }

  /** Checks that collectives arrive one at a time and in strictly increasing (step, collective) order. */
  private beginCollective(step: number, collective: number): void {
    if (this.broken !== undefined) throw this.broken;
    this.order.begin(step, collective, this.inFlight);
  }

  private link(inbox: FrameInbox, step: number, collective: number): RingLink {
    return {
      send: (chunk) => this.sendFrame(chunk, step, collective),
      receive: (round, chunk) => inbox.take({ step, collective, round, chunk }, this.options.collectiveTimeoutMs),
    };
  }

  private async sendFrame(chunk: RingChunk, step: number, collective: number): Promise<void> {
    if (this.broken !== undefined) throw this.broken;
    const { generation, rank } = this.options;
    const frame: Frame = {
      kind: 'DATA',
      generation,
      senderRank: rank,
      step,
      collective,
      round: chunk.round,
      segment: chunk.segment,
      chunk: chunk.chunk,
      offset: chunk.offset,
      length: chunk.data.length,
      payload: encodeFloat32LE(chunk.data), // a copy: the caller mutates its buffer after we return
    };
    if (!this.right!.call.write(frame)) await this.drained(this.right!.call);
  }

  /** Waits for the stream's write buffer to drain; rejects on abort or after collectiveTimeoutMs. */
  private drained(call: grpc.ClientWritableStream<Frame>): Promise<void> {
    const signal = this.aborted.signal;
    return new Promise<void>((resolve, reject) => {
      const settle = (error?: Error): void => {
        clearTimeout(timer);
        call.off('drain', onDrain);
        signal.removeEventListener('abort', onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onDrain = (): void => settle();
      const onAbort = (): void => settle(this.broken);
      const timer = setTimeout(
        () =>
          settle(
            new CollectiveError(
              `right neighbour rank ${this.rightRank} accepted no data for ${this.options.collectiveTimeoutMs} ms`,
            ),
          ),
        this.options.collectiveTimeoutMs,
      );
      call.once('drain', onDrain);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async openRightStream(): Promise<RightStream> {
    const { rightAddress, collectiveTimeoutMs, generation, rank } = this.options;
    const RingPeer = loadProto().ringtrain.v1.RingPeer;
    const client = new RingPeer(rightAddress, grpc.credentials.createInsecure(), {
      ...GRPC_CHANNEL_OPTIONS,
      // Neighbours start at about the same time: retry quickly while the right one comes up.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1_000,
      // A private connection per neighbour, so one ring's failure never touches another channel.
      'grpc.use_local_subchannel_pool': 1,
    });
    try {
      await new Promise<void>((resolve, reject) =>
        client.waitForReady(Date.now() + collectiveTimeoutMs, (error) =>
          error === undefined ? resolve() : reject(error),
        ),
      );
    } catch (cause) {
      client.close();
      throw new CollectiveError(
        `cannot reach right neighbour rank ${this.rightRank} at ${rightAddress} within ${collectiveTimeoutMs} ms`,
        { cause },
      );
    }
    let onAnswer: () => void = () => undefined;
    const answered = new Promise<void>((resolve) => (onAnswer = resolve));
    const call = client.Push((error, ack) => {
      onAnswer();
      this.onRightAnswered(error, ack);
    });
    call.on('error', (error: Error) =>
      this.abort(
        new CollectiveError(`stream to right neighbour rank ${this.rightRank} failed: ${error.message}`, {
          cause: error,
        }),
      ),
    );
    call.write({ kind: 'HANDSHAKE', generation, senderRank: rank } satisfies Frame);
    this.logger.debug({ rightAddress }, 'ring stream to right neighbour open');
    return { client, call, answered };
  }

  private onRightAnswered(error: grpc.ServiceError | null, ack: PushAck__Output | undefined): void {
    if (this.closing) return;
    const why =
      error === null
        ? `ended the stream after ${ack?.frames ?? 0} frames`
        : `refused or dropped the stream: ${error.details || error.message}`;
    this.abort(
      new CollectiveError(`right neighbour rank ${this.rightRank} ${why} (generation ${this.options.generation})`, {
        cause: error ?? undefined,
      }),
    );
  }

  /** Marks this generation broken here and on both neighbours; the first error wins. */
  private abort(error: CollectiveError): void {
    if (this.broken !== undefined) return;
    this.broken = error;
    // Neighbours leaving between collectives is how every run ends; only a broken collective is a warning.
    if (this.inFlight) this.logger.warn({ err: error }, 'ring collective aborted');
    else this.logger.debug({ err: error }, 'ring generation closed');
    this.aborted.abort(error);
    this.options.server.abortGeneration(this.options.generation, error);
    if (!this.closing) this.right?.call.cancel();
  }
}
