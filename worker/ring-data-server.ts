// Receiving end of the ring: the RingPeer service on which the left neighbour pushes frames.
// Owns the per-generation FrameInbox and the one attached left stream.
// Invariants:
//   - at most one left stream is attached, and only for the current generation from the
//     expected left rank; everything else is refused with a gRPC status and logged;
//   - a handshake for a generation newer than the current one is parked (paused, so HTTP/2
//     flow control holds its frames back) until `expect` reaches that generation: neighbours
//     learn about a new generation at slightly different times;
//   - once the left stream ends, breaks or misbehaves, the generation's inbox is failed and
//     stays failed: a generation is never resumed, the coordinator opens a new one.
import * as grpc from '@grpc/grpc-js';
import type { Duplex } from 'node:stream';
import type { Frame__Output } from '../proto/generated/ringtrain/v1/Frame.js';
import type { PushAck } from '../proto/generated/ringtrain/v1/PushAck.js';
import { CollectiveError, PortInUseError } from '../shared/errors.js';
import { addHealthService } from '../shared/health.js';
import { componentLogger, type Logger } from '../shared/logger.js';
import { GRPC_CHANNEL_OPTIONS, loadProto } from '../shared/proto.js';
import { decodeFloat32LE } from './float-codec.js';
import { FrameInbox } from './frame-inbox.js';

/** How long `close` lets calls finish before cutting them. */
const SHUTDOWN_GRACE_MS = 1_000;

type PushCall = grpc.ServerReadableStream<Frame__Output, PushAck>;

interface PeerStream {
  readonly call: PushCall;
  readonly respond: grpc.sendUnaryData<PushAck>;
  generation: number;
  senderRank: number;
  frames: number;
  state: 'new' | 'parked' | 'attached' | 'done';
  /** Frames that slipped through while parked (pause() normally holds them back). */
  backlog: Frame__Output[];
}

export class RingDataServer {
  private boundPort = 0;
  private generation = -1;
  private leftRank = -1;
  private inbox: FrameInbox = new FrameInbox(-1);
  private left: PeerStream | undefined;
  private readonly parked = new Set<PeerStream>();
  /** Re-evaluated on every state change; each returns true once it has settled. */
  private readonly leftWaiters = new Set<() => boolean>();
  private closed = false;
  private injector: grpc.ConnectionInjector | undefined;

  private constructor(
    private readonly server: grpc.Server,
    private readonly logger: Logger,
  ) {
    server.addService(loadProto().ringtrain.v1.RingPeer.service, {
      Push: (call: PushCall, respond: grpc.sendUnaryData<PushAck>) => this.onPush(call, respond),
    });
    // Kubernetes probes a worker's data port through the standard grpc.health.v1 service.
    addHealthService(server);
  }

