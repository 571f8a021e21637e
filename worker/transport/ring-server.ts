// A worker's data port for the raw-TCP ring. The RIGHT neighbour connects here and sends a
// HANDSHAKE; from then on this rank writes its DATA frames into that connection. (The receiver
// dials because only a client socket can read with `onread` straight into pooled payload
// buffers; see ring-communicator.ts.)
// A connection that does not open with the ring magic is not ours and is closed at once.
// With TLS, the port speaks only mutual TLS (a certificate from the job's CA); with a job token,
// the HANDSHAKE must carry it, and a connection that does not is closed without a word (no REFUSE:
// nothing about this rank or its generation goes to a peer before it is authenticated).
// Invariants:
//   - at most one right connection is attached, only for the current generation and from the
//     expected right rank; anything else gets a REFUSE frame naming the reason, then is closed;
//   - a handshake for a newer generation is parked until `expect` reaches that generation, at
//     most `maxParked` of them (the oldest is refused to make room) and each at most
//     `parkTimeoutMs` (then refused): a peer cannot hold sockets or memory here without bound,
//     and a parked handshake for a generation that never comes holds no seat;
//   - once the attached connection closes or the generation is aborted, the generation stays
//     failed here: it is never resumed, the coordinator opens a new one.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { CollectiveError, isAddressInUse, isConnectionReset, PortInUseError } from '../../shared/errors.js';
import { componentLogger, type Logger } from '../../shared/logger.js';
import { MAX_TOKEN_BYTES, tokensMatch, type JobSecurity } from '../../shared/security/job-security.js';
import { ringServerTls } from '../../shared/security/tls-credentials.js';
import { BufferPool } from './buffer-pool.js';
import { controlFrame, FRAME_MAGIC, FrameKind } from './frame.js';
import { FrameReader } from './frame-reader.js';

/** How long a new connection may take to send its first four bytes. */
const SNIFF_TIMEOUT_MS = 10_000;
/** How many handshakes for future generations may wait at once. */
const MAX_PARKED = 16;
/** How long a handshake for a future generation may wait for it. */
const PARK_TIMEOUT_MS = 10_000;
/** How long a refused connection may take to read its REFUSE frame before it is cut. */
const CLOSE_GRACE_MS = 1_000;

export interface TcpRingServerOptions {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  logger?: Logger;
  /** How long a new connection may take to send its first four bytes. @default 10000 */
  sniffTimeoutMs?: number;
  /** Mutual TLS and the job token, on this port and on the connections this rank dials. @default none */
  security?: JobSecurity;
  /** How many handshakes for future generations may wait at once. @default 16 */
  maxParked?: number;
  /** How long a handshake for a future generation may wait for it. @default 10000 */
  parkTimeoutMs?: number;
}

interface RightPeer {
  readonly socket: net.Socket;
  generation: number;
  rank: number;
  state: 'new' | 'parked' | 'attached' | 'done';
  /** host:port the connection came from, for logs. */
  address: string;
  /** False until its HANDSHAKE presented the job token (true at once when there is no token). */
  authenticated: boolean;
  /** While parked: refuses it when it has waited parkTimeoutMs. */
  parkTimer?: NodeJS.Timeout;
}

export class TcpRingServer {
  /** Frame storage shared with this rank's TcpRingCommunicator (one thread, no locking). */
  readonly pool = new BufferPool();
  private generation = -1;
  private rightRank = -1;
  private right: RightPeer | undefined;
  /** Why the current generation can no longer send, once it cannot. */
  private failure: Error | undefined;
  private readonly parked = new Set<RightPeer>();
  private readonly sockets = new Set<net.Socket>();
  /** Re-evaluated on every state change; each returns true once it has settled. */
  private readonly waiters = new Set<() => boolean>();
  private closed = false;

  private constructor(
    private readonly server: net.Server,
    private readonly logger: Logger,
    private readonly sniffTimeoutMs: number,
    /** What this rank's ring connections present and require (its communicators dial with it too). */
    readonly security: JobSecurity,
    private readonly maxParked: number,
    private readonly parkTimeoutMs: number,
  ) {
    if (server instanceof tls.Server) {
      server.on('secureConnection', (socket: tls.TLSSocket) => this.onConnection(socket));
      server.on('tlsClientError', (error: Error, socket) =>
        // A connection closed before saying anything (a TCP probe, a port scan) is not worth a warning.
        this.logger[isConnectionReset(error) ? 'debug' : 'warn'](
          { peer: peerAddress(socket), reason: error.message },
          'ring connection refused: no mutual TLS with a certificate from the job CA',
        ),
      );
    } else server.on('connection', (socket) => this.onConnection(socket));
  }

