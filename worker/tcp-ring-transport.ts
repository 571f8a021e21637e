// Raw-TCP edge of the ring all-reduce: TcpRingCommunicator writes frames (tcp-frame.ts) to the
// right neighbour's data port and takes the left neighbour's frames from this rank's
// TcpRingServer, running `ringAllReduce` (or `allGatherSum` for small buffers) over the pair.
// Same public shape and failure model as the gRPC RingCommunicator: one long-lived connection per
// neighbour per generation; a closed or refusing neighbour aborts the whole generation on this
// rank, and the abort closes both of its connections, so the failure runs around the ring at once.
//
// Why it exists: gRPC copies every frame into and out of protobuf/HTTP/2 buffers and pays a
// per-message cost; here a float32 payload goes from the gradient buffer to the socket without
// a copy (the send waits until the kernel took the bytes, since the ring reuses the buffer),
// and arrives in a pooled buffer.
import * as net from 'node:net';
import { CollectiveError } from '../shared/errors.js';
import { componentLogger, type Logger } from '../shared/logger.js';
import type { FrameInbox } from './frame-inbox.js';
import { ringAllReduce, type RingChunk, type RingLink } from './ring-allreduce.js';
import { allGatherSum } from './tcp-allgather-sum.js';
import { controlFrame, emptyHeader, FRAME_HEADER_BYTES, FrameKind, writeHeader, type FrameHeader } from './tcp-frame.js';
import { FrameReader } from './tcp-frame-reader.js';
import type { TcpRingServer } from './tcp-ring-server.js';
import { chooseScaleExponent, decodeScaled, encodeScaled, WIRE_BYTES_PER_ELEMENT, type WireCodec } from './wire-compression.js';

export { TcpRingServer } from './tcp-ring-server.js';

/** Buffers up to this size take the all-gather latency path. */
export const DEFAULT_SMALL_BUFFER_BYTES = 64 * 1024;
const MAX_REFUSAL_BYTES = 64 * 1024;
/** Default bound on queued, unsent bytes per connection (see queueLimitBytes). */
const QUEUE_LIMIT_BYTES = 16 * 1024 * 1024;

export interface TcpRingCommunicatorOptions {
  /** This rank's own server; receives from the left neighbour. */
  server: TcpRingServer;
  rank: number;
  worldSize: number;
  generation: number;
  /** host:port of the right neighbour's data port. */
  rightAddress: string;
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
  private socket: net.Socket | undefined;
  private broken: CollectiveError | undefined;
  private readonly aborted = new AbortController();
  private closing = false;
  private inFlight = false;
  private last = { step: -1, collective: -1 };
  /** Reused for every outgoing DATA header (serialised before the write returns). */
  private readonly header: FrameHeader = emptyHeader();

  private constructor(
    private readonly options: TcpRingCommunicatorOptions,
    private readonly logger: Logger,
  ) {}

  private get rightRank(): number {
    return (this.options.rank + 1) % this.options.worldSize;
  }

  /** Connects to the right neighbour's data port (retrying while it comes up), sends a HANDSHAKE, and pairs with `server` for receiving. */
  static async connect(options: TcpRingCommunicatorOptions): Promise<TcpRingCommunicator> {
    const { rank, worldSize, generation } = options;
    if (!Number.isInteger(worldSize) || worldSize < 1 || !Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new CollectiveError(`invalid ring position: rank ${rank} of worldSize ${worldSize}`);
    }
    const logger = options.logger ?? componentLogger('tcp-ring-communicator', { rank, generation });
    options.server.expect(generation, (rank - 1 + worldSize) % worldSize);
    const communicator = new TcpRingCommunicator(options, logger);
    if (worldSize > 1) communicator.socket = await communicator.openRight();
    return communicator;
  }

  /** Sum all-reduce in place; every rank ends bit-identical. Frames carry (generation, step, collective) and are checked on receipt. */
  async allReduce(buffer: Float32Array, step: number, collective = 0): Promise<void> {
    this.beginCollective(step, collective);
    const { rank, worldSize, generation, server } = this.options;
    if (worldSize === 1) return;
    this.inFlight = true;
    let link: CollectiveLink | undefined;
    try {
      const inbox = server.inboxFor(generation);
      inbox.openCollective(step, collective);
      const small = buffer.byteLength <= (this.options.smallBufferBytes ?? DEFAULT_SMALL_BUFFER_BYTES);
      // The latency path is not worth compressing, and its forwarding must stay exact.
      const codec = small ? 'none' : (this.options.compression ?? 'none');
      const write: FrameWriter = (fields, frame) => this.writeData(fields, frame);
      link = new CollectiveLink(write, inbox, server, { step, collective, worldSize, codec, timeoutMs: this.options.collectiveTimeoutMs });
      if (small) await allGatherSum(buffer, rank, worldSize, link);
      else await ringAllReduce(buffer, rank, worldSize, link, Math.max(1, Math.floor(this.options.chunkBytes / 4)));
    } catch (cause) {
      this.abort(cause instanceof CollectiveError ? cause : new CollectiveError(`all-reduce failed: ${String(cause)}`, { cause }));
      throw this.broken ?? cause;
    } finally {
      link?.release();
      this.inFlight = false;
    }
  }

