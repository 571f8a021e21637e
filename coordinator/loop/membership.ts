// Who is in the job: collects joining workers, assigns ranks, forms the ring for a generation,
// and checks that every rank built the same model on the same data before any data moves.
import { systemClock, type Clock } from '../../shared/clock.js';
import { JoinRejectedError, NotEnoughWorkersError, RingtrainError } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import type { Logger } from '../../shared/logger.js';
import type { WorkerLink } from './worker-link.js';

export interface RingMember {
  session: WorkerLink;
  rank: number;
  paramCount: number;
  backend: string;
}

export interface Generation {
  generation: number;
  members: RingMember[];
  paramCount: number;
}

export class Membership {
  private readonly waiting: WorkerLink[] = [];
  private wake: (() => void) | undefined;
  private generationCounter = 0;
  /**
   * The current ring's sessions. Only the live ones hold a seat: a member's seat is free the
   * moment its session closes (it died, or was evicted), before any regroup, so its replacement
   * is admitted even when the ring was full (workers.min == workers.max).
   */
  private ring: WorkerLink[] = [];
  /** The backend every rank must run: the job's, or for `auto` what the first ring agreed on. */
  private ringBackend: string | undefined;

  constructor(
    private readonly job: Job,
    private readonly jobHash: string,
    private readonly runId: string,
    private readonly logger: Logger,
    private readonly maxWorkers: number,
    /** Times the bounded waits for workers. */
    private readonly clock: Clock = systemClock,
  ) {}

  /** Called by the control server for every worker that said Hello. */
  offer(session: WorkerLink): void {
    const hello = session.hello;
    if (this.seatsTaken() >= this.maxWorkers) {
      this.reject(session, 'JOB_FULL', `the job already has its maximum of ${this.maxWorkers} workers`);
      return;
    }
    if (hello.jobHash !== '' && hello.jobHash !== this.jobHash) {
      this.reject(
        session,
        'JOB_HASH_MISMATCH',
        // Never the coordinator's hash: a rogue could present it to pass for a member of the job.
        `this worker's job file differs from the coordinator's (their job hashes differ); start both with the same job file`,
      );
      return;
    }
    this.logger.info({ host: hello.host, workerPid: hello.pid, gpu: hello.gpuIndex }, 'worker joined');
    this.waiting.push(session);
    void session.closed.then(() => {
      const i = this.waiting.indexOf(session);
      if (i >= 0) this.waiting.splice(i, 1);
    });
    this.wake?.();
  }

  /** Joined workers not yet in a ring (new or replacement workers). */
  get joinerCount(): number {
    return this.live().length;
  }

  /** Waits (bounded) until `count` workers are waiting to join; returns them (not removed yet). */
  async waitForWorkers(count: number, timeoutMs: number, abort: AbortSignal): Promise<WorkerLink[]> {
    const deadline = this.clock.now() + timeoutMs;
    while (this.live().length < count) {
      if (abort.aborted) throw new RingtrainError('stopped while waiting for workers');
      const left = deadline - this.clock.now();
      if (left <= 0) {
        throw new NotEnoughWorkersError(
          `only ${this.live().length} of ${count} workers joined within ${Math.round(timeoutMs / 1000)} s`,
        );
      }
      // Woken by a joiner, a stop signal, or at the latest after 500 ms (to re-check the deadline).
      await new Promise<void>((resolve) => {
        const done = (): void => {
          cancel();
          abort.removeEventListener('abort', done);
          resolve();
        };
        const cancel = this.clock.after(Math.min(left, 500), done);
        this.wake = done;
        abort.addEventListener('abort', done, { once: true });
      });
    }
    return this.live().slice(0, count);
  }

  /**
   * Forms generation g+1 from `sessions`: ranks follow rank hints where they are distinct and in
   * range, else arrival order; each rank learns its neighbours; then all must report Ready with
   * equal parameter counts and the coordinator's data hash.
   */
  async formRing(sessions: WorkerLink[], dataHash: string, readyTimeoutMs: number): Promise<Generation> {
    // A restarted coordinator continues above any generation its rejoining workers knew, so
    // their ring servers never see a generation number go back.
    this.generationCounter = Math.max(this.generationCounter, ...sessions.map((s) => s.hello.generation));
    const generation = ++this.generationCounter;
    for (const session of sessions) {
      const i = this.waiting.indexOf(session);
      if (i >= 0) this.waiting.splice(i, 1);
    }
    this.ring = [...sessions];
    const ordered = generation === 1 ? orderByHints(sessions) : sessions;
    const worldSize = ordered.length;
    const jobJson = JSON.stringify(this.job);
    ordered.forEach((session, rank) => {
      session.rank = rank;
      const left = ordered[(rank - 1 + worldSize) % worldSize];
      const right = ordered[(rank + 1) % worldSize];
      session.send({
        welcome: {
          rank,
          worldSize,
          generation,
          jobJson,
          jobHash: this.jobHash,
          leftAddress: left?.hello.dataAddress ?? '',
          rightAddress: right?.hello.dataAddress ?? '',
          runId: this.runId,
          sessionId: session.id,
        },
      });
    });
    const readies = await Promise.all(ordered.map((s) => s.waitReady(generation, readyTimeoutMs)));
    const members = ordered.map((session, rank) => ({
      session,
      rank,
      paramCount: readies[rank]?.paramCount ?? 0,
      backend: readies[rank]?.backend ?? '',
    }));
    this.checkBackends(members);
    checkAgreement(
      members,
      readies.map((r) => r.dataHash),
      dataHash,
    );
    this.logger.info({ generation, worldSize, params: members[0]?.paramCount }, 'ring formed');
    return { generation, members, paramCount: members[0]?.paramCount ?? 0 };
  }

