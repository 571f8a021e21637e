// Regrouping after a failure (or to let new workers in), at a step boundary:
//   1. evict the failed ranks;
//   2. wait (bounded) for replacements while fewer than workers.min remain;
//   3. pick the most advanced consistent state: the survivor that completed the most steps
//      (a rank's parameters change only when its all-reduce completed, so each survivor holds a
//      whole state, and one that finished the failed step holds its correct result; one that
//      dies before sending it is evicted and the next one asked);
//   4. form generation g+1 and broadcast that state to every other rank (a rank that fails
//      meanwhile is dropped and the ring formed again; a run that gives up checkpoints the state
//      first);
//   5. continue with the same global batches and sample order from that step.
import {
  JoinRejectedError,
  NotEnoughWorkersError,
  PreemptedError,
  RingtrainError,
  StoppedBySignalError,
  WorkerFailedError,
} from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { EventLog } from '../run/event-log.js';
import type { Generation, Membership, RingMember } from './membership.js';
import type { StepFailedError } from './step-failure.js';
import type { WorkerLink } from './worker-link.js';

export interface RegroupContext {
  membership: Membership;
  previous: Generation;
  /** Undefined when regrouping only to admit new workers. */
  failure: StepFailedError | undefined;
  /** Steps completed by every rank when no step failed. */
  boundaryStep: number;
  bounds: { min: number; max: number };
  dataHash: string;
  readyTimeoutMs: number;
  /** How long to wait for replacements below `min` (0 = fail at once). */
  replacementMs: number;
  events: EventLog;
  logger: Logger;
  /** SIGTERM/SIGINT: a stop while waiting for replacements checkpoints and ends the run as preempted. */
  abort: AbortSignal;
  /** The run directory's path, for the `--resume` advice of a stopped run. */
  runDirPath: string;
  /** Persists `state` as a checkpoint before giving up (so nothing is lost). */
  saveBeforeFailing: (state: Uint8Array, step: number) => Promise<void>;
  /** Whether the run has a checkpoint to resume from (advice is given only then). */
  hasCheckpoint: () => Promise<boolean>;
}

export interface Regrouped {
  generation: Generation;
  startStep: number;
}

let requestIds = 2_000_000;

export async function regroup(ctx: RegroupContext): Promise<Regrouped> {
  const survivors = survivorsOf(ctx);
  const { source, state, startStep } = await fetchMostAdvanced(ctx, survivors);
  // From here the run holds a consistent state in memory: whatever makes it give up now, that
  // state is checkpointed first (a second worker may die while the ring re-forms).
  let saved = false;
  const saveOnce = async (): Promise<void> => {
    if (!saved) await ctx.saveBeforeFailing(state, startStep);
    saved = true;
  };
  try {
    return await reform(ctx, survivors, source, state, startStep, saveOnce);
  } catch (error) {
    if (!(error instanceof WorkerFailedError) || saved) throw error;
    await saveOnce();
    const note = `; the state at step ${startStep} was checkpointed, continue with --resume`;
    if (error instanceof NotEnoughWorkersError)
      throw new NotEnoughWorkersError(`${error.reason}${note}`, { cause: error });
    throw new WorkerFailedError(error.worker, `${error.reason}${note}`, { cause: error });
  }
}

/**
 * Fetches the state of the survivor that completed the most steps. A survivor that dies before it
 * has sent its state (two workers killed at once: the second one's stream may close only now)
 * is evicted and the next most advanced one is asked.
 */
async function fetchMostAdvanced(
  ctx: RegroupContext,
  survivors: Survivor[],
): Promise<{ source: RingMember; state: Uint8Array; startStep: number }> {
  const byProgress = [...survivors].sort((a, b) => b.completedSteps - a.completedSteps);
  for (const candidate of byProgress) {
    if (candidate.member.session.isClosed) continue;
    try {
      const state = await candidate.member.session.fetchBlob(requestIds++, 'state', ctx.readyTimeoutMs);
      return { source: candidate.member, state, startStep: candidate.completedSteps };
    } catch (error) {
      if (!(error instanceof WorkerFailedError)) throw error;
      evictDuringRegroup(ctx, candidate.member, error.message);
    }
  }
  // Advise --resume only when there is something to resume: a run whose every worker died
  // before its first checkpoint (out of memory at step 0, say) must be fixed and restarted.
  const advice = (await ctx.hasCheckpoint())
    ? 'resume from the last checkpoint with --resume'
    : 'no checkpoint was written, so there is nothing to resume: fix the cause and start the run again';
  const cause = ctx.failure === undefined ? '' : ` (${ctx.failure.message})`;
  throw new NotEnoughWorkersError(`every worker failed${cause}; ${advice}`);
}

/**
 * Forms the next generation from the live survivors and joiners and gives every rank `state`.
 * A member that fails meanwhile is dropped and the ring formed again, while at least
 * workers.min remain (or join); every attempt is a new generation.
 */
