// Drives one synchronous step across the ring: plans the shards of global batch `step`, sends each
// rank its sample indices, and gathers the reports. The coordinator is not on the data path:
// gradients move only between workers.
import { TrainingDivergedError } from '../shared/errors.js';
import { encodeIndices } from '../shared/index-codec.js';
import { shardFor } from '../shared/shard-plan.js';
import type { StepReport__Output } from '../proto/generated/ringtrain/v1/StepReport.js';
import type { Generation } from './membership.js';

export interface StepPlan {
  step: number;
  epoch: number;
  batchInEpoch: number;
  /** Sample indices (into the training split) of the whole global batch. */
  batch: Uint32Array;
  learningRate: number;
  wantParamHash: boolean;
}

export interface RankTimings {
  rank: number;
  computeMs: number;
  allreduceMs: number;
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
  wallMs: number;
  ranks: RankTimings[];
}

export async function runStep(generation: Generation, plan: StepPlan, timeoutMs: number): Promise<StepOutcome> {
  const startedMs = performance.now();
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
        wantParamHash: plan.wantParamHash,
      },
    });
  }
  const reports = await Promise.all(generation.members.map((m) => m.session.waitStep(plan.step, timeoutMs)));
  if (plan.wantParamHash) checkReplicasAgree(reports, plan.step);
  const first = reports[0];
  if (first === undefined) throw new Error('a step needs at least one rank');
  if (first.globalCount !== plan.batch.length) {
    throw new TrainingDivergedError(`step ${plan.step}: the all-reduce counted ${first.globalCount} samples, the global batch has ${plan.batch.length}`);
  }
  return {
    step: plan.step,
    loss: first.loss,
    globalCount: first.globalCount,
    skipped: first.skipped,
    gradNorm: first.gradNorm,
    wallMs: performance.now() - startedMs,
    ranks: reports.map((r, rank) => ({
      rank,
      computeMs: r.timings?.computeMs ?? 0,
      allreduceMs: r.timings?.allreduceMs ?? 0,
      optimizerMs: r.timings?.optimizerMs ?? 0,
      idleMs: r.timings?.idleMs ?? 0,
      localCount: r.localCount,
    })),
  };
}

/** Every rank applied the same update to the same parameters, so their hashes must be equal. */
function checkReplicasAgree(reports: StepReport__Output[], step: number): void {
  const reference = reports[0]?.paramHash;
  const differing = reports.map((r, rank) => ({ rank, hash: r.paramHash })).filter((r) => r.hash !== reference);
  if (differing.length > 0) {
    const ranks = differing.map((d) => d.rank).join(', ');
    throw new TrainingDivergedError(`replicas diverged at step ${step}: parameters of rank(s) ${ranks} differ from rank 0 (hash ${reference ?? '?'} vs ${differing.map((d) => d.hash).join(', ')})`);
  }
}
