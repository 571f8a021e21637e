// Drives synchronous steps across the ring: sends each rank its shard of global batch `step`
// (sendStep) and gathers and checks the reports (settleStep). The training loop may send a step's
// orders while the previous step still runs, so each worker finds its next order queued when it
// finishes. The coordinator is not on the data path: gradients move only between workers.
import { TrainingDivergedError, WorkerFailedError } from '../../shared/errors.js';
import { encodeIndices } from '../../shared/index-codec.js';
import { shardFor } from '../../shared/shard-plan.js';
import type { StepReport__Output } from '../../proto/generated/ringtrain/v1/StepReport.js';
import type { Generation, RingMember } from './membership.js';
import { StepFailedError, type RankOutcome } from './step-failure.js';

export interface StepPlan {
  step: number;
  epoch: number;
  batchInEpoch: number;
  /** Sample indices (into the training split) of the whole global batch. */
  batch: Uint32Array;
  learningRate: number;
  /** Every rank hashes its parameters (the replica consistency check). */
  wantParamHash: boolean;
  /** Rank 0 hashes its parameters, for the record that verifies a rejoining worker's state. */
  recordParamHash: boolean;
}

export interface RankTimings {
  rank: number;
  computeMs: number;
  /** The gradient all-reduce, wait included. */
  allreduceMs: number;
  /** The part of allreduceMs this rank waited for its left neighbour's first frame (skew, not communication). */
  allreduceWaitMs: number;
  optimizerMs: number;
  idleMs: number;
  localCount: number;
}

export interface StepOutcome {
  step: number;
  loss: number;
  globalCount: number;
  skipped: boolean;
  gradNorm: number;
  /** Rank 0's parameter hash after the step ('' when it sent none). */
  paramHash: string;
  wallMs: number;
  ranks: RankTimings[];
}

/** Sends every rank its shard of global batch `plan.step`; returns when the orders were sent. */
export function sendStep(generation: Generation, plan: StepPlan): number {
  const worldSize = generation.members.length;
  for (const member of generation.members) {
    member.session.send({
      step: {
        generation: generation.generation,
        step: plan.step,
        epoch: plan.epoch,
        batchInEpoch: plan.batchInEpoch,
        sampleIndices: encodeIndices(shardFor(plan.batch, member.rank, worldSize)),
        globalBatchSize: plan.batch.length,
        learningRate: plan.learningRate,
        wantParamHash: plan.wantParamHash || (plan.recordParamHash && member.rank === 0),
      },
    });
  }
  return performance.now();
}

/**
 * Gathers and checks every rank's report of step `plan.step` (sent by sendStep). The step's wall
 * time runs from `startedMs`: when its orders went out, or — when they went out early, while the
 * previous step still ran — when the previous step was settled, so wall times never overlap.
 */
export async function settleStep(
  generation: Generation,
  plan: StepPlan,
  timeoutMs: number,
  startedMs: number,
): Promise<StepOutcome> {
  const reports = await gatherReports(generation, plan.step, timeoutMs);
  if (plan.wantParamHash) checkReplicasAgree(reports, plan.step);
  const first = reports[0];
  if (first === undefined) throw new Error('a step needs at least one rank');
  if (first.globalCount !== plan.batch.length) {
    throw new TrainingDivergedError(
      `step ${plan.step}: the all-reduce counted ${first.globalCount} samples, the global batch has ${plan.batch.length}`,
    );
  }
  return {
    step: plan.step,
    loss: first.loss,
    globalCount: first.globalCount,
    skipped: first.skipped,
    gradNorm: first.gradNorm,
    paramHash: first.paramHash,
    wallMs: performance.now() - startedMs,
    ranks: reports.map((r, rank) => ({
      rank,
      computeMs: r.timings?.computeMs ?? 0,
      allreduceMs: r.timings?.allreduceMs ?? 0,
      allreduceWaitMs: r.timings?.allreduceWaitMs ?? 0,
      optimizerMs: r.timings?.optimizerMs ?? 0,
      idleMs: r.timings?.idleMs ?? 0,
      localCount: r.localCount,
    })),
  };
}

/**
 * Waits for every rank's answer to step `step`. The first failure (a dead, evicted or timed-out
 * rank, or an aborted collective) makes the coordinator abort the collective on every other rank,
 * so nobody stays blocked on a dead peer; then each rank's outcome is known and a StepFailedError
 * carries them to the recovery.
 */
async function gatherReports(generation: Generation, step: number, timeoutMs: number): Promise<StepReport__Output[]> {
  let aborted = false;
  const abortOthers = (reason: string): void => {
    if (aborted) return;
    aborted = true;
    for (const m of generation.members) m.session.abortCollective(generation.generation, reason);
  };
  const outcomes = await Promise.all(
    generation.members.map(async (member): Promise<RankOutcome> => {
      try {
        const result = await member.session.waitStep(generation.generation, step, timeoutMs);
        if (result.kind === 'aborted') abortOthers(`rank ${member.rank} aborted step ${step}`);
        return result.kind === 'done'
          ? { member, kind: 'done', completedSteps: step + 1, report: result.report }
          : {
              member,
              kind: 'aborted',
              completedSteps: result.completedSteps,
              reason: result.reason,
              outlierRanks: result.outlierRanks ?? [],
            };
      } catch (error) {
        // A session's own failure already names the worker; keep only why, the outcome names it.
        const reason =
          error instanceof WorkerFailedError ? error.reason : error instanceof Error ? error.message : String(error);
        abortOthers(`rank ${member.rank} failed: ${reason}`);
        return { member, kind: 'failed', completedSteps: member.session.lastStep + 1, reason };
      }
    }),
  );
  if (outcomes.every((o) => o.kind === 'done'))
    return outcomes.map((o) => (o.kind === 'done' ? o.report : unreachable(o.member)));
  throw new StepFailedError(step, outcomes);
}

function unreachable(member: RingMember): never {
  throw new Error(`rank ${member.rank}: outcome changed while being read`);
}

/** Every rank applied the same update to the same parameters, so their hashes must be equal. */
function checkReplicasAgree(reports: StepReport__Output[], step: number): void {
  const reference = reports[0]?.paramHash;
  const differing = reports.map((r, rank) => ({ rank, hash: r.paramHash })).filter((r) => r.hash !== reference);
  if (differing.length > 0) {
    const ranks = differing.map((d) => d.rank).join(', ');
    throw new TrainingDivergedError(
      `replicas diverged at step ${step}: parameters of rank(s) ${ranks} differ from rank 0 (hash ${reference ?? '?'} vs ${differing.map((d) => d.hash).join(', ')})`,
    );
  }
}