  /** Binds the RingPeer service on host:port (port 0 = ephemeral). Throws PortInUseError on EADDRINUSE. */
  static async start(options: { host: string; port: number; logger?: Logger }): Promise<RingDataServer> {
    const ring = new RingDataServer(
      new grpc.Server(GRPC_CHANNEL_OPTIONS),
      options.logger ?? componentLogger('ring-data-server'),
    );
    const address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
    ring.boundPort = await new Promise<number>((resolve, reject) =>
      ring.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) => {
        if (error === null) resolve(port);
        else
          reject(
            /EADDRINUSE|address already in use/i.test(error.message)
              ? new PortInUseError(address, { cause: error })
              : error,
          );
      }),
    );
    return ring;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Serves RingPeer on a connection accepted by another listener (the shared data port, tcp-ring-server.ts). */
  injectConnection(socket: Duplex): void {
    this.injector ??= this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    this.injector.injectConnection(socket);
  }

  /** Prepare for generation g: frames from other generations are refused (stream cancelled with FAILED_PRECONDITION and logged). */
  expect(generation: number, leftRank: number): void {
    if (this.closed) throw new CollectiveError('ring data server is closed');
    if (generation < this.generation) {
      throw new CollectiveError(`generation ${generation} is older than the current generation ${this.generation}`);
    }
    if (generation === this.generation) {
      if (leftRank !== this.leftRank) {
        throw new CollectiveError(
          `generation ${generation} already expects left rank ${this.leftRank}, not ${leftRank}`,
        );
      }
      return;
    }
    const superseded = new CollectiveError(`generation ${this.generation} was superseded by generation ${generation}`);
    this.inbox.fail(superseded);
    if (this.left !== undefined) this.refuse(this.left, grpc.status.FAILED_PRECONDITION, superseded.message);
    this.generation = generation;
    this.leftRank = leftRank;
    this.inbox = new FrameInbox(leftRank);
    this.left = undefined;
    for (const stream of this.parked) {
      if (stream.generation <= generation) {
        this.parked.delete(stream);
        this.admit(stream);
      }
    }
    this.notify();
  }

  /** Resolves once the left neighbour's stream for the current generation is attached. */
  async waitForLeft(timeoutMs: number): Promise<void> {
    const generation = this.generation;
    await new Promise<void>((resolve, reject) => {
      const settle = (error?: Error): true => {
        clearTimeout(timer);
        this.leftWaiters.delete(check);
        if (error === undefined) resolve();
        else reject(error);
        return true;
      };
      const check = (): boolean => {
        if (this.generation !== generation)
          return settle(
            new CollectiveError(`generation ${generation} was superseded while waiting for the left neighbour`),
          );
        if (this.inbox.failedWith !== undefined) return settle(this.inbox.failedWith);
        return this.left !== undefined && settle();
      };
      const timer = setTimeout(
        () =>
          settle(
            new CollectiveError(
              `left neighbour rank ${this.leftRank} did not connect within ${timeoutMs} ms (generation ${generation})`,
            ),
          ),
        timeoutMs,
      );
      if (!check()) this.leftWaiters.add(check);
    });
  }

  /** The inbox of `generation`, which must be the current one. For RingCommunicator. */
  inboxFor(generation: number): FrameInbox {
    if (generation !== this.generation) {
      throw new CollectiveError(`ring data server is at generation ${this.generation}, not ${generation}`);
    }
    return this.inbox;
  }

  /** Fails `generation` (if current): pending takes reject and the left stream is cut with ABORTED. */
  abortGeneration(generation: number, error: Error): void {
    if (generation !== this.generation) return;
    this.inbox.fail(error);
    if (this.left !== undefined) this.refuse(this.left, grpc.status.ABORTED, error.message);
    this.notify();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const error = new CollectiveError(`ring data server on port ${this.boundPort} closed`);
    this.inbox.fail(error);
    for (const stream of [...this.parked, ...(this.left === undefined ? [] : [this.left])]) {
      this.refuse(stream, grpc.status.UNAVAILABLE, error.message);
    }
    this.parked.clear();
    this.notify();
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, SHUTDOWN_GRACE_MS);
      this.server.tryShutdown(() => resolve());
    });
    clearTimeout(timer);
  }

  private onPush(call: PushCall, respond: grpc.sendUnaryData<PushAck>): void {
    const stream: PeerStream = { call, respond, generation: -1, senderRank: -1, frames: 0, state: 'new', backlog: [] };
    call.on('data', (frame: Frame__Output) => {
      if (stream.state === 'new') this.onHandshake(stream, frame);
      else if (stream.state === 'attached') this.onDataFrame(stream, frame);
      else if (stream.state === 'parked') stream.backlog.push(frame);
    });
    call.on('end', () => this.onStreamGone(stream, 'closed its ring stream', true));
    call.on('cancelled', () => this.onStreamGone(stream, 'dropped its ring stream (cancelled)', false));
    call.on('error', (error: Error) => this.onStreamGone(stream, `broke its ring stream: ${error.message}`, false));
  }

  private onHandshake(stream: PeerStream, frame: Frame__Output): void {
    if (frame.kind !== 'HANDSHAKE') {
      this.refuse(stream, grpc.status.INVALID_ARGUMENT, `first frame must be a HANDSHAKE, got ${frame.kind}`);
      return;
    }
    stream.generation = frame.generation;
    stream.senderRank = frame.senderRank;
    if (frame.generation > this.generation && !this.closed) {
      stream.state = 'parked';
      stream.call.pause();
      this.parked.add(stream);
      this.logger.debug(
        { generation: frame.generation, senderRank: frame.senderRank },
        'parked handshake for a future generation',
      );
      return;
    }
    this.admit(stream);
  }

  /** Attaches a handshaken stream as the left stream, or refuses it. */
  private admit(stream: PeerStream): void {
    const refusal =
      stream.generation !== this.generation
        ? `stale generation ${stream.generation}; this rank is at generation ${this.generation}`
        : stream.senderRank !== this.leftRank
          ? `rank ${stream.senderRank} is not the left neighbour (rank ${this.leftRank}) in generation ${this.generation}`
          : this.left !== undefined
            ? `a stream from rank ${this.leftRank} is already attached for generation ${this.generation}`
            : this.inbox.failedWith !== undefined
              ? `generation ${this.generation} is already broken: ${this.inbox.failedWith.message}`
              : undefined;
    if (refusal !== undefined) {
      this.refuse(stream, grpc.status.FAILED_PRECONDITION, refusal);
      return;
    }
    stream.state = 'attached';
    this.left = stream;
    for (const frame of stream.backlog.splice(0)) this.onDataFrame(stream, frame);
    stream.call.resume();
    this.logger.debug({ generation: this.generation, leftRank: this.leftRank }, 'left neighbour attached');
    this.notify();
  }

  private onDataFrame(stream: PeerStream, frame: Frame__Output): void {
    const problem = frameProblem(frame, this.generation, this.leftRank);
    if (problem !== undefined) {
      this.failLeft(
        stream,
        grpc.status.FAILED_PRECONDITION,
        new CollectiveError(`frame from left neighbour rank ${stream.senderRank} refused: ${problem}`),
      );
      return;
    }
    try {
      this.inbox.deliver(frame, decodeFloat32LE(frame.payload));
      stream.frames++;
    } catch (error) {
      const collective =
        error instanceof CollectiveError ? error : new CollectiveError(String(error), { cause: error });
      this.failLeft(stream, grpc.status.FAILED_PRECONDITION, collective);
    }
  }

  private onStreamGone(stream: PeerStream, why: string, graceful: boolean): void {
    if (stream.state === 'done') return;
    this.parked.delete(stream);
    const wasLeft = stream === this.left;
    stream.state = 'done';
    if (graceful) stream.respond(null, { frames: stream.frames });
    if (!wasLeft) return;
    this.left = undefined;
    this.inbox.fail(
      new CollectiveError(`left neighbour rank ${stream.senderRank} ${why} (generation ${stream.generation})`),
    );
    this.notify();
  }

  /** Refuses the left stream and fails the generation: the ring can no longer be trusted. */
  private failLeft(stream: PeerStream, code: grpc.status, error: CollectiveError): void {
    this.inbox.fail(error);
    this.refuse(stream, code, error.message);
    this.notify();
  }

  /** Answers a stream with an error status; the client sees the call fail with `code`. */
  private refuse(stream: PeerStream, code: grpc.status, details: string): void {
    if (stream.state === 'done') return;
    if (stream === this.left) this.left = undefined;
    stream.state = 'done';
    this.logger.warn(
      { senderRank: stream.senderRank, generation: stream.generation, code: grpc.status[code] },
      `ring stream refused: ${details}`,
    );
    stream.respond({ code, details });
  }

  private notify(): void {
    for (const check of [...this.leftWaiters]) check();
  }
}

/** Why a DATA frame on the attached left stream cannot be accepted, or undefined. */
function frameProblem(frame: Frame__Output, generation: number, leftRank: number): string | undefined {
  if (frame.kind !== 'DATA') return `unexpected ${frame.kind} frame after the handshake`;
  if (frame.generation !== generation) return `generation ${frame.generation}, expected ${generation}`;
  if (frame.senderRank !== leftRank) return `sender rank ${frame.senderRank}, expected ${leftRank}`;
  if (frame.payload.byteLength !== frame.length * 4) {
    return `length ${frame.length} floats but payload of ${frame.payload.byteLength} bytes`;
  }
  return undefined;
}
