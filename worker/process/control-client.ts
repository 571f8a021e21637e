// The worker's end of the control plane: dials the coordinator with exponential backoff, says
// Hello, and yields the coordinator's orders in arrival order. With TLS the channel is mutual TLS;
// with a job token, the token rides in every call's metadata, and a coordinator that refuses it
// (UNAUTHENTICATED) ends the join at once: a retry cannot fix a wrong token.
import * as grpc from '@grpc/grpc-js';
import type { CoordinatorMessage__Output } from '../../proto/generated/ringtrain/v1/CoordinatorMessage.js';
import type { Hello } from '../../proto/generated/ringtrain/v1/Hello.js';
import type { StepOrder__Output } from '../../proto/generated/ringtrain/v1/StepOrder.js';
import type { Welcome__Output } from '../../proto/generated/ringtrain/v1/Welcome.js';
import type { WorkerMessage } from '../../proto/generated/ringtrain/v1/WorkerMessage.js';
import type { ControlClient } from '../../proto/generated/ringtrain/v1/Control.js';
import {
  CoordinatorUnreachableError,
  JoinRejectedError,
  RingtrainError,
  UnauthenticatedError,
  WelcomeTimeoutError,
} from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { withRunDefaults } from '../../shared/run-defaults.js';
import { CONTROL_CHANNEL_OPTIONS, loadProto } from '../../shared/proto.js';
import type { JobSecurity } from '../../shared/security/job-security.js';
import { channelCredentials, tokenMetadata } from '../../shared/security/tls-credentials.js';

export interface RetryPolicy {
  /** @default RUN_DEFAULTS.connectAttempts */
  attempts: number;
  /** @default RUN_DEFAULTS.connectInitialDelayMs */
  initialDelayMs: number;
  /** @default RUN_DEFAULTS.connectMaxDelayMs */
  maxDelayMs: number;
}

/** The policy of a worker given no --connect-attempts: the run defaults. */
export function defaultRetry(): RetryPolicy {
  const { connectAttempts, connectInitialDelayMs, connectMaxDelayMs } = withRunDefaults({});
  return { attempts: connectAttempts, initialDelayMs: connectInitialDelayMs, maxDelayMs: connectMaxDelayMs };
}

type Stream = grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output>;

export class ControlConnection {
  private readonly queue: CoordinatorMessage__Output[] = [];
  private wake: (() => void) | undefined;
  private endReason: string | undefined;
  /** Set when the coordinator refused this worker's token (the call ended UNAUTHENTICATED). */
  private refusedToken: string | undefined;
  private readonly interruptHandlers: Array<(reason: string) => void> = [];
  private abortHandler: ((reason: string) => void) | undefined;
  private queuedStepHandler: ((order: StepOrder__Output) => void) | undefined;
  /** sendFlushed calls still waiting for their write to complete. */
  private readonly flushWaiters = new Set<() => void>();
  /** Resolves once the stream has ended, for whatever reason. */
  private readonly finished: Promise<void>;
  private markFinished: () => void = () => undefined;

  /** Set once the coordinator has welcomed this worker. */
  welcome!: Welcome__Output;

  private constructor(
    /** The coordinator's host:port, as dialled. */
    readonly address: string,
    /** The TLS material and token this worker presents (its heartbeat thread presents them too). */
    readonly security: JobSecurity,
    private readonly client: ControlClient,
    private readonly stream: Stream,
  ) {
    stream.on('data', (message: CoordinatorMessage__Output) => {
      // An abort must reach a collective that is blocked right now, not wait in the queue.
      if (message.kind === 'abort') {
        this.abortHandler?.(message.abort?.reason ?? 'aborted by the coordinator');
        return;
      }
      this.queue.push(message);
      if (message.kind === 'step' && message.step) this.queuedStepHandler?.(message.step);
      if (message.kind === 'shutdown')
        this.interrupt(`coordinator asked to shut down: ${message.shutdown?.reason ?? ''}`);
      this.wake?.();
    });
    this.finished = new Promise((resolve) => (this.markFinished = resolve));
    stream.on('end', () => this.end('coordinator closed the control stream'));
    stream.on('error', (error: Error & { code?: number; details?: string }) => {
      if (error.code === grpc.status.UNAUTHENTICATED) this.refusedToken = error.details ?? error.message;
      this.end(`control stream error: ${error.message}`);
    });
    stream.on('close', () => this.end('control stream closed'));
  }

  private end(reason: string): void {
    this.endReason ??= reason;
    this.markFinished();
    this.interrupt(reason);
    for (const resolve of this.flushWaiters) resolve();
    this.flushWaiters.clear();
    this.wake?.();
  }