  /** True when the worker process `pid` holds a live session (in the ring or waiting). */
  hasLiveSession(pid: number): boolean {
    return [...this.ring, ...this.waiting].some((s) => s.hello.pid === pid && !s.isClosed);
  }

  /** Tells every worker this membership holds (ring and waiting) to leave. */
  shutdownAll(reason: string): void {
    for (const session of [...this.ring, ...this.waiting]) session.shutdown(reason);
  }

  private live(): WorkerLink[] {
    return this.waiting.filter((s) => !s.isClosed);
  }

  private seatsTaken(): number {
    return this.ring.filter((s) => !s.isClosed).length + this.live().length;
  }

  /**
   * Every rank must run the backend the job resolved to: the job's own choice, or for `auto` the
   * best one the first ring's ranks reported (a rank with a lesser one fell back, e.g. could not
   * start wasm). A mixed ring trains, but not to the same result. A mismatched worker is refused
   * (it exits 6), and so is this formation.
   */
  private checkBackends(members: RingMember[]): void {
    this.ringBackend ??= this.job.backend !== 'auto' ? this.job.backend : bestBackend(members.map((m) => m.backend));
    const expected = this.ringBackend;
    const odd = members.filter((m) => m.backend !== expected);
    if (odd.length === 0) return;
    const messages = odd.map(
      (m) =>
        `worker ${m.session.hello.host} pid ${m.session.hello.pid} (rank ${m.rank}) runs the ${m.backend || 'unknown'} backend, but the job runs ${expected}${this.job.backend === 'auto' ? ' (backend: auto resolved to it on the other ranks)' : ''}; every rank must run the same backend: make ${expected} loadable on that worker, or set backend: ${m.backend || 'cpu'} in the job`,
    );
    odd.forEach((m, i) => this.reject(m.session, 'BACKEND_MISMATCH', messages[i] ?? ''));
    throw new JoinRejectedError('BACKEND_MISMATCH', messages.join('; '));
  }

  private reject(session: WorkerLink, code: string, message: string): void {
    this.logger.warn({ host: session.hello.host, workerPid: session.hello.pid, code }, message);
    session.send({ reject: { code, message } });
    session.shutdown(message);
  }
}

/** Native TensorFlow beats WebAssembly beats pure JS: `auto` tries them in that order. */
function bestBackend(backends: string[]): string {
  const order = ['tensorflow', 'wasm', 'cpu'];
  const known = backends.filter((b) => order.includes(b)).sort((a, b) => order.indexOf(a) - order.indexOf(b));
  return known[0] ?? backends[0] ?? '';
}

function orderByHints(sessions: WorkerLink[]): WorkerLink[] {
  const hints = sessions.map((s) => s.hello.rankHint);
  const usable = hints.every((h) => h >= 0 && h < sessions.length) && new Set(hints).size === sessions.length;
  return usable ? [...sessions].sort((a, b) => a.hello.rankHint - b.hello.rankHint) : [...sessions];
}

/** Lengths and data are checked across ranks before any data moves. */
function checkAgreement(members: RingMember[], dataHashes: string[], expectedDataHash: string): void {
  const first = members[0];
  if (first === undefined) return;
  for (const member of members) {
    if (member.paramCount !== first.paramCount) {
      throw new JoinRejectedError(
        'PARAM_MISMATCH',
        `rank ${member.rank} built ${member.paramCount} parameters but rank 0 built ${first.paramCount}`,
      );
    }
    const hash = dataHashes[member.rank];
    if (hash !== expectedDataHash) {
      throw new JoinRejectedError(
        'DATA_MISMATCH',
        `rank ${member.rank} (${member.session.hello.host}) loaded data with hash ${hash ?? '?'}, the coordinator has ${expectedDataHash}; every host needs the same data files`,
      );
    }
  }
}
