// The coordinator's gRPC endpoint: accepts worker control streams, insists on a Hello first,
// and hands each joined worker to the membership as a WorkerSession. Also takes each worker's
// heartbeats (a separate call from the worker's heartbeat thread) to the session they name.
// With a job token, every call must present it before anything else happens: a call without it
// ends UNAUTHENTICATED and nothing of the job (spec, hash, state) is ever sent on it.
import * as grpc from '@grpc/grpc-js';
import type { Heartbeat__Output } from '../../proto/generated/ringtrain/v1/Heartbeat.js';
import type { HeartbeatsEnd } from '../../proto/generated/ringtrain/v1/HeartbeatsEnd.js';
import { capText, MAX_ADDRESS_CHARS, MAX_CLAIMED_GENERATION, MAX_TOKEN_CHARS } from '../../shared/control-limits.js';
import { isAddressInUse, PortInUseError } from '../../shared/errors.js';
import { addHealthService } from '../../shared/health.js';
import type { Logger } from '../../shared/logger.js';
import { CONTROL_SERVER_OPTIONS, loadProto } from '../../shared/proto.js';
import { tokensMatch, type JobSecurity } from '../../shared/security/job-security.js';
import { presentedToken, serverCredentials } from '../../shared/security/tls-credentials.js';
import { WorkerSession, type SessionStream } from './worker-session.js';

/** How long a new stream may stay silent before its Hello. */
const HELLO_TIMEOUT_MS = 10_000;
/**
 * How many streams may wait for their Hello at once: legitimate workers say Hello at once, so
 * more than this is a flood, refused (RESOURCE_EXHAUSTED) rather than held for HELLO_TIMEOUT_MS.
 */
const MAX_STREAMS_BEFORE_HELLO = 64;

type HeartbeatsCall = grpc.ServerReadableStream<Heartbeat__Output, HeartbeatsEnd>;

export class ControlServer {
  private nextSessionId = 1;
  /** Streams accepted that have not said Hello yet (at most MAX_STREAMS_BEFORE_HELLO). */
  private streamsBeforeHello = 0;
  /** Open sessions by id, for heartbeats; a session leaves when its stream closes. */
  private readonly sessions = new Map<number, WorkerSession>();

  private constructor(
    private readonly server: grpc.Server,
    readonly host: string,
    readonly port: number,
  ) {}