  /**
   * Gives the session up as lost, as if the stream had ended: the heartbeat thread found the
   * coordinator unreachable. This channel has no keepalive of its own (see CONTROL_CHANNEL_OPTIONS),
   * so without this a coordinator that vanished without closing its connection would be waited
   * for forever. Deferred by a turn of the event loop, so an order already read off the socket
   * (a shutdown) is queued first and still obeyed.
   */
  abandon(reason: string): void {
    setImmediate(() => {
      if (this.endReason !== undefined) return;
      this.end(reason);
      this.stream.cancel();
    });
  }

  /**
   * Dials `address` and joins with `hello`, bounded by `retry` (one budget of attempts for both):
   * an unreachable coordinator, a stream that ends before the Welcome (a coordinator starting or
   * restarting) and a Reject with a retryable code (UNAVAILABLE) are all retried with backoff. Any
   * other Reject is final. Once the Hello is out, the Welcome must come within `welcomeTimeoutMs`.
   */
  static async connect(
    address: string,
    hello: Hello,
    retry: RetryPolicy,
    logger: Logger,
    options: { welcomeTimeoutMs?: number; security?: JobSecurity } = {},
  ): Promise<ControlConnection> {
    const { welcomeTimeoutMs = DEFAULT_WELCOME_TIMEOUT_MS, security = {} } = options;
    const Control = loadProto().ringtrain.v1.Control;
    const client = new Control(address, channelCredentials(security.tls), CONTROL_CHANNEL_OPTIONS);
    const backoff = new Backoff(retry);
    try {
      for (;;) {
        await dial(client, address, backoff, logger, security);
        // The listener is attached before anything can arrive, so no order is ever dropped.
        const connection = new ControlConnection(
          address,
          security,
          client,
          client.Session(tokenMetadata(security.token)),
        );
        connection.send({ hello });
        const first = await connection.nextWithin(welcomeTimeoutMs);
        if (first !== 'timeout' && first?.kind === 'welcome' && first.welcome) {
          connection.welcome = first.welcome;
          return connection;
        }
        const ended = connection.ended;
        connection.dropJoinAttempt();
        if (connection.refusedToken !== undefined)
          throw new UnauthenticatedError(address, security.token !== undefined);
        const why = retryableReason(address, first, ended, welcomeTimeoutMs);
        if (!backoff.spend())
          throw new CoordinatorUnreachableError(address, backoff.attempts, { cause: new Error(why) });
        logger.info(
          { address, why, retryInMs: backoff.delayMs },
          'coordinator not ready to admit this worker; retrying',
        );
        await backoff.wait();
      }
    } catch (error) {
      client.close();
      throw error;
    }
  }