  /** Closes both connections of this generation; pending and later collectives reject. */
  close(): Promise<void> {
    if (this.closing) return Promise.resolve();
    this.closing = true;
    this.abort(new CollectiveError(`ring communicator of rank ${this.options.rank} (generation ${this.options.generation}) was closed`));
    return Promise.resolve();
  }

  /**
   * Queues one DATA frame. `frame` is a pooled staging buffer holding the payload after
   * FRAME_HEADER_BYTES; the header is written here, and the buffer goes back to the pool once
   * the kernel has it. Waits only when more than the queue limit is still unsent (backpressure).
   */
  private async writeData(fields: DataFields, frame: Buffer): Promise<void> {
    if (this.broken !== undefined) throw this.broken;
    const socket = this.socket!;
    const payloadBytes = frame.byteLength - FRAME_HEADER_BYTES;
    writeHeader(frame, Object.assign(this.header, fields, { kind: FrameKind.data, generation: this.options.generation, senderRank: this.options.rank, payloadBytes }));
    socket.write(frame, () => this.options.server.pool.give(frame.buffer as ArrayBuffer));
    if (socket.writableLength > this.queueLimitBytes) await this.guard(new Promise<void>((resolve) => socket.once('drain', resolve)));
  }

  /** Unsent bytes allowed to pile up before a send waits: enough to keep the socket busy while this rank reduces. */
  private get queueLimitBytes(): number {
    return Math.max(QUEUE_LIMIT_BYTES, 2 * this.options.chunkBytes);
  }

  /** Checks that collectives arrive one at a time and in strictly increasing (step, collective) order. */
  private beginCollective(step: number, collective: number): void {
    if (this.broken !== undefined) throw this.broken;
    if (this.inFlight) {
      throw new CollectiveError(`rank ${this.options.rank}: an all-reduce is already running; collectives on one ring run one at a time`);
    }
    const { step: lastStep, collective: lastCollective } = this.last;
    if (step < lastStep || (step === lastStep && collective <= lastCollective)) {
      throw new CollectiveError(`rank ${this.options.rank}: all-reduce for step ${step} collective ${collective} does not follow step ${lastStep} collective ${lastCollective}`);
    }
    this.last = { step, collective };
  }

