// In-memory workers behind the coordinator's WorkerLink, for unit tests of the loop, regroup and
// failure paths without processes (memory-world.ts does the same for the ring). A MemoryCluster
// stands for the ring between them: a step completes on every rank of a generation once every
// rank has contributed its shard, so a missing, dead or hung rank holds the others up exactly as
// on the real ring. Workers compute no tensors; their "parameters" are one integer folded from
// the global batches they applied, so equal trajectories give equal values whatever the world
// size, and a state loaded from the wrong step shows up as a different value.
//
// Scripts make a worker fail, hang or answer late at a chosen order; time is a ManualClock the
// test advances, so every timeout fires on an event the test chose, never by wall time.
import type { CoordinatorMessage } from '../../proto/generated/ringtrain/v1/CoordinatorMessage.js';
import type { EvalReport__Output } from '../../proto/generated/ringtrain/v1/EvalReport.js';
import type { Hello__Output } from '../../proto/generated/ringtrain/v1/Hello.js';
import type { Ready__Output } from '../../proto/generated/ringtrain/v1/Ready.js';
import type { StepOrder } from '../../proto/generated/ringtrain/v1/StepOrder.js';
import type { StepReport__Output } from '../../proto/generated/ringtrain/v1/StepReport.js';
import type { BusyState, StepResult, WorkerLink } from '../../coordinator/loop/worker-link.js';
import { Mailbox } from '../../coordinator/session/mailbox.js';
import { WorkerFailedError, type WorkerIdentity } from '../../shared/errors.js';
import { decodeIndices } from '../../shared/index-codec.js';
import { encodeModelBlob } from '../../shared/model-blob.js';
import type { ManualClock } from './manual-clock.js';
import { MemoryRing } from './memory-ring.js';

/** What a worker holds: the steps it applied and a value folded from their global batches. */
export interface MemoryState {
  step: number;
  value: number;
}

/** Where a script acts: an order of a kind (a step order: of that step number). */
export type Trigger =
  | { on: 'step'; step: number; /** only this generation's order (default: any) */ generation?: number }
  | { on: 'eval' }
  | { on: 'welcome' }
  | { on: 'fetch-state' }
  | { on: 'load-state' };

/**
 * What it does there. fail: the worker dies on receiving the order (its ring breaks for the
 * others). fail-during (steps): it dies inside the step's collective, after `finishers` (ranks)
 * completed the step, so the others are left aborted. fail-after (steps): it completes and reports
 * the step, then dies. hang: it stops answering and heartbeating (SIGSTOP). hold: it answers only
 * when the test calls release() (steps only).
 */
export type Action =
  { do: 'fail' } | { do: 'fail-during'; finishers: number[] } | { do: 'fail-after' } | { do: 'hang' } | { do: 'hold' };

type Reply =
  | { kind: 'ready'; ready: Ready__Output }
  | { kind: 'step'; result: StepResult }
  | { kind: 'eval'; report: EvalReport__Output }
  | { kind: 'blob'; data: Buffer }
  | { kind: 'ack' };

const MODULUS = 2_147_483_647;

/** The value after applying a global batch whose sample indices sum to `sum`. */
export function applyBatch(state: MemoryState, sum: number, count: number): MemoryState {
  return { step: state.step + 1, value: (state.value * 31 + sum * 7 + count + state.step) % MODULUS };
}

export interface ClusterOptions {
  clock: ManualClock;
  dataHash: string;
  /** @default 100 */
  paramCount?: number;
  /** Mean validation/test/train loss a worker reports after `step` steps. @default 1 / (1 + step) */
  evalLoss?: (split: string, step: number) => number;
}

/** The ring shared by the memory workers, and the factory that makes them. */
export class MemoryCluster extends MemoryRing {
  readonly workers: MemoryWorker[] = [];
  readonly clock: ManualClock;
  readonly dataHash: string;
  readonly paramCount: number;
  readonly evalLoss: (split: string, step: number) => number;
  private nextId = 1;

  constructor(options: ClusterOptions) {
    // A rank scripted to die inside a collective lets only its `finishers` complete it.
    super((generation, step) => {
      const dying = this.workers.find((w) => w.generation === generation && w.dyingIn(step) !== undefined);
      const finishers = dying?.dyingIn(step);
      return dying === undefined || finishers === undefined
        ? undefined
        : { finishers, die: () => dying.die(`died during step ${step}`) };
    });
    this.clock = options.clock;
    this.dataHash = options.dataHash;
    this.paramCount = options.paramCount ?? 100;
    this.evalLoss = options.evalLoss ?? ((_split, step) => 1 / (1 + step));
  }

