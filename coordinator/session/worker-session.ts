// The coordinator's end of one worker's control stream: sends orders, matches replies to the
// code awaiting them, and notices at once when the stream breaks. The gRPC implementation of
// the loop's WorkerLink.
import type * as grpc from '@grpc/grpc-js';
import type { CoordinatorMessage } from '../../proto/generated/ringtrain/v1/CoordinatorMessage.js';
import type { EvalReport__Output } from '../../proto/generated/ringtrain/v1/EvalReport.js';
import type { Heartbeat__Output } from '../../proto/generated/ringtrain/v1/Heartbeat.js';
import type { Hello__Output } from '../../proto/generated/ringtrain/v1/Hello.js';
import type { Ready__Output } from '../../proto/generated/ringtrain/v1/Ready.js';
import type { StepReport__Output } from '../../proto/generated/ringtrain/v1/StepReport.js';
import type { WorkerMessage__Output } from '../../proto/generated/ringtrain/v1/WorkerMessage.js';
import { WorkerFailedError, type WorkerIdentity } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { BusyState, StepResult, WorkerLink } from '../loop/worker-link.js';
import { Mailbox } from './mailbox.js';
import type { BlobChunk__Output } from '../../proto/generated/ringtrain/v1/BlobChunk.js';
import { BLOB_CHUNK_BYTES, capText, MAX_REASON_CHARS, MAX_TOKEN_CHARS } from '../../shared/control-limits.js';

export type { BusyState } from '../loop/worker-link.js';

export type SessionStream = grpc.ServerDuplexStream<WorkerMessage__Output, CoordinatorMessage>;

type Reply =
  | { kind: 'ready'; ready: Ready__Output }
  | { kind: 'step'; report: StepReport__Output }
  | { kind: 'eval'; report: EvalReport__Output }
  | { kind: 'blob'; data: Buffer }
  | { kind: 'blob-refused'; reason: string }
  | { kind: 'ack' }
  | { kind: 'aborted'; step: number; completedSteps: number; reason: string; outlierRanks: number[] };

export { BLOB_CHUNK_BYTES } from '../../shared/control-limits.js';

/**
 * The largest state or model a worker may send (4 GiB: far above any model this trainer runs on
 * wasm, whose memory is 4 GiB); a fetch may ask for less.
 */
const MAX_BLOB_BYTES = 4 * 1024 * 1024 * 1024;

export class WorkerSession implements WorkerLink {
  /** Assigned when the worker is admitted; -1 before. */
  rank = -1;
  /** When anything (a control message or a heartbeat) last came from this worker. */
  lastHeartbeatMs = Date.now();
  lastStep = -1;
  /** Set while the worker's last heartbeat said its compute thread was busy. */
  busy: BusyState | undefined;
  private readonly replies = new Mailbox<Reply>();
  /**
   * Blob transfers this session asked for and is receiving. Chunks of any other request are
   * dropped: a worker cannot make the coordinator hold state it did not ask for. Each entry goes
   * when its fetch ends (done, failed, timed out or the session closed).
   */
  private readonly blobs = new Map<number, { parts: Buffer[]; bytes: number; maxBytes: number }>();
  /** Chunks dropped because nobody asked for them (counted, logged once). */
  unsolicitedChunks = 0;
  private closeReason: string | undefined;
  private readonly closedPromise: Promise<string>;
  /** Marks the session closed (once): fails every pending and future wait, resolves `closed`. */
  private readonly markClosed: (reason: string) => void;

  constructor(
    readonly id: number,
    readonly hello: Hello__Output,
    private readonly stream: SessionStream,
    private readonly logger: Logger,
  ) {
    let resolveClosed: (reason: string) => void = () => undefined;
    this.closedPromise = new Promise((resolve) => (resolveClosed = resolve));
    const close = (reason: string): void => {
      if (this.closeReason !== undefined) return;
      this.closeReason = reason;
      this.replies.fail(new WorkerFailedError(this.identity, `${reason}${this.progress}`));
      this.blobs.clear();
      resolveClosed(reason);
    };
    this.markClosed = close;
    stream.on('data', (message: WorkerMessage__Output) => this.onMessage(message, close));
    stream.on('end', () => close('control stream ended'));
    stream.on('error', (error: Error) => close(`control stream error: ${error.message}`));
    stream.on('cancelled', () => close('control stream cancelled'));
    stream.on('close', () => close('control stream closed'));
  }

  /** Resolves with the reason when the stream is gone. */
  get closed(): Promise<string> {
    return this.closedPromise;
  }

  get isClosed(): boolean {
    return this.closeReason !== undefined;
  }