  /**
   * Binds host:port (0 = ephemeral). `onSession` gets every worker that said Hello; it decides
   * (admit or reject) and owns the session from then on.
   */
  static async start(options: {
    host: string;
    port: number;
    logger: Logger;
    onSession: (session: WorkerSession) => void;
    configure?: (server: grpc.Server) => void;
    /** Mutual TLS and the job token. @default plaintext, no token */
    security?: JobSecurity;
  }): Promise<ControlServer> {
    const server = new grpc.Server(CONTROL_SERVER_OPTIONS);
    const security = options.security ?? {};
    const authentic = (call: AuthenticatedCall): boolean => authenticate(call, security.token, options.logger);
    // Streams can arrive between bind and construction: they wait, and are accepted right after.
    // (Aborting them sent the worker nothing, and it waited for its Welcome forever.)
    const ref: { server?: ControlServer; early: SessionStream[] } = { early: [] };
    server.addService(loadProto().ringtrain.v1.Control.service, {
      Session: (stream: SessionStream) => {
        if (!authentic(stream)) {
          stream.emit('error', unauthenticated());
          return;
        }
        if (ref.server === undefined) ref.early.push(stream);
        else ref.server.accept(stream, options.logger, options.onSession);
      },
      Heartbeats: (call: HeartbeatsCall, callback: grpc.sendUnaryData<HeartbeatsEnd>) => {
        if (!authentic(call)) callback(unauthenticated());
        else if (ref.server === undefined)
          callback({ code: grpc.status.UNAVAILABLE, details: 'coordinator is starting' });
        else ref.server.takeHeartbeats(call, callback);
      },
    });
    addHealthService(server);
    options.configure?.(server);
    const address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, serverCredentials(security), (error, bound) => {
        if (error) {
          reject(isAddressInUse(error) ? new PortInUseError(address, { cause: error }) : error);
        } else {
          resolve(bound);
        }
      });
    });
    const started = new ControlServer(server, options.host, port);
    ref.server = started;
    for (const stream of ref.early.splice(0)) started.accept(stream, options.logger, options.onSession);
    return started;
  }

  /** Address workers on this machine should dial. */
  get localAddress(): string {
    const host = this.host === '0.0.0.0' || this.host === '::' ? '127.0.0.1' : this.host;
    return `${host}:${this.port}`;
  }

  private accept(stream: SessionStream, logger: Logger, onSession: (session: WorkerSession) => void): void {
    if (this.streamsBeforeHello >= MAX_STREAMS_BEFORE_HELLO) {
      stream.emit('error', {
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `more than ${MAX_STREAMS_BEFORE_HELLO} control streams are waiting for their hello`,
      });
      return;
    }
    this.streamsBeforeHello++;
    let counted = true;
    const uncount = (): void => {
      if (counted) this.streamsBeforeHello--;
      counted = false;
    };
    stream.once('close', uncount);
    stream.once('cancelled', uncount);
    const timer = setTimeout(() => {
      logger.warn({ peer: stream.getPeer() }, 'control stream sent no hello; dropping it');
      stream.destroy(new Error('no hello'));
    }, HELLO_TIMEOUT_MS);
    stream.once('data', (first: { kind?: string; hello?: SessionStreamHello | null }) => {
      clearTimeout(timer);
      uncount();
      if (first.kind !== 'hello' || !first.hello) {
        stream.write({ reject: { code: 'PROTOCOL', message: 'the first message on a control stream must be hello' } });
        stream.end();
        return;
      }
      const session = new WorkerSession(this.nextSessionId++, cappedHello(first.hello), stream, logger);
      this.sessions.set(session.id, session);
      void session.closed.then(() => this.sessions.delete(session.id));
      onSession(session);
    });
    stream.on('error', () => {
      clearTimeout(timer);
      uncount();
    });
  }

  /**
   * Beats are credited to the open session they name (id and pid must match); a beat for any
   * other ends the call, since that worker's session is gone and it must join again. The call
   * ends with its session, so no heartbeat call outlives the control stream it speaks for (and
   * none holds up the server's shutdown).
   */
  private takeHeartbeats(call: HeartbeatsCall, callback: grpc.sendUnaryData<HeartbeatsEnd>): void {
    let ended = false;
    let bound: WorkerSession | undefined;
    const end = (error: grpc.ServiceError | null): void => {
      if (ended) return;
      ended = true;
      callback(error, {});
    };
    call.on('data', (beat: Heartbeat__Output) => {
      const session = this.sessions.get(beat.sessionId);
      if (session !== undefined && session.hello.pid === beat.pid && (bound ?? session) === session) {
        if (bound === undefined) void session.closed.then(() => end(null));
        bound = session;
        session.noteHeartbeat(beat);
      } else
        end(
          Object.assign(new Error('no such session'), {
            code: grpc.status.NOT_FOUND,
            details: `no open session ${beat.sessionId} for pid ${beat.pid}`,
            metadata: new grpc.Metadata(),
          }),
        );
    });
    call.on('end', () => end(null));
    call.on('error', () => (ended = true));
  }

  /** Stops accepting and closes every stream (bounded: forces after `graceMs`). */
  async close(graceMs = 2_000): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

type SessionStreamHello = ConstructorParameters<typeof WorkerSession>[1];

type AuthenticatedCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'metadata' | 'getPeer'>;

/** True when no token is asked for, or the call presented the job's; a refusal is logged with the peer's address. */
function authenticate(call: AuthenticatedCall, token: string | undefined, logger: Logger): boolean {
  if (token === undefined || tokensMatch(presentedToken(call.metadata), token)) return true;
  logger.warn({ peer: call.getPeer() }, 'refused a control call without the job token (UNAUTHENTICATED)');
  return false;
}

/** The refusal says nothing of the job: no hash, no generation, no world size. */
function unauthenticated(): grpc.ServiceError {
  return Object.assign(new Error('wrong or missing job token'), {
    code: grpc.status.UNAUTHENTICATED,
    details: 'wrong or missing job token',
    metadata: new grpc.Metadata(),
  });
}

/**
 * The Hello with its text fields capped (they are stored, logged and shown) and its claimed
 * generation bounded (issue 16 §4).
 */
function cappedHello(hello: SessionStreamHello): SessionStreamHello {
  return {
    ...hello,
    host: capText(hello.host, MAX_ADDRESS_CHARS),
    dataAddress: capText(hello.dataAddress, MAX_ADDRESS_CHARS),
    jobHash: capText(hello.jobHash, MAX_TOKEN_CHARS),
    version: capText(hello.version, MAX_TOKEN_CHARS),
    generation: Math.min(hello.generation, MAX_CLAIMED_GENERATION),
  };
}