  /** Listens on host:port. Throws PortInUseError when the port is taken. */
  static async start(options: TcpRingServerOptions): Promise<TcpRingServer> {
    const security = options.security ?? {};
    const sniffTimeoutMs = options.sniffTimeoutMs ?? SNIFF_TIMEOUT_MS;
    const ring = new TcpRingServer(
      security.tls === undefined
        ? net.createServer({ noDelay: true })
        : tls.createServer({ ...ringServerTls(security.tls), noDelay: true, handshakeTimeout: sniffTimeoutMs }),
      options.logger ?? componentLogger('tcp-ring-server'),
      sniffTimeoutMs,
      security,
      options.maxParked ?? MAX_PARKED,
      options.parkTimeoutMs ?? PARK_TIMEOUT_MS,
    );
    const address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
    await new Promise<void>((resolve, reject) => {
      ring.server.once('error', (error: Error) =>
        reject(isAddressInUse(error) ? new PortInUseError(address, { cause: error }) : error),
      );
      ring.server.listen(options.port, options.host, () => resolve());
    });
    return ring;
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  /** Prepare for generation g: only `rightRank` may connect, with a handshake for g; an older attached connection is refused. */
  expect(generation: number, rightRank: number): void {
    if (this.closed) throw new CollectiveError('tcp ring server is closed');
    if (generation < this.generation)
      throw new CollectiveError(`generation ${generation} is older than the current generation ${this.generation}`);
    if (generation === this.generation) {
      if (rightRank !== this.rightRank)
        throw new CollectiveError(
          `generation ${generation} already expects right rank ${this.rightRank}, not ${rightRank}`,
        );
      return;
    }
    if (this.right !== undefined)
      this.refuse(this.right, `generation ${this.generation} was superseded by generation ${generation}`);
    this.generation = generation;
    this.rightRank = rightRank;
    this.failure = undefined;
    for (const peer of [...this.parked]) {
      if (peer.generation <= generation) {
        this.unpark(peer);
        this.admit(peer);
      }
    }
    this.notify();
  }

  /** The right neighbour's connection for `generation`, once attached. Rejects when the generation fails or is superseded, or after `timeoutMs`. */
  waitForRight(generation: number, timeoutMs: number): Promise<net.Socket> {
    return new Promise<net.Socket>((resolve, reject) => {
      const settle = (outcome: net.Socket | Error): true => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
        return true;
      };
      const check = (): boolean => {
        if (this.generation !== generation)
          return settle(
            new CollectiveError(`generation ${generation} is not current (this rank is at ${this.generation})`),
          );
        if (this.failure !== undefined) return settle(this.failure);
        return this.right !== undefined && settle(this.right.socket);
      };
      const timer = setTimeout(
        () =>
          settle(
            new CollectiveError(
              `right neighbour rank ${this.rightRank} did not connect within ${timeoutMs} ms (generation ${generation})`,
            ),
          ),
        timeoutMs,
      );
      if (!check()) this.waiters.add(check);
    });
  }