  /** A new worker; `hello` and `state` model one that rejoins with an in-memory state. */
  spawn(options: { hello?: Partial<Hello__Output>; state?: MemoryState } = {}): MemoryWorker {
    const id = this.nextId++;
    const hello: Hello__Output = {
      host: `mem-${id}`,
      dataAddress: `mem-${id}:0`,
      pid: 10_000 + id,
      jobHash: '',
      gpuIndex: -1,
      rankHint: -1,
      version: 'test',
      completedSteps: options.state?.step ?? 0,
      generation: 0,
      ...options.hello,
    };
    const worker = new MemoryWorker(id, hello, this, options.state ?? { step: hello.completedSteps, value: 0 });
    this.workers.push(worker);
    return worker;
  }
}

/** One entry of a worker's log: what it received and what it answered, in order. */
export type LogEntry =
  | { event: 'welcome'; generation: number; rank: number; worldSize: number }
  | { event: 'reject'; code: string }
  | { event: 'order'; generation: number; step: number; order: StepOrder & { indices: Uint32Array } }
  | { event: 'report'; generation: number; step: number; result: StepResult['kind'] }
  | { event: 'eval'; split: string; indices: Uint32Array }
  | { event: 'fetch'; kind: string }
  | { event: 'load-state'; step: number }
  | { event: 'abort-collective'; generation: number }
  | { event: 'died'; reason: string }
  | { event: 'shutdown'; reason: string };

export class MemoryWorker implements WorkerLink {
  rank = -1;
  /** Never busy: a memory worker computes nothing long. */
  readonly busy: BusyState | undefined = undefined;
  lastStep = -1;
  generation = 0;
  worldSize = 0;
  /** Everything this worker received and answered, in order. */
  readonly log: LogEntry[] = [];
  /** Orders for a step its state was not at (a coordinator bug: the state was not restored). */
  readonly inconsistencies: string[] = [];
  readonly closed: Promise<string>;
  private readonly replies: Mailbox<Reply>;
  private readonly scripts: Array<{ trigger: Trigger; action: Action }> = [];
  private readonly held: Array<() => void> = [];
  private readonly brokenGenerations = new Set<number>();
  private queue: Promise<void> = Promise.resolve();
  private closeReason: string | undefined;
  private markClosed: (reason: string) => void = () => undefined;
  private hung = false;

