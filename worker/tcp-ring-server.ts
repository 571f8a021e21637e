// Receiving end of the raw-TCP ring: the worker's data port. The left neighbour connects, sends
// a HANDSHAKE frame, then DATA frames; payloads land in pooled buffers and go to the
// generation's FrameInbox. The port is shared: a connection that does not open with the ring
// magic is handed to `otherProtocol` untouched (the worker passes gRPC connections to its
// RingDataServer), so one advertised address serves both transports.
// Invariants (the same as RingDataServer's):
//   - at most one left connection is attached, only for the current generation and from the
//     expected left rank; anything else gets a REFUSE frame naming the reason, then is closed;
//   - a handshake for a newer generation is parked (socket paused; frames already read are kept
//     in order) until `expect` reaches that generation;
//   - once the left connection closes or misbehaves, the generation's inbox fails for good.
import * as net from 'node:net';
import { CollectiveError, PortInUseError } from '../shared/errors.js';
import { componentLogger, type Logger } from '../shared/logger.js';
import { FrameInbox, type FrameKey } from './frame-inbox.js';
import { BufferPool } from './tcp-buffer-pool.js';
import { controlFrame, FRAME_MAGIC, FrameKind, type FrameHeader } from './tcp-frame.js';
import { FrameReader } from './tcp-frame-reader.js';
import { decodeScaled, WIRE_BYTES_PER_ELEMENT, type WireCodec } from './wire-compression.js';

/** Largest payload one frame may announce; a bigger one is a corrupt or hostile stream. */
const MAX_PAYLOAD_BYTES = 1 << 30;
/** How long a new connection may take to send its first four bytes. */
const SNIFF_TIMEOUT_MS = 10_000;
/** How long `close` waits for the listener to shut. */
const CLOSE_GRACE_MS = 1_000;

export interface TcpRingServerOptions {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  logger?: Logger;
  /** Takes connections that do not speak the ring protocol; without it they are dropped. */
  otherProtocol?: (socket: net.Socket) => void;
}

/** A frame that arrived while its connection was parked, copied out of the reader's header. */
interface HeldFrame {
  key: FrameKey;
  codec: WireCodec;
  length: number;
  scaleExponent: number;
  payload: Uint8Array;
}

interface LeftPeer {
  readonly socket: net.Socket;
  generation: number;
  senderRank: number;
  state: 'new' | 'parked' | 'attached' | 'done';
  readonly backlog: HeldFrame[];
}

export class TcpRingServer {
  /** Payload storage shared with this rank's TcpRingCommunicator (one thread, no locking). */
  readonly pool = new BufferPool();
  private generation = -1;
  private leftRank = -1;
  private inbox = new FrameInbox(-1);
  private left: LeftPeer | undefined;
  private readonly parked = new Set<LeftPeer>();
  private readonly sockets = new Set<net.Socket>();
  /** Scale exponents of compressed frames delivered to the inbox, by frame key id. */
  private readonly exponents = new Map<string, number>();
  private readonly leftWaiters = new Set<() => boolean>();
  private closed = false;

  private constructor(
    private readonly server: net.Server,
    private readonly options: TcpRingServerOptions,
    private readonly logger: Logger,
  ) {
    server.on('connection', (socket) => this.onConnection(socket));
  }

