// The seam between the coordinator's loop and one worker: what membership, the step driver, the
// evaluator and recovery may do with a worker. The gRPC WorkerSession implements it for real
// processes; test/helpers/memory-workers.ts implements it in memory, so the loop, regroup and
// failure paths are unit-tested without processes (as RingLink + memory-world do for the ring).
//
// Invariants every implementation keeps:
//  - once the link has failed (`isClosed`), every pending and future wait rejects with a
//    WorkerFailedError, and `send` throws one;
//  - `closed` resolves exactly once, with the reason, when the link fails or is shut down;
//  - a reply that arrives before anyone waits for it is kept until it is awaited (orders ahead);
//  - step answers are keyed by (generation, step), so an old generation's late answer never
//    stands for the same step of a new one.
import type { CoordinatorMessage } from '../../proto/generated/ringtrain/v1/CoordinatorMessage.js';
import type { EvalReport__Output } from '../../proto/generated/ringtrain/v1/EvalReport.js';
import type { Hello__Output } from '../../proto/generated/ringtrain/v1/Hello.js';
import type { Ready__Output } from '../../proto/generated/ringtrain/v1/Ready.js';
import type { StepReport__Output } from '../../proto/generated/ringtrain/v1/StepReport.js';
import type { WorkerIdentity } from '../../shared/errors.js';

/** How a rank's step ended: done (with its report) or aborted (parameters untouched). */
export type StepResult =
  | { kind: 'done'; report: StepReport__Output }
  | { kind: 'aborted'; completedSteps: number; reason: string; outlierRanks?: number[] };

/** What a worker's compute thread was busy with at its last heartbeat (see worker/process/heartbeat.ts). */
export interface BusyState {
  /** "step", "eval" or "export". */
  kind: string;
  step: number;
  /** How long it had been at it, by the worker's clock. */
  busyMs: number;
}

export interface WorkerLink {
  /** Unique per coordinator process (a rejoining worker gets a new id). */
  readonly id: number;
  /** What the worker said when it joined: host, pid, data address, job hash, completed steps. */
  readonly hello: Hello__Output;
  /** Assigned when the worker is admitted to a generation; -1 before. */
  rank: number;
  /** When the worker last sent anything (ms since the epoch). */
  readonly lastHeartbeatMs: number;
  /** Set while the worker's last heartbeat said its compute thread was busy. */
  readonly busy: BusyState | undefined;
  /** The last step the worker reported finishing; -1 before its first. */
  readonly lastStep: number;
  /** Resolves with the reason when the link is gone. */
  readonly closed: Promise<string>;
  readonly isClosed: boolean;
  readonly label: string;
  /** Who this worker is, for messages: rank (once it has one), host, pid and data address. */
  readonly identity: WorkerIdentity;

  /** Sends one order (welcome, reject, step, eval); throws WorkerFailedError once closed. */
  send(message: CoordinatorMessage): void;
  /** The Ready of `generation`: one left over from a formation that failed must not stand for a later one. */
  waitReady(generation: number, timeoutMs: number): Promise<Ready__Output>;
  /** The answer to step `step` of `generation`: its report, or an abort with the steps completed. */
  waitStep(generation: number, step: number, timeoutMs: number): Promise<StepResult>;
  waitEval(requestId: number, timeoutMs: number): Promise<EvalReport__Output>;
  /** Resolves when the worker acknowledged request `requestId` (e.g. a loaded state). */
  waitAck(requestId: number, timeoutMs: number): Promise<void>;
  /** Asks the worker for its training state or its model, as one buffer. */
  fetchBlob(requestId: number, kind: 'state' | 'model', timeoutMs: number): Promise<Buffer>;
  /** Sends a training state for the worker to load; it acknowledges `requestId` once loaded. */
  sendState(requestId: number, state: Uint8Array): void;
  /** Cancels the collective in flight on this worker (a peer was evicted). */
  abortCollective(generation: number, reason: string): void;
  /** Tells the worker to leave, then closes the link. */
  shutdown(reason: string): void;
  /** Drops the link at once (a dead or evicted worker); pending waits reject. */
  abort(reason: string): void;
}