  /** Who this worker is, for messages: rank (once it has one), host, pid and data address. */
  get identity(): WorkerIdentity {
    const { host, pid, dataAddress } = this.hello;
    return { rank: this.rank, host, pid, dataAddress };
  }

  /** " (last finished step N)" once it has finished one, for failure messages. */
  private get progress(): string {
    return this.lastStep >= 0 ? ` (last finished step ${this.lastStep})` : '';
  }

  get label(): string {
    return `rank ${this.rank} (${this.hello.host} pid ${this.hello.pid})`;
  }

  send(message: CoordinatorMessage): void {
    if (this.closeReason !== undefined) throw new WorkerFailedError(this.identity, this.closeReason);
    this.stream.write(message);
  }

  /** The Ready of `generation`: one left over from a formation that failed must not stand for a later one. */
  waitReady(generation: number, timeoutMs: number): Promise<Ready__Output> {
    return this.waitFor(`ready:${generation}`, timeoutMs, 'to load its data and model').then((r) =>
      r.kind === 'ready' ? r.ready : unexpected(r),
    );
  }

  /**
   * The answer to step `step` of `generation`. Keyed by both: a rank may still answer an order of
   * a generation that has since been replaced (one sent ahead before a failure), and that answer
   * must not stand for the same step number in the new generation.
   */
  waitStep(generation: number, step: number, timeoutMs: number): Promise<StepResult> {
    return this.waitFor(stepKey(generation, step), timeoutMs, `to finish step ${step}`).then((r): StepResult => {
      if (r.kind === 'step') return { kind: 'done', report: r.report };
      if (r.kind === 'aborted')
        return { kind: 'aborted', completedSteps: r.completedSteps, reason: r.reason, outlierRanks: r.outlierRanks };
      return unexpected(r);
    });
  }

  waitEval(requestId: number, timeoutMs: number): Promise<EvalReport__Output> {
    return this.waitFor(`eval:${requestId}`, timeoutMs, 'to evaluate').then((r) =>
      r.kind === 'eval' ? r.report : unexpected(r),
    );
  }

  /** Resolves when the worker acknowledged request `requestId` (e.g. a loaded state). */
  async waitAck(requestId: number, timeoutMs: number): Promise<void> {
    await this.waitFor(`ack:${requestId}`, timeoutMs, `to acknowledge request ${requestId}`);
  }

  /**
   * Asks the worker for a binary object ("state" or "model") and reassembles its chunks: in
   * order, at most `maxBytes` in all, within `timeoutMs`.
   */
  async fetchBlob(
    requestId: number,
    kind: 'state' | 'model',
    timeoutMs: number,
    maxBytes = MAX_BLOB_BYTES,
  ): Promise<Buffer> {
    this.blobs.set(requestId, { parts: [], bytes: 0, maxBytes });
    try {
      this.send({ blobRequest: { requestId, kind } });
      const reply = await this.waitFor(`blob:${requestId}`, timeoutMs, `to send its ${kind}`);
      if (reply.kind === 'blob-refused') throw new WorkerFailedError(this.identity, reply.reason);
      return reply.kind === 'blob' ? reply.data : unexpected(reply);
    } finally {
      this.blobs.delete(requestId);
    }
  }

  /** Bytes of blob transfers in progress (what the session holds for them). */
  get pendingBlobBytes(): number {
    let bytes = 0;
    for (const blob of this.blobs.values()) bytes += blob.bytes;
    return bytes;
  }

  /** Sends a training state to the worker in chunks (the worker loads it on the last one). */
  sendState(requestId: number, state: Uint8Array): void {
    // The training state goes only to a worker admitted to the current generation.
    if (this.rank < 0) throw new WorkerFailedError(this.identity, 'holds no rank: it is not sent the training state');
    const total = state.byteLength;
    for (let offset = 0; offset < total || offset === 0; offset += BLOB_CHUNK_BYTES) {
      const end = Math.min(total, offset + BLOB_CHUNK_BYTES);
      this.send({
        loadState: {
          requestId,
          offset,
          totalBytes: total,
          data: Buffer.from(state.subarray(offset, end)),
          last: end >= total,
        },
      });
      if (end >= total) break;
    }
  }

  /** Cancels the collective in flight on this worker (a peer was evicted). */
  abortCollective(generation: number, reason: string): void {
    if (this.closeReason === undefined) this.stream.write({ abort: { generation, reason } });
  }

  /** Ends the stream after telling the worker to leave; the session counts as closed from now. */
  shutdown(reason: string): void {
    if (this.closeReason !== undefined) return;
    try {
      this.stream.write({ shutdown: { reason } });
      this.stream.end();
    } catch (error) {
      this.logger.debug({ err: error }, 'shutdown write failed');
    }
    this.markClosed(`told to leave: ${reason}`);
  }