  /** Listens on host:port. Throws PortInUseError on EADDRINUSE. */
  static async start(options: TcpRingServerOptions): Promise<TcpRingServer> {
    const ring = new TcpRingServer(net.createServer({ noDelay: true }), options, options.logger ?? componentLogger('tcp-ring-server'));
    const address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
    await new Promise<void>((resolve, reject) => {
      ring.server.once('error', (error: NodeJS.ErrnoException) =>
        reject(error.code === 'EADDRINUSE' ? new PortInUseError(address, { cause: error }) : error),
      );
      ring.server.listen(options.port, options.host, () => resolve());
    });
    return ring;
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  /** Prepare for generation g: connections and frames of other generations are refused. */
  expect(generation: number, leftRank: number): void {
    if (this.closed) throw new CollectiveError('tcp ring server is closed');
    if (generation < this.generation) {
      throw new CollectiveError(`generation ${generation} is older than the current generation ${this.generation}`);
    }
    if (generation === this.generation) {
      if (leftRank !== this.leftRank) {
        throw new CollectiveError(`generation ${generation} already expects left rank ${this.leftRank}, not ${leftRank}`);
      }
      return;
    }
    const superseded = new CollectiveError(`generation ${this.generation} was superseded by generation ${generation}`);
    this.inbox.fail(superseded);
    if (this.left !== undefined) this.refuse(this.left, superseded.message);
    this.generation = generation;
    this.leftRank = leftRank;
    this.inbox = new FrameInbox(leftRank);
    this.exponents.clear();
    this.left = undefined;
    for (const peer of [...this.parked]) {
      if (peer.generation <= generation) {
        this.parked.delete(peer);
        this.admit(peer);
      }
    }
    this.notify();
  }

  /** Resolves once the left neighbour's connection for the current generation is attached. */
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
        if (this.generation !== generation) {
          return settle(new CollectiveError(`generation ${generation} was superseded while waiting for the left neighbour`));
        }
        if (this.inbox.failedWith !== undefined) return settle(this.inbox.failedWith);
        return this.left !== undefined && settle();
      };
      const timer = setTimeout(
        () => settle(new CollectiveError(`left neighbour rank ${this.leftRank} did not connect within ${timeoutMs} ms (generation ${generation})`)),
        timeoutMs,
      );
      if (!check()) this.leftWaiters.add(check);
    });
  }

  /** The inbox of `generation`, which must be the current one. */
  inboxFor(generation: number): FrameInbox {
    if (generation !== this.generation) {
      throw new CollectiveError(`tcp ring server is at generation ${this.generation}, not ${generation}`);
    }
    return this.inbox;
  }

  /** The scale exponent a compressed frame arrived with (once; undefined for float32 frames). */
  takeScaleExponent(key: FrameKey): number | undefined {
    const id = keyId(key);
    const exponent = this.exponents.get(id);
    this.exponents.delete(id);
    return exponent;
  }

  /** Fails `generation` (if current): pending takes reject and the left neighbour is refused. */
  abortGeneration(generation: number, error: Error): void {
    if (generation !== this.generation) return;
    this.inbox.fail(error);
    // The communicator decides whether its abort is worth a warning; this is its echo.
    if (this.left !== undefined) this.refuse(this.left, error.message, 'debug');
    this.notify();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.inbox.fail(new CollectiveError(`tcp ring server on port ${this.port} closed`));
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    this.parked.clear();
    this.left = undefined;
    this.pool.clear();
    this.notify();
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_GRACE_MS);
      this.server.close(() => resolve());
    });
    clearTimeout(timer);
  }

  /** Reads the first four bytes: the ring magic keeps the connection, anything else goes to `otherProtocol`. */
  private onConnection(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    const onReadable = (): void => {
      const head = socket.read(4) as Buffer | null;
      if (head === null) return;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      if (head.readUInt32LE(0) === FRAME_MAGIC) this.adopt(socket, head);
      else if (this.options.otherProtocol !== undefined) {
        socket.unshift(head);
        this.options.otherProtocol(socket);
      } else socket.destroy();
    };
    socket.on('readable', onReadable);
    socket.once('close', () => clearTimeout(timer));
    socket.on('error', () => undefined); // 'close' follows; the peer handler reports it
  }

  private adopt(socket: net.Socket, head: Buffer): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const peer: LeftPeer = { socket, generation: -1, senderRank: -1, state: 'new', backlog: [] };
    const reader = new FrameReader({
      payloadTarget: (header) => this.payloadTarget(peer, header),
      frame: (header, payload) => this.onFrame(peer, header, payload),
    });
    const push = (bytes: Buffer): void => {
      try {
        reader.push(bytes);
      } catch (error) {
        const collective = error instanceof CollectiveError ? error : new CollectiveError(String(error), { cause: error });
        this.failFrom(peer, collective);
      }
    };
    socket.on('data', push);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.onGone(peer);
    });
    push(head);
    socket.resume();
  }

  private payloadTarget(peer: LeftPeer, header: FrameHeader): Uint8Array {
    if (header.kind !== FrameKind.data) throw new CollectiveError(`unexpected frame kind ${header.kind} with a payload`);
    if (peer.state === 'attached') {
      const problem = frameProblem(header, this.generation, this.leftRank);
      if (problem !== undefined) throw new CollectiveError(`frame from left neighbour rank ${peer.senderRank} refused: ${problem}`);
    } else if (header.payloadBytes > MAX_PAYLOAD_BYTES) {
      throw new CollectiveError(`frame announces ${header.payloadBytes} payload bytes`);
    }
    return new Uint8Array(this.pool.take(header.payloadBytes));
  }

  private onFrame(peer: LeftPeer, header: FrameHeader, payload: Uint8Array): void {
    if (peer.state === 'new') {
      if (header.kind !== FrameKind.handshake) throw new CollectiveError(`first frame must be a HANDSHAKE, got kind ${header.kind}`);
      this.onHandshake(peer, header.generation, header.senderRank);
      return;
    }
    if (peer.state === 'done') {
      this.pool.give(payload.buffer as ArrayBuffer);
      return;
    }
    if (header.kind !== FrameKind.data) throw new CollectiveError(`unexpected frame kind ${header.kind} after the handshake`);
    const held: HeldFrame = {
      key: { step: header.step, collective: header.collective, round: header.round, chunk: header.chunk },
      codec: header.codec,
      length: header.length,
      scaleExponent: header.scaleExponent,
      payload,
    };
    if (peer.state === 'parked') peer.backlog.push(held);
    else this.deliver(held);
  }

  private onHandshake(peer: LeftPeer, generation: number, senderRank: number): void {
    peer.generation = generation;
    peer.senderRank = senderRank;
    if (generation > this.generation && !this.closed) {
      peer.state = 'parked';
      peer.socket.pause();
      this.parked.add(peer);
      this.logger.debug({ generation, senderRank }, 'parked handshake for a future generation');
      return;
    }
    this.admit(peer);
  }

  /** Attaches a handshaken connection as the left neighbour, or refuses it. */
  private admit(peer: LeftPeer): void {
    const refusal =
      peer.generation !== this.generation
        ? `stale generation ${peer.generation}; this rank is at generation ${this.generation}`
        : peer.senderRank !== this.leftRank
          ? `rank ${peer.senderRank} is not the left neighbour (rank ${this.leftRank}) in generation ${this.generation}`
          : this.left !== undefined
            ? `a connection from rank ${this.leftRank} is already attached for generation ${this.generation}`
            : this.inbox.failedWith !== undefined
              ? `generation ${this.generation} is already broken: ${this.inbox.failedWith.message}`
              : undefined;
    if (refusal !== undefined) {
      this.refuse(peer, refusal);
      return;
    }
    peer.state = 'attached';
    this.left = peer;
    try {
      for (const held of peer.backlog.splice(0)) {
        const problem = frameProblem({ ...held, generation: peer.generation, senderRank: peer.senderRank, kind: FrameKind.data, payloadBytes: held.payload.byteLength }, this.generation, this.leftRank);
        if (problem !== undefined) throw new CollectiveError(`frame from left neighbour rank ${peer.senderRank} refused: ${problem}`);
        this.deliver(held);
      }
    } catch (error) {
      this.failFrom(peer, error instanceof CollectiveError ? error : new CollectiveError(String(error), { cause: error }));
      return;
    }
    peer.socket.resume();
    this.logger.debug({ generation: this.generation, leftRank: this.leftRank }, 'left neighbour attached');
    this.notify();
  }

  /** Hands one frame to the inbox as float32, decoding a compressed payload into pooled storage. */
  private deliver(held: HeldFrame): void {
    let values: Float32Array;
    if (held.codec === 'none') values = new Float32Array(held.payload.buffer, 0, held.length);
    else {
      values = new Float32Array(this.pool.take(held.length * 4));
      decodeScaled(new Uint16Array(held.payload.buffer, 0, held.length), held.codec, held.scaleExponent, values);
      this.pool.give(held.payload.buffer as ArrayBuffer);
      this.exponents.set(keyId(held.key), held.scaleExponent);
    }
    this.inbox.deliver(held.key, values);
  }

  private onGone(peer: LeftPeer): void {
    if (peer.state === 'done') return;
    this.parked.delete(peer);
    const wasLeft = peer === this.left;
    peer.state = 'done';
    if (!wasLeft) return;
    this.left = undefined;
    this.inbox.fail(new CollectiveError(`left neighbour rank ${peer.senderRank} closed its ring connection (generation ${peer.generation})`));
    this.notify();
  }

  /** A protocol violation on `peer`: fail the generation if it was the left neighbour, and refuse it. */
  private failFrom(peer: LeftPeer, error: CollectiveError): void {
    if (peer === this.left) this.inbox.fail(error);
    this.refuse(peer, error.message);
    this.notify();
  }

  /** Tells the sender why (a REFUSE frame), then closes the connection. */
  private refuse(peer: LeftPeer, reason: string, level: 'warn' | 'debug' = 'warn'): void {
    if (peer.state === 'done') return;
    if (peer === this.left) this.left = undefined;
    this.parked.delete(peer);
    peer.state = 'done';
    this.logger[level]({ senderRank: peer.senderRank, generation: peer.generation }, `ring connection refused: ${reason}`);
    const socket = peer.socket;
    socket.end(controlFrame(FrameKind.refuse, this.generation, 0, reason));
    setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  private notify(): void {
    for (const check of [...this.leftWaiters]) check();
  }
}

/** Why a DATA frame from the attached left neighbour cannot be accepted, or undefined. */
function frameProblem(
  header: Pick<FrameHeader, 'kind' | 'generation' | 'senderRank' | 'codec' | 'length' | 'payloadBytes'>,
  generation: number,
  leftRank: number,
): string | undefined {
  if (header.kind !== FrameKind.data) return `unexpected frame kind ${header.kind} after the handshake`;
  if (header.generation !== generation) return `generation ${header.generation}, expected ${generation}`;
  if (header.senderRank !== leftRank) return `sender rank ${header.senderRank}, expected ${leftRank}`;
  if (header.payloadBytes !== header.length * WIRE_BYTES_PER_ELEMENT[header.codec]) {
    return `length ${header.length} ${header.codec === 'none' ? 'floats' : `${header.codec} values`} but payload of ${header.payloadBytes} bytes`;
  }
  if (header.payloadBytes > MAX_PAYLOAD_BYTES) return `payload of ${header.payloadBytes} bytes exceeds ${MAX_PAYLOAD_BYTES}`;
  return undefined;
}

function keyId(key: FrameKey): string {
  return `${key.step}/${key.collective}/${key.round}/${key.chunk}`;
}
