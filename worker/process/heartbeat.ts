// The worker's heartbeat: a worker_thread that beats to the coordinator once a second on its own
// gRPC connection (heartbeat-thread.ts), so beats keep coming while this (the compute) thread is
// busy in a long synchronous step. This thread publishes what it is doing into shared memory;
// the beat carries it, so the coordinator tells "computing step s for 40 s" from "stopped".
//
// Invariants:
// - Only this thread writes `state`; the heartbeat thread only reads it (Atomics, no tearing).
// - At most one heartbeat thread runs per worker: start() ends the previous one.
// - The thread never keeps the process alive (unref), and close() ends it.
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../shared/logger.js';
import type { JobSecurity } from '../../shared/security/job-security.js';

/** What the compute thread is busy with; the index is what the shared state holds. */
export const BUSY_KINDS = ['', 'step', 'eval', 'export'] as const;
export type BusyKind = Exclude<(typeof BUSY_KINDS)[number], ''>;

/** Slots of the shared state (BigInt64Array). */
export const SLOT = { lastStep: 0, busyKind: 1, busyStep: 2, busySinceMs: 3 } as const;

export interface HeartbeatThreadData {
  coordinator: string;
  /** TLS material (Buffers survive the structured clone) and token, as the control stream's. */
  security: JobSecurity;
  sessionId: number;
  pid: number;
  intervalMs: number;
  state: SharedArrayBuffer;
}

export const HEARTBEAT_INTERVAL_MS = 1_000;

/** Built next to this module (dist/worker/process/heartbeat-thread.js). */
const THREAD_URL = new URL('./heartbeat-thread.js', import.meta.url);

export class Heartbeat {
  private readonly state = new SharedArrayBuffer(4 * BigInt64Array.BYTES_PER_ELEMENT);
  private readonly view = new BigInt64Array(this.state);
  private thread: Worker | undefined;

  constructor(private readonly logger: Logger) {
    Atomics.store(this.view, SLOT.lastStep, -1n);
  }

  /**
   * Beats for control session `sessionId` at `coordinator` from now on. `onLost` is called when
   * the coordinator ends the beats or cannot be reached (its keepalive failed): the control
   * session is then gone too, even if this thread has not noticed yet.
   */
  start(
    coordinator: string,
    security: JobSecurity,
    sessionId: number,
    onLost: (reason: string) => void,
  ): Promise<void> {
    void this.stop();
    if (!existsSync(THREAD_URL)) {
      // Only the built worker (dist) has the thread's .js; a source checkout run by a test
      // runner has none. Say so: a long step will then look like a hang.
      this.logger.warn({ file: THREAD_URL.pathname }, 'heartbeat thread not built; no heartbeats');
      return Promise.resolve();
    }
    const workerData: HeartbeatThreadData = {
      coordinator,
      security,
      sessionId,
      pid: process.pid,
      intervalMs: HEARTBEAT_INTERVAL_MS,
      state: this.state,
    };
    // No inherited Node flags: a preload meant for the process (shared/parent-watch.ts, which
    // exits when stdin ends) must not run in this thread, whose stdin is empty.
    const thread = new Worker(THREAD_URL, { workerData, execArgv: [], argv: [] });
    thread.unref();
    this.thread = thread;
    // Settles once the first beat is on its way (or the thread is gone): starting a thread and
    // loading gRPC into it takes a while on a busy machine, and a worker that reports Ready
    // before its heartbeat runs could be silent for longer than hangMs in its first step.
    return new Promise<void>((resolve) => {
      thread.on('message', (message: { beating?: boolean; lost?: string }) => {
        resolve();
        if (message.lost !== undefined && this.thread === thread) onLost(message.lost);
      });
      thread.on('error', (error) => {
        this.logger.warn({ err: error.message }, 'heartbeat thread failed');
        resolve();
      });
      thread.on('exit', () => resolve());
    });
  }

  /** The replica has finished step `step` (its last finished step). */
  finished(step: number): void {
    Atomics.store(this.view, SLOT.lastStep, BigInt(step));
  }

  /** Runs `work` marked as busy with `kind` (at step `step`), so beats say what takes so long. */
  async busy<T>(kind: BusyKind, step: number, work: () => Promise<T> | T): Promise<T> {
    Atomics.store(this.view, SLOT.busyStep, BigInt(step));
    Atomics.store(this.view, SLOT.busySinceMs, BigInt(Date.now()));
    Atomics.store(this.view, SLOT.busyKind, BigInt(BUSY_KINDS.indexOf(kind)));
    try {
      return await work();
    } finally {
      Atomics.store(this.view, SLOT.busyKind, 0n);
    }
  }

  /** Ends the thread (and its call to the coordinator). */
  async stop(): Promise<void> {
    const thread = this.thread;
    this.thread = undefined;
    if (thread !== undefined) await thread.terminate();
  }
}