  private endStream(): void {
    try {
      this.stream.end();
    } catch (error) {
      this.logger.debug({ err: error }, 'ending the stream failed');
    }
  }

  /**
   * Forcibly drops the stream (a dead or evicted worker). The session counts as closed at once,
   * so its seat is free before the stream's own close event arrives.
   */
  abort(reason: string): void {
    this.markClosed(reason);
    this.stream.destroy(new Error(reason));
  }

  /** A beat from the worker's heartbeat thread: it is alive, whatever its compute thread is doing. */
  noteHeartbeat(beat: Heartbeat__Output): void {
    this.lastHeartbeatMs = Date.now();
    this.lastStep = Math.max(this.lastStep, beat.lastStep);
    this.busy =
      beat.busyWith === ''
        ? undefined
        : { kind: capText(beat.busyWith, MAX_TOKEN_CHARS), step: beat.busyStep, busyMs: beat.busyMs };
  }

  private waitFor(key: string, timeoutMs: number, doing: string): Promise<Reply> {
    return this.replies.wait(
      key,
      timeoutMs,
      () =>
        new WorkerFailedError(this.identity, `timed out after ${timeoutMs} ms waiting for it ${doing}${this.progress}`),
    );
  }

  private onMessage(message: WorkerMessage__Output, close: (reason: string) => void): void {
    this.lastHeartbeatMs = Date.now();
    switch (message.kind) {
      case 'ready':
        if (message.ready)
          this.replies.deliver(`ready:${message.ready.generation}`, { kind: 'ready', ready: message.ready });
        break;
      case 'stepReport':
        if (message.stepReport) {
          this.lastStep = message.stepReport.step;
          const { generation, step } = message.stepReport;
          this.replies.deliver(stepKey(generation, step), { kind: 'step', report: message.stepReport });
        }
        break;
      case 'evalReport':
        if (message.evalReport)
          this.replies.deliver(`eval:${message.evalReport.requestId}`, { kind: 'eval', report: message.evalReport });
        break;
      case 'blobChunk':
        if (message.blobChunk) this.onBlobChunk(message.blobChunk);
        break;
      case 'stepAborted':
        if (message.stepAborted) {
          const a = message.stepAborted;
          this.replies.deliver(stepKey(a.generation, a.step), {
            kind: 'aborted',
            step: a.step,
            completedSteps: a.completedSteps,
            reason: capText(a.reason, MAX_REASON_CHARS),
            outlierRanks: a.outlierRanks,
          });
        }
        break;
      case 'ack':
        if (message.ack) this.replies.deliver(`ack:${message.ack.requestId}`, { kind: 'ack' });
        break;
      case 'heartbeat':
        if (message.heartbeat) this.noteHeartbeat(message.heartbeat);
        break;
      case 'failure':
        // The worker's own reason, sent just before it exits: the stream's end that follows says
        // less. Ending our side tells the worker its message arrived, so it can exit now.
        close(capText(message.failure?.message ?? 'it reported a failure', MAX_REASON_CHARS));
        this.endStream();
        break;
      default:
        this.logger.warn({ kind: message.kind, rank: this.rank }, 'ignoring unexpected control message');
    }
  }

  private onBlobChunk(chunk: BlobChunk__Output): void {
    const blob = this.blobs.get(chunk.requestId);
    if (blob === undefined) {
      if (this.unsolicitedChunks++ === 0)
        this.logger.warn({ peer: this.label, requestId: chunk.requestId }, 'dropping blob chunks nobody asked for');
      return;
    }
    const refuse = (reason: string): void => {
      this.blobs.delete(chunk.requestId);
      this.replies.deliver(`blob:${chunk.requestId}`, { kind: 'blob-refused', reason });
    };
    if (chunk.offset !== blob.bytes)
      return refuse(`sent a blob chunk at offset ${chunk.offset}, expected ${blob.bytes}`);
    if (blob.bytes + chunk.data.length > blob.maxBytes)
      return refuse(`sent a blob larger than the ${blob.maxBytes} bytes allowed`);
    blob.parts.push(chunk.data);
    blob.bytes += chunk.data.length;
    if (!chunk.last) return;
    this.blobs.delete(chunk.requestId);
    this.replies.deliver(`blob:${chunk.requestId}`, { kind: 'blob', data: Buffer.concat(blob.parts) });
  }
}

function stepKey(generation: number, step: number): string {
  return `step:${generation}:${step}`;
}

function unexpected(reply: Reply): never {
  throw new Error(`unexpected reply of kind ${reply.kind}`);
}