  /** Fails `generation` (if current): the right neighbour gets a REFUSE frame with the reason, after any frames already queued. */
  abortGeneration(generation: number, error: Error): void {
    if (generation !== this.generation) return;
    this.failure ??= error;
    // The communicator decides whether its abort is worth a warning; this is its echo.
    if (this.right !== undefined) this.refuse(this.right, error.message, 'debug');
    this.notify();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failure ??= new CollectiveError(`tcp ring server on port ${this.port} closed`);
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    for (const peer of this.parked) clearTimeout(peer.parkTimer);
    this.parked.clear();
    this.right = undefined;
    this.pool.clear();
    this.notify();
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_GRACE_MS);
      this.server.close(() => resolve());
    });
    clearTimeout(timer);
  }

  /** Reads the first four bytes: the ring magic keeps the connection, anything else is closed. */
  private onConnection(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    let sniffed = false;
    // The verdict waits for setImmediate, which runs after the event loop's poll phase: when a long
    // synchronous stretch (a big step) delays this timer, bytes that arrived meanwhile are read
    // first, so a handshake that came in time is never dropped for the process's own delay.
    const timer = setTimeout(
      () =>
        setImmediate(() => {
          if (!sniffed) socket.destroy();
        }),
      this.sniffTimeoutMs,
    );
    const onReadable = (): void => {
      const head = socket.read(4) as Buffer | null;
      if (head === null) return;
      sniffed = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      // At the end of the stream read(4) returns what is left, maybe fewer than four bytes (a
      // peer that sent 1-3 bytes and closed): that is not ours either (found by the fuzz test).
      if (head.length === 4 && head.readUInt32LE(0) === FRAME_MAGIC) this.adopt(socket, head);
      else socket.destroy();
    };
    socket.on('readable', onReadable);
    socket.once('close', () => clearTimeout(timer));
    socket.on('error', () => undefined); // 'close' follows and is handled
  }

  /** A ring connection: exactly one HANDSHAKE frame may arrive on it, nothing after. */
  private adopt(socket: net.Socket, head: Buffer): void {
    this.sockets.add(socket);
    const token = this.security.token;
    const peer: RightPeer = {
      socket,
      generation: -1,
      rank: -1,
      state: 'new',
      address: peerAddress(socket),
      authenticated: token === undefined,
    };
    const reader = new FrameReader({
      // A HANDSHAKE's only payload is the job token.
      payloadTarget: (header) => {
        if (peer.state === 'new' && header.kind === FrameKind.handshake && header.payloadBytes <= MAX_TOKEN_BYTES)
          return new Uint8Array(header.payloadBytes);
        throw new CollectiveError('only a HANDSHAKE (with at most a token) may be sent to a data port');
      },
      frame: (header, payload) => {
        if (peer.state !== 'new' || header.kind !== FrameKind.handshake)
          throw new CollectiveError(`unexpected frame kind ${header.kind} from rank ${peer.rank}`);
        if (token !== undefined && !tokensMatch(payload, token)) {
          this.logger.warn({ peer: peer.address }, 'ring connection refused: wrong or missing job token');
          throw new CollectiveError('wrong or missing job token');
        }
        peer.authenticated = true;
        this.onHandshake(peer, header.generation, header.senderRank);
      },
    });
    socket.on('data', (bytes: Buffer) => {
      try {
        reader.push(bytes);
      } catch (error) {
        this.refuse(peer, error instanceof Error ? error.message : String(error));
      }
    });
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.onGone(peer);
    });
    socket.resume();
    reader.push(head);
  }

  private onHandshake(peer: RightPeer, generation: number, rank: number): void {
    peer.generation = generation;
    peer.rank = rank;
    if (generation > this.generation && !this.closed) {
      const oldest = this.parked.values().next();
      if (this.parked.size >= this.maxParked && oldest.done !== true)
        this.refuse(oldest.value, `more than ${this.maxParked} handshakes wait for future generations`);
      peer.state = 'parked';
      this.parked.add(peer);
      peer.parkTimer = setTimeout(
        () => this.refuse(peer, `generation ${generation} did not start within ${this.parkTimeoutMs} ms`),
        this.parkTimeoutMs,
      );
      peer.parkTimer.unref();
      this.logger.debug({ generation, rank }, 'parked handshake for a future generation');
      return;
    }
    this.admit(peer);
  }

  /** Attaches a handshaken connection as the right neighbour's, or refuses it. */
  private admit(peer: RightPeer): void {
    const refusal =
      peer.generation !== this.generation
        ? `stale generation ${peer.generation}; this rank is at generation ${this.generation}`
        : peer.rank !== this.rightRank
          ? `rank ${peer.rank} is not the right neighbour (rank ${this.rightRank}) in generation ${this.generation}`
          : this.right !== undefined
            ? `a connection from rank ${this.rightRank} is already attached for generation ${this.generation}`
            : this.failure !== undefined
              ? `generation ${this.generation} is already broken: ${this.failure.message}`
              : undefined;
    if (refusal !== undefined) {
      this.refuse(peer, refusal);
      return;
    }
    peer.state = 'attached';
    peer.socket.setNoDelay(true);
    this.right = peer;
    this.logger.debug({ generation: this.generation, rightRank: this.rightRank }, 'right neighbour attached');
    this.notify();
  }

  /** Handshakes waiting for a future generation (bounded by maxParked). */
  get parkedCount(): number {
    return this.parked.size;
  }

  private unpark(peer: RightPeer): void {
    this.parked.delete(peer);
    clearTimeout(peer.parkTimer);
  }

  private onGone(peer: RightPeer): void {
    if (peer.state === 'done') return;
    this.unpark(peer);
    const wasRight = peer === this.right;
    peer.state = 'done';
    if (!wasRight) return;
    this.right = undefined;
    this.failure ??= new CollectiveError(
      `right neighbour rank ${peer.rank} closed its ring connection (generation ${peer.generation})`,
    );
    this.notify();
  }

  /** Tells the peer why (a REFUSE frame), then closes the connection. */
  private refuse(peer: RightPeer, reason: string, level: 'warn' | 'debug' = 'warn'): void {
    if (peer.state === 'done') return;
    if (!peer.authenticated) {
      // Not (yet) a member of the job: it learns nothing, not even why.
      peer.state = 'done';
      peer.socket.destroy();
      return;
    }
    if (peer === this.right) {
      this.right = undefined;
      this.failure ??= new CollectiveError(reason);
    }
    this.unpark(peer);
    peer.state = 'done';
    this.logger[level]({ rank: peer.rank, generation: peer.generation }, `ring connection refused: ${reason}`);
    const socket = peer.socket;
    socket.end(controlFrame(FrameKind.refuse, this.generation, 0, reason));
    setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    this.notify();
  }

  private notify(): void {
    for (const check of [...this.waiters]) check();
  }
}

function peerAddress(socket: net.Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}