async function reform(
  ctx: RegroupContext,
  survivors: Survivor[],
  source: RingMember,
  state: Uint8Array,
  startStep: number,
  saveOnce: () => Promise<void>,
): Promise<Regrouped> {
  for (let attempt = 0; ; attempt++) {
    const live = survivors.map((s) => s.member.session).filter((s) => !s.isClosed);
    const joiners = await gatherJoiners(ctx, live.length, startStep, saveOnce);
    const sessions = [...live, ...joiners].slice(0, ctx.bounds.max);
    try {
      const generation = await ctx.membership.formRing(sessions, ctx.dataHash, ctx.readyTimeoutMs);
      const requestId = requestIds++;
      const targets = generation.members.filter((m) => m.session !== source.session);
      for (const member of targets) member.session.sendState(requestId, state);
      await Promise.all(targets.map((m) => m.session.waitAck(requestId, ctx.readyTimeoutMs)));
      recordRegroup(ctx, generation, joiners, source, startStep);
      return { generation, startStep };
    } catch (error) {
      const retryable = error instanceof WorkerFailedError || error instanceof JoinRejectedError;
      const dropped = sessions.filter((s) => s.isClosed);
      if (!retryable || dropped.length === 0 || attempt >= MAX_REFORM_ATTEMPTS) throw error;
      for (const session of dropped)
        ctx.events.record(
          'failure',
          session.rank,
          startStep,
          `${session.hello.host} pid ${session.hello.pid} failed while the ring re-formed: ${error.message}`,
        );
      ctx.logger.warn(
        { err: error, dropped: dropped.length },
        'a worker failed while the ring re-formed; forming it again',
      );
    }
  }
}

/** Each attempt drops at least one worker, so this bounds only a pathological churn of joiners. */
const MAX_REFORM_ATTEMPTS = 20;

function recordRegroup(
  ctx: RegroupContext,
  generation: Generation,
  joiners: WorkerLink[],
  source: RingMember,
  startStep: number,
): void {
  for (const session of joiners)
    ctx.events.record(
      'join',
      rankOf(generation, session),
      startStep,
      `${session.hello.host} pid ${session.hello.pid} joined generation ${generation.generation}`,
    );
  ctx.events.record(
    'recovery',
    source.rank,
    startStep,
    `generation ${generation.generation}: ${generation.members.length} ranks continue from step ${startStep} with the state of old rank ${source.rank}`,
  );
}

function evictDuringRegroup(ctx: RegroupContext, member: RingMember, reason: string): void {
  ctx.events.record(
    'failure',
    member.rank,
    ctx.failure?.step ?? ctx.boundaryStep,
    `${member.session.hello.host} pid ${member.session.hello.pid} failed before it could send its state: ${reason}`,
  );
  member.session.abort('evicted: failed during a regroup');
}

interface Survivor {
  member: RingMember;
  completedSteps: number;
}

/** Evicts failed ranks and returns the others with the steps each has completed. */
function survivorsOf(ctx: RegroupContext): Survivor[] {
  if (ctx.failure === undefined)
    return ctx.previous.members
      .filter((m) => !m.session.isClosed)
      .map((member) => ({ member, completedSteps: ctx.boundaryStep }));
  const outliers = ctx.failure.outlierRanks;
  for (const outcome of ctx.failure.outcomes) {
    if (outliers.has(outcome.member.rank) && !outcome.member.session.isClosed) {
      const { host, pid } = outcome.member.session.hello;
      const why = outcome.kind === 'aborted' ? outcome.reason : 'its gradient norm was an outlier';
      ctx.events.record('eviction', outcome.member.rank, ctx.failure.step, `${host} pid ${pid}: robust mode: ${why}`);
      outcome.member.session.abort('evicted: its gradient norm was an outlier (robust mode)');
      continue;
    }
    if (outcome.kind !== 'failed' && !outcome.member.session.isClosed) continue;
    ctx.events.record(
      'failure',
      outcome.member.rank,
      ctx.failure.step,
      `${outcome.member.session.hello.host} pid ${outcome.member.session.hello.pid}: ${outcome.kind === 'done' ? 'control stream closed' : outcome.reason}`,
    );
    outcome.member.session.abort('evicted after a failed step');
  }
  return ctx.failure.survivors.map((o) => ({ member: o.member, completedSteps: o.completedSteps }));
}

/** New workers to add: any waiting now, and, below `min`, those that arrive within the grace. */
async function gatherJoiners(
  ctx: RegroupContext,
  survivorCount: number,
  step: number,
  saveOnce: () => Promise<void>,
): Promise<WorkerLink[]> {
  const needed = ctx.bounds.min - survivorCount;
  if (needed > 0) {
    ctx.logger.warn(
      { survivors: survivorCount, min: ctx.bounds.min, waitMs: ctx.replacementMs },
      'below workers.min; waiting for replacements',
    );
    try {
      if (ctx.replacementMs <= 0) throw new RingtrainError('no replacement wait configured');
      await ctx.membership.waitForWorkers(needed, ctx.replacementMs, ctx.abort);
    } catch {
      await saveOnce();
      // A stop signal during the wait is a preemption like any other, not a lack of workers.
      if (ctx.abort.aborted) {
        const reason: unknown = ctx.abort.reason;
        throw new PreemptedError(
          step,
          ctx.runDirPath,
          reason instanceof StoppedBySignalError ? reason.signal : 'SIGTERM',
        );
      }
      throw new NotEnoughWorkersError(
        `${ctx.failure === undefined ? '' : `${ctx.failure.message}; `}only ${survivorCount} workers left, below workers.min = ${ctx.bounds.min}, and no replacement joined within ${Math.round(ctx.replacementMs / 1000)} s; the state at step ${step} was checkpointed, continue with --resume`,
      );
    }
  }
  const room = ctx.bounds.max - survivorCount;
  return room > 0 ? await ctx.membership.waitForWorkers(Math.min(room, ctx.membership.joinerCount), 0, ctx.abort) : [];
}

function rankOf(generation: Generation, session: WorkerLink): number {
  return generation.members.find((m) => m.session === session)?.rank ?? -1;
}