  /** Resolves with `work`, or rejects on abort or after collectiveTimeoutMs without progress. */
  private guard(work: Promise<void>): Promise<void> {
    const signal = this.aborted.signal;
    const timeoutMs = this.options.collectiveTimeoutMs;
    return new Promise<void>((resolve, reject) => {
      const settle = (error?: Error): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = (): void => settle(this.broken);
      const timer = setTimeout(() => settle(new CollectiveError(`right neighbour rank ${this.rightRank} accepted no data for ${timeoutMs} ms`)), timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      work.then(() => settle(), (error: unknown) => settle(error instanceof Error ? error : new CollectiveError(String(error))));
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
    this.options.server.abortGeneration(this.options.generation, error);
    this.socket?.destroy();
  }

  private async openRight(): Promise<net.Socket> {
    const { rightAddress, collectiveTimeoutMs, generation, rank } = this.options;
    const { host, port } = splitAddress(rightAddress);
    const deadline = Date.now() + collectiveTimeoutMs;
    let socket: net.Socket | undefined;
    // Neighbours start at about the same time: retry quickly while the right one comes up.
    for (let delayMs = 50; socket === undefined; delayMs = Math.min(delayMs * 2, 1_000)) {
      try {
        socket = await connectOnce(host, port, Math.max(1, deadline - Date.now()));
      } catch (cause) {
        if (Date.now() + delayMs >= deadline) {
          throw new CollectiveError(`cannot reach right neighbour rank ${this.rightRank} at ${rightAddress} within ${collectiveTimeoutMs} ms`, { cause });
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
    this.watchRight(socket);
    socket.write(controlFrame(FrameKind.handshake, generation, rank));
    this.logger.debug({ rightAddress }, 'tcp ring connection to right neighbour open');
    return socket;
  }

  /** The right neighbour only ever answers with a REFUSE frame; its closing breaks the generation. */
  private watchRight(socket: net.Socket): void {
    const reader = new FrameReader({
      payloadTarget: (header) => {
        if (header.kind !== FrameKind.refuse || header.payloadBytes > MAX_REFUSAL_BYTES) {
          throw new CollectiveError(`right neighbour rank ${this.rightRank} sent an unexpected frame (kind ${header.kind})`);
        }
        return new Uint8Array(header.payloadBytes);
      },
      frame: (header, payload) => {
        const reason = header.kind === FrameKind.refuse ? Buffer.from(payload).toString('utf8') : `frame kind ${header.kind}`;
        this.abort(new CollectiveError(`right neighbour rank ${this.rightRank} refused the ring connection: ${reason}`));
      },
    });
    socket.on('data', (bytes: Buffer) => {
      try {
        reader.push(bytes);
      } catch (error) {
        this.abort(error instanceof CollectiveError ? error : new CollectiveError(String(error), { cause: error }));
      }
    });
    let failure = '';
    socket.on('error', (error) => (failure = `: ${error.message}`));
    socket.once('close', () =>
      this.abort(new CollectiveError(`right neighbour rank ${this.rightRank} closed the ring connection (generation ${this.options.generation})${failure}`)),
    );
  }
}

/** Header fields a collective chooses; the communicator adds kind, generation, sender and size. */
type DataFields = Omit<FrameHeader, 'kind' | 'generation' | 'senderRank' | 'payloadBytes'>;
type FrameWriter = (fields: DataFields, frame: Buffer) => Promise<void>;

/** One collective's view of the transport, as the pure algorithms see it. */
class CollectiveLink implements RingLink {
  private lastTaken: Float32Array | undefined;
  /** Scale exponent each all-gather chunk arrived with, by chunk index: it is forwarded unchanged. */
  private readonly gatherExponents = new Map<number, number>();

  constructor(
    private readonly write: FrameWriter,
    private readonly inbox: FrameInbox,
    private readonly server: TcpRingServer,
    private readonly at: { step: number; collective: number; worldSize: number; codec: WireCodec; timeoutMs: number },
  ) {}

  async send(chunk: RingChunk): Promise<void> {
    this.release();
    const { step, collective, codec } = this.at;
    const fields = { codec, step, collective, round: chunk.round, segment: chunk.segment, chunk: chunk.chunk, offset: chunk.offset, length: chunk.data.length, scaleExponent: 0 };
    const data = chunk.data;
    // One pooled buffer per frame, header first: the ring mutates `data` once this returns.
    const frame = Buffer.from(this.server.pool.take(FRAME_HEADER_BYTES + data.length * WIRE_BYTES_PER_ELEMENT[codec]));
    if (codec === 'none') {
      new Float32Array(frame.buffer, FRAME_HEADER_BYTES, data.length).set(data);
    } else {
      fields.scaleExponent = this.exponentFor(chunk, codec);
      const staging = new Uint16Array(frame.buffer, FRAME_HEADER_BYTES, data.length);
      encodeScaled(data, codec, fields.scaleExponent, staging);
      // The owner of a reduced segment keeps exactly what every other rank will decode.
      if (chunk.round === this.at.worldSize - 1) decodeScaled(staging, codec, fields.scaleExponent, data);
    }
    await this.write(fields, frame);
  }

  async receive(round: number, chunk: number): Promise<Float32Array> {
    this.release();
    const key = { step: this.at.step, collective: this.at.collective, round, chunk };
    const payload = await this.inbox.take(key, this.at.timeoutMs);
    this.lastTaken = payload;
    const exponent = this.server.takeScaleExponent(key);
    if (this.at.codec !== 'none' && round >= this.at.worldSize - 1) {
      if (exponent === undefined) {
        throw new CollectiveError(`round ${round} chunk ${chunk} arrived uncompressed while this rank uses ${this.at.codec}; ranks disagree on allreduce.compression`);
      }
      this.gatherExponents.set(chunk, exponent);
    }
    return payload;
  }

  /** Gives the last received payload back to the pool: the algorithms are done with it by their next link call. */
  release(): void {
    if (this.lastTaken === undefined) return;
    this.server.pool.give(this.lastTaken.buffer as ArrayBuffer);
    this.lastTaken = undefined;
  }

  private exponentFor(chunk: RingChunk, codec: Exclude<WireCodec, 'none'>): number {
    if (chunk.round < this.at.worldSize) return chooseScaleExponent(chunk.data, codec);
    const exponent = this.gatherExponents.get(chunk.chunk);
    if (exponent === undefined) throw new CollectiveError(`no scale exponent recorded for all-gather chunk ${chunk.chunk} of round ${chunk.round - 1}`);
    return exponent;
  }
}

function connectOnce(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** "host:port" or "[v6]:port". */
function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new CollectiveError(`ring neighbour address "${address}" is not host:port`);
  }
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port };
}
