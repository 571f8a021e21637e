// Regrouping after a failure (or to let new workers in), at a step boundary:
//   1. evict the failed ranks;
//   2. wait (bounded) for replacements while fewer than workers.min remain;
//   3. pick the most advanced consistent state: the survivor that completed the most steps
//      (a rank's parameters change only when its all-reduce completed, so each survivor holds a
//      whole state, and one that finished the failed step holds its correct result);
//   4. form generation g+1 and broadcast that state to every other rank;
//   5. continue with the same global batches and sample order from that step.
import { NotEnoughWorkersError, RingtrainError } from '../../shared/errors.js';
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
  abort: AbortSignal;
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
  const source = survivors.reduce<(typeof survivors)[number] | undefined>(
    (best, s) => (best === undefined || s.completedSteps > best.completedSteps ? s : best),
    undefined,
  );
  if (source === undefined) {
    // Advise --resume only when there is something to resume: a run whose every worker died
    // before its first checkpoint (out of memory at step 0, say) must be fixed and restarted.
    const advice = (await ctx.hasCheckpoint())
      ? 'resume from the last checkpoint with --resume'
      : 'no checkpoint was written, so there is nothing to resume: fix the cause and start the run again';
    const cause = ctx.failure === undefined ? '' : ` (${ctx.failure.message})`;
    throw new NotEnoughWorkersError(`every worker failed${cause}; ${advice}`);
  }
  const state = await source.member.session.fetchBlob(requestIds++, 'state', ctx.readyTimeoutMs);
  const startStep = source.completedSteps;
  const joiners = await gatherJoiners(ctx, survivors.length, state, startStep);
  const sessions = [...survivors.map((s) => s.member.session), ...joiners].slice(0, ctx.bounds.max);
  const generation = await ctx.membership.formRing(sessions, ctx.dataHash, ctx.readyTimeoutMs);
  const requestId = requestIds++;
  const targets = generation.members.filter((m) => m.session !== source.member.session);
  for (const member of targets) member.session.sendState(requestId, state);
  await Promise.all(targets.map((m) => m.session.waitAck(requestId, ctx.readyTimeoutMs)));
  for (const session of joiners)
    ctx.events.record(
      'join',
      rankOf(generation, session),
      startStep,
      `${session.hello.host} pid ${session.hello.pid} joined generation ${generation.generation}`,
    );
  ctx.events.record(
    'recovery',
    source.member.rank,
    startStep,
    `generation ${generation.generation}: ${generation.members.length} ranks continue from step ${startStep} with the state of old rank ${source.member.rank}`,
  );
  return { generation, startStep };
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
  for (const outcome of ctx.failure.outcomes) {
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
  state: Uint8Array,
  step: number,
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
      await ctx.saveBeforeFailing(state, step);
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
