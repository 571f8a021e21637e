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
import { CONTROL_CHANNEL_OPTIONS, loadProto } from '../../shared/proto.js';

export interface RetryPolicy {
  /** @default 10 */
  attempts: number;
  /** @default 250 */
  initialDelayMs: number;
  /** @default 5000 */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 10, initialDelayMs: 250, maxDelayMs: 5_000 };

type Stream = grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output>;

export class ControlConnection {
  private readonly queue: CoordinatorMessage__Output[] = [];
  private wake: (() => void) | undefined;
  private endReason: string | undefined;
  private readonly interruptHandlers: Array<(reason: string) => void> = [];
  private abortHandler: ((reason: string) => void) | undefined;
  /** sendFlushed calls still waiting for their write to complete. */
  private readonly flushWaiters = new Set<() => void>();

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
    stream.on('end', () => this.end('coordinator closed the control stream'));
    stream.on('error', (error: Error) => this.end(`control stream error: ${error.message}`));
    stream.on('close', () => this.end('control stream closed'));
  }

  private end(reason: string): void {
    this.endReason ??= reason;
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
        if (attempt >= retry.attempts) {
          client.close();
          throw new CoordinatorUnreachableError(address, attempt, { cause });
        }
        logger.info({ address, attempt, retryInMs: delayMs }, 'coordinator not reachable yet; retrying');
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