  /** The next order, or 'timeout' when none came within `timeoutMs`. */
  private async nextWithin(timeoutMs: number): Promise<CoordinatorMessage__Output | undefined | 'timeout'> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    try {
      return await Promise.race([this.next(), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Gives up this join attempt's stream (not the channel: a retry opens a new stream on it). */
  private dropJoinAttempt(): void {
    this.endReason ??= 'abandoned by this worker';
    this.wake?.();
    this.stream.cancel();
  }

  /**
   * Called once, at once, when the coordinator goes away or orders a shutdown, even while an
   * order is still being processed (so a collective blocked on a dead peer can be cancelled).
   */
  onInterrupt(handler: (reason: string) => void): void {
    this.interruptHandlers.push(handler);
  }

  /** Called (every time) when the coordinator aborts the collective in flight. */
  onAbort(handler: (reason: string) => void): void {
    this.abortHandler = handler;
  }

  private interrupt(reason: string): void {
    for (const handler of this.interruptHandlers.splice(0)) handler(reason);
  }

  send(message: WorkerMessage): void {
    if (this.endReason === undefined) this.stream.write(message);
  }

  /**
   * Sends `message` and resolves once gRPC has handed it to the socket (or the stream is gone).
   * A worker about to start a long synchronous computation awaits this: the write is otherwise
   * only flushed when the event loop next runs, after that computation.
   */
  sendFlushed(message: WorkerMessage): Promise<void> {
    if (this.endReason !== undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      // The stream ending (coordinator gone) also settles it: a write callback may never run then.
      this.flushWaiters.add(resolve);
      this.stream.write(message, () => {
        this.flushWaiters.delete(resolve);
        resolve();
      });
    });
  }

  /**
   * Sends a last message (a WorkerFailure), half-closes, and waits until the coordinator has
   * closed its side too, at most `timeoutMs`. A write's callback only means gRPC took the message:
   * a process that exits right after it can lose the message in a socket buffer.
   */
  async sendLast(message: WorkerMessage, timeoutMs: number): Promise<void> {
    if (this.endReason === undefined) {
      this.stream.write(message);
      this.stream.end();
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /**
   * Called with each step order as it is queued (usually while the step before it runs): the
   * worker starts reading that step's samples. A later call replaces the handler.
   */
  onQueuedStep(handler: (order: StepOrder__Output) => void): void {
    this.queuedStepHandler = handler;
  }

  /** Next order from the coordinator, or undefined once the stream has ended. */
  async next(): Promise<CoordinatorMessage__Output | undefined> {
    for (;;) {
      const message = this.queue.shift();
      if (message !== undefined) return message;
      if (this.endReason !== undefined) return undefined;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  get ended(): string | undefined {
    return this.endReason;
  }

  close(): void {
    this.endReason ??= 'closed by this worker';
    this.wake?.();
    try {
      this.stream.end();
    } catch {
      // already closed
    }
    this.client.close();
  }
}

/** Reject codes that mean "not now": the worker backs off and says Hello again. */
const RETRYABLE_REJECT_CODES: ReadonlySet<string> = new Set(['UNAVAILABLE']);

/**
 * How long a worker whose Hello is out waits for its Welcome: longer than the coordinator's
 * longest default join timeout (600 s), so a live coordinator always answers first (a Welcome,
 * a Reject, or closing the stream when it gives up). The control channel has no keepalive (and
 * the heartbeat thread starts only after the Welcome), so this deadline is what ends the wait for
 * a coordinator whose host vanished without closing the connection.
 */
export const DEFAULT_WELCOME_TIMEOUT_MS = 660_000;

/** Exponential backoff over a fixed budget of attempts (the first attempt is free). */
class Backoff {
  attempts = 1;
  delayMs: number;

  constructor(private readonly policy: RetryPolicy) {
    this.delayMs = policy.initialDelayMs;
  }

  /** How many attempts the policy allows in all. */
  get budget(): number {
    return this.policy.attempts;
  }

  /** Counts one more attempt; false when the budget is spent. */
  spend(): boolean {
    if (this.attempts >= this.policy.attempts) return false;
    this.attempts += 1;
    return true;
  }

  async wait(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    this.delayMs = Math.min(this.policy.maxDelayMs, this.delayMs * 2);
  }
}

/** Waits until the channel is connected, spending attempts from `backoff` while it is not. */
async function dial(
  client: ControlClient,
  address: string,
  backoff: Backoff,
  logger: Logger,
  security: JobSecurity,
): Promise<void> {
  for (;;) {
    try {
      await new Promise<void>((resolve, reject) =>
        client.waitForReady(Date.now() + Math.max(backoff.delayMs, 1_000), (e) => (e ? reject(e) : resolve())),
      );
      return;
    } catch (cause) {
      // Warn (the default level shows it) on every attempt: a worker that is quietly retrying
      // a wrong address looks exactly like one that hangs.
      const attempt = backoff.attempts;
      const attempts = backoff.budget;
      const last = attempt >= attempts;
      logger.warn(
        { address, attempt, attempts, ...(last ? {} : { retryInMs: backoff.delayMs }) },
        last
          ? `coordinator at ${address} not reachable (attempt ${attempt} of ${attempts}); giving up`
          : `coordinator at ${address} not reachable (attempt ${attempt} of ${attempts}); retrying in ${backoff.delayMs} ms`,
      );
      if (!backoff.spend())
        throw new CoordinatorUnreachableError(address, backoff.attempts, {
          cause,
          // A TLS coordinator and a plaintext worker (or the reverse) look alike from here: say so.
          hint:
            security.tls === undefined
              ? 'if the coordinator runs with TLS, give this worker --tls-ca, --tls-cert and --tls-key'
              : "if the coordinator runs with TLS, check that this worker's certificate comes from the coordinator's CA",
        });
      await backoff.wait();
    }
  }
}

/** Why a join that got no Welcome may be retried; throws when the answer is final. */
function retryableReason(
  address: string,
  first: CoordinatorMessage__Output | undefined | 'timeout',
  ended: string | undefined,
  welcomeTimeoutMs: number,
): string {
  if (first === 'timeout') throw new WelcomeTimeoutError(address, welcomeTimeoutMs);
  if (first === undefined) return ended ?? 'stream ended';
  if (first.kind === 'reject') {
    const code = first.reject?.code ?? 'UNKNOWN';
    if (!RETRYABLE_REJECT_CODES.has(code)) throw new JoinRejectedError(code, first.reject?.message ?? '');
    return `${code}: ${first.reject?.message ?? ''}`;
  }
  if (first.kind === 'shutdown')
    throw new RingtrainError(
      `coordinator at ${address} told this worker to leave before welcoming it: ${first.shutdown?.reason ?? ''}`,
    );
  throw new RingtrainError(`coordinator at ${address} did not welcome this worker: it answered "${first.kind}"`);
}
