// The worker's end of the control plane: dials the coordinator with exponential backoff, says
// Hello, and yields the coordinator's orders in arrival order.
import * as grpc from '@grpc/grpc-js';
import type { CoordinatorMessage__Output } from '../../proto/generated/ringtrain/v1/CoordinatorMessage.js';
import type { Hello } from '../../proto/generated/ringtrain/v1/Hello.js';
import type { Welcome__Output } from '../../proto/generated/ringtrain/v1/Welcome.js';
import type { WorkerMessage } from '../../proto/generated/ringtrain/v1/WorkerMessage.js';
import type { ControlClient } from '../../proto/generated/ringtrain/v1/Control.js';
import { CoordinatorUnreachableError, JoinRejectedError, RingtrainError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { withRunDefaults } from '../../shared/run-defaults.js';
import { CONTROL_CHANNEL_OPTIONS, loadProto } from '../../shared/proto.js';

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
  private readonly interruptHandlers: Array<(reason: string) => void> = [];
  private abortHandler: ((reason: string) => void) | undefined;
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
      if (message.kind === 'shutdown')
        this.interrupt(`coordinator asked to shut down: ${message.shutdown?.reason ?? ''}`);
      this.wake?.();
    });
    this.finished = new Promise((resolve) => (this.markFinished = resolve));
    stream.on('end', () => this.end('coordinator closed the control stream'));
    stream.on('error', (error: Error) => this.end(`control stream error: ${error.message}`));
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

  /** Dials `address` until it answers (bounded by `retry`), then joins with `hello`. */
  static async connect(address: string, hello: Hello, retry: RetryPolicy, logger: Logger): Promise<ControlConnection> {
    const Control = loadProto().ringtrain.v1.Control;
    const client = new Control(address, grpc.credentials.createInsecure(), CONTROL_CHANNEL_OPTIONS);
    let delayMs = retry.initialDelayMs;
    for (let attempt = 1; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) =>
          client.waitForReady(Date.now() + Math.max(delayMs, 1_000), (e) => (e ? reject(e) : resolve())),
        );
        break;
      } catch (cause) {
        // Warn (the default level shows it) on every attempt: a worker that is quietly retrying
        // a wrong address looks exactly like one that hangs.
        const last = attempt >= retry.attempts;
        logger.warn(
          { address, attempt, attempts: retry.attempts, ...(last ? {} : { retryInMs: delayMs }) },
          last
            ? `coordinator at ${address} not reachable (attempt ${attempt} of ${retry.attempts}); giving up`
            : `coordinator at ${address} not reachable (attempt ${attempt} of ${retry.attempts}); retrying in ${delayMs} ms`,
        );
        if (last) {
          client.close();
          throw new CoordinatorUnreachableError(address, attempt, { cause });
        }
        await new Promise((r) => setTimeout(r, delayMs));
        delayMs = Math.min(retry.maxDelayMs, delayMs * 2);
      }
    }
    // The listener is attached before anything can arrive, so no order is ever dropped.
    const connection = new ControlConnection(address, client, client.Session());
    connection.send({ hello });
    const first = await connection.next();
    if (first?.kind === 'reject') {
      connection.close();
      throw new JoinRejectedError(first.reject?.code ?? 'UNKNOWN', first.reject?.message ?? '');
    }
    if (first?.kind !== 'welcome' || !first.welcome) {
      const why = connection.ended ?? `it answered "${first?.kind ?? 'nothing'}"`;
      connection.close();
      throw new RingtrainError(`coordinator at ${address} did not welcome this worker: ${why}`);
    }
    connection.welcome = first.welcome;
    return connection;
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