  constructor(
    readonly id: number,
    readonly hello: Hello__Output,
    private readonly cluster: MemoryCluster,
    public state: MemoryState,
  ) {
    this.replies = new Mailbox<Reply>(cluster.clock);
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  /** Scripts `action` at the first order matching `trigger`. */
  when(trigger: Trigger, action: Action): this {
    this.scripts.push({ trigger, action });
    return this;
  }

  /** How many answers a `hold` script holds back now (the step has finished its collective). */
  get holding(): number {
    return this.held.length;
  }

  /** Sends every answer held back by a `hold` script. */
  release(): void {
    for (const deliver of this.held.splice(0)) deliver();
  }

  /** Kills the worker now (SIGKILL): its link closes and its ring breaks. */
  die(reason: string): void {
    if (this.closeReason !== undefined) return;
    this.log.push({ event: 'died', reason });
    this.close(reason);
    this.cluster.breakGeneration(this.generation, `rank ${this.rank} died`);
  }

  /** Finishers of the collective of `step` when scripted to die inside it. */
  dyingIn(step: number): number[] | undefined {
    const script = this.scripts.find((s) => s.trigger.on === 'step' && s.trigger.step === step);
    return script?.action.do === 'fail-during' && !this.isClosed ? script.action.finishers : undefined;
  }

  get isHung(): boolean {
    return this.hung;
  }

  // ------------------------------------------------------------------ WorkerLink

  /**
   * Never silent: the liveness monitor runs on the system clock, which these tests do not drive,
   * so a hang surfaces only through the waits' timeouts on the manual clock (deterministic).
   */
  get lastHeartbeatMs(): number {
    return Number.POSITIVE_INFINITY;
  }

  get isClosed(): boolean {
    return this.closeReason !== undefined;
  }

  get label(): string {
    return `rank ${this.rank} (${this.hello.host} pid ${this.hello.pid})`;
  }

  get identity(): WorkerIdentity {
    const { host, pid, dataAddress } = this.hello;
    return { rank: this.rank, host, pid, dataAddress };
  }

  send(message: CoordinatorMessage): void {
    this.assertOpen();
    if (message.reject) {
      this.log.push({ event: 'reject', code: message.reject.code ?? '' });
      return;
    }
    // Logged on arrival: a step order waits in the queue while the step before it runs.
    if (message.step) {
      const order = message.step;
      const indices = decodeIndices(order.sampleIndices as Uint8Array, 'sampleIndices');
      this.log.push({
        event: 'order',
        generation: order.generation ?? 0,
        step: Number(order.step ?? 0),
        order: { ...order, indices },
      });
    }
    this.enqueue(() => this.handle(message));
  }

  waitReady(generation: number, timeoutMs: number): Promise<Ready__Output> {
    return this.waitFor(`ready:${generation}`, timeoutMs).then((r) => (r.kind === 'ready' ? r.ready : unexpected(r)));
  }

  waitStep(generation: number, step: number, timeoutMs: number): Promise<StepResult> {
    return this.waitFor(`step:${generation}:${step}`, timeoutMs).then((r) =>
      r.kind === 'step' ? r.result : unexpected(r),
    );
  }

  waitEval(requestId: number, timeoutMs: number): Promise<EvalReport__Output> {
    return this.waitFor(`eval:${requestId}`, timeoutMs).then((r) => (r.kind === 'eval' ? r.report : unexpected(r)));
  }

  async waitAck(requestId: number, timeoutMs: number): Promise<void> {
    await this.waitFor(`ack:${requestId}`, timeoutMs);
  }

  async fetchBlob(requestId: number, kind: 'state' | 'model', timeoutMs: number): Promise<Buffer> {
    this.assertOpen();
    this.enqueue(() => {
      this.log.push({ event: 'fetch', kind });
      if (kind === 'state' && this.act({ on: 'fetch-state' }, 'fetch-state')) return;
      const data =
        kind === 'state'
          ? Buffer.from(JSON.stringify(this.state))
          : encodeModelBlob({ modelJson: JSON.stringify({ memoryModel: this.state }), weights: new Uint8Array(4) });
      this.reply(`blob:${requestId}`, { kind: 'blob', data });
    });
    const reply = await this.waitFor(`blob:${requestId}`, timeoutMs);
    return reply.kind === 'blob' ? reply.data : unexpected(reply);
  }

  sendState(requestId: number, state: Uint8Array): void {
    this.assertOpen();
    const loaded = JSON.parse(Buffer.from(state).toString('utf8')) as MemoryState;
    this.enqueue(() => {
      if (this.act({ on: 'load-state' }, 'load-state')) return;
      this.state = loaded;
      this.log.push({ event: 'load-state', step: loaded.step });
      this.reply(`ack:${requestId}`, { kind: 'ack' });
    });
  }

  abortCollective(generation: number, reason: string): void {
    if (this.isClosed || this.isHung) return;
    this.log.push({ event: 'abort-collective', generation });
    this.brokenGenerations.add(generation);
    this.cluster.withdraw(generation, this.rank, reason);
  }

  shutdown(reason: string): void {
    if (this.isClosed) return;
    this.log.push({ event: 'shutdown', reason });
    this.close(reason);
  }

  abort(reason: string): void {
    this.die(`evicted: ${reason}`);
  }

  // ------------------------------------------------------------------ the worker's side

  private async handle(message: CoordinatorMessage): Promise<void> {
    if (message.welcome) {
      const { rank = 0, worldSize = 0, generation = 0 } = message.welcome;
      this.log.push({ event: 'welcome', generation, rank, worldSize });
      if (this.act({ on: 'welcome' }, 'welcome')) return;
      Object.assign(this, { rank, worldSize, generation });
      const ready = {
        generation,
        paramCount: this.cluster.paramCount,
        backend: 'memory',
        dataHash: this.cluster.dataHash,
      };
      this.reply(`ready:${generation}`, { kind: 'ready', ready });
    } else if (message.step) {
      await this.step(message.step);
    } else if (message.eval) {
      this.evaluate(Number(message.eval.requestId ?? 0), message.eval.split ?? '', message.eval.sampleIndices);
    }
  }

  private async step(order: StepOrder): Promise<void> {
    const generation = order.generation ?? 0;
    const step = Number(order.step ?? 0);
    const indices = decodeIndices(order.sampleIndices as Uint8Array, 'sampleIndices');
    const script = this.scriptFor({ on: 'step', step, generation });
    if (script?.do === 'fail' || script?.do === 'hang') return this.perform(script, `step ${step}`);
    const key = `step:${generation}:${step}`;
    if (generation !== this.generation || this.brokenGenerations.has(generation))
      return this.answerStep(key, generation, step, this.aborted(`generation ${generation} is not running here`));
    if (step !== this.state.step)
      this.inconsistencies.push(`rank ${this.rank} at step ${this.state.step} got step ${step}`);
    const outcome = await this.cluster.contribute(generation, step, this.rank, this.worldSize, indices);
    if (this.isClosed) return;
    if (outcome.kind === 'broken') return this.answerStep(key, generation, step, this.aborted(outcome.reason));
    this.state = applyBatch(this.state, outcome.sum, outcome.count);
    const report: StepReport__Output = {
      generation,
      step,
      loss: outcome.sum / outcome.count,
      localCount: indices.length,
      globalCount: outcome.count,
      timings: { computeMs: 1, allreduceMs: 1, optimizerMs: 0, idleMs: 0, allreduceWaitMs: 0 },
      skipped: false,
      paramHash: order.wantParamHash === true ? `v${this.state.value}` : '',
      gradNorm: 1,
    };
    this.answerStep(key, generation, step, { kind: 'done', report }, script?.do === 'hold');
    if (script?.do === 'fail-after') this.die(`died after step ${step}`);
  }

  private aborted(reason: string): StepResult {
    return { kind: 'aborted', completedSteps: this.state.step, reason };
  }

  private answerStep(key: string, generation: number, step: number, result: StepResult, hold = false): void {
    const deliver = (): void => {
      if (this.isClosed) return;
      this.log.push({ event: 'report', generation, step, result: result.kind });
      if (result.kind === 'done') this.lastStep = Math.max(this.lastStep, step);
      this.replies.deliver(key, { kind: 'step', result });
    };
    if (hold) this.held.push(deliver);
    else deliver();
  }

  private evaluate(requestId: number, split: string, bytes: unknown): void {
    const indices = decodeIndices(bytes as Uint8Array, 'sampleIndices');
    this.log.push({ event: 'eval', split, indices });
    if (this.act({ on: 'eval' }, `eval of ${split}`)) return;
    const evens = indices.filter((i) => i % 2 === 0).length;
    const report: EvalReport__Output = {
      requestId,
      count: indices.length,
      lossSum: indices.length * this.cluster.evalLoss(split, this.state.step),
      metricSums: { accuracy: evens },
    };
    this.reply(`eval:${String(requestId)}`, { kind: 'eval', report });
  }

  /** Runs the script at `trigger` if it fails or hangs the worker; true when it did. */
  private act(trigger: Trigger, what: string): boolean {
    const script = this.scriptFor(trigger);
    if (script?.do !== 'fail' && script?.do !== 'hang') return false;
    this.perform(script, what);
    return true;
  }

  private perform(action: Action, what: string): void {
    if (action.do === 'hang') this.hung = true;
    else this.die(`died at ${what}`);
  }

  private scriptFor(trigger: Trigger): Action | undefined {
    const i = this.scripts.findIndex(
      (s) =>
        s.trigger.on === trigger.on &&
        (s.trigger.on !== 'step' ||
          trigger.on !== 'step' ||
          (s.trigger.step === trigger.step &&
            (s.trigger.generation === undefined || s.trigger.generation === trigger.generation))),
    );
    if (i < 0) return undefined;
    const script = this.scripts[i];
    // fail-during is consumed by the cluster when the collective completes.
    if (script?.action.do !== 'fail-during') this.scripts.splice(i, 1);
    return script?.action;
  }

  private reply(key: string, reply: Reply): void {
    if (!this.isClosed) this.replies.deliver(key, reply);
  }

  /** Orders run one at a time in arrival order; a hung or dead worker runs nothing more. */
  private enqueue(work: () => Promise<void> | void): void {
    this.queue = this.queue.then(async () => {
      // Answer on a later turn, as a process on the other end of a stream would.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (!this.isClosed && !this.isHung) await work();
    });
  }

  private waitFor(key: string, timeoutMs: number): Promise<Reply> {
    return this.replies.wait(
      key,
      timeoutMs,
      () => new WorkerFailedError(this.rank, `timed out after ${timeoutMs} ms waiting for ${key} (${this.hello.host})`),
    );
  }

  private assertOpen(): void {
    if (this.closeReason !== undefined) throw new WorkerFailedError(this.rank, this.closeReason);
  }

  private close(reason: string): void {
    if (this.closeReason !== undefined) return;
    this.closeReason = reason;
    this.replies.fail(
      new WorkerFailedError(this.rank, `${reason} (host ${this.hello.host}, last step ${this.lastStep})`),
    );
    this.markClosed(reason);
  }
}

function unexpected(reply: Reply): never {
  throw new Error(`unexpected reply of kind ${reply.kind}`);
}
