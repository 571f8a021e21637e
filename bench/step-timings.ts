// Figures from a run's metrics.jsonl: the coordinator's per-step wall time and sample count,
// and each rank's split of its step into compute / all-reduce / optimizer / idle (idle is the
// time between a rank's last work — its report, an evaluation, a state export — and the start of
// its next step: with the next order sent ahead, mostly receiving that order). The all-reduce time includes its wait for peers (allreduceWaitMs: until the
// left neighbour's first frame arrived, i.e. skew); the rest of it is communication.
import type { RankTimings } from '../coordinator/loop/step-driver.js';
import { mean } from './units.js';

/** A rank's mean step split over the measured steps (the per-step RankTimings, averaged). */
export type RankSplit = Omit<RankTimings, 'localCount'> & {
  /** (all-reduce + optimizer + idle) / the sum of all four. */
  nonComputeFraction: number;
};

export interface StepFigures {
  steps: number;
  samples: number;
  wallSeconds: number;
  samplesPerSecond: number;
  meanStepMs: number;
  ranks: RankSplit[];
  /** Mean over ranks of RankSplit.nonComputeFraction. */
  nonComputeFraction: number;
  finalLoss: number;
  /** Every measured step had a report from every rank and a finite loss. */
  complete: boolean;
}

interface StepRecord {
  step: number;
  loss: number;
  samples: number;
  wallMs: number;
  ranks: Array<{
    rank: number;
    computeMs: number;
    allreduceMs: number;
    /** Absent in runs written before it was recorded. */
    allreduceWaitMs?: number;
    optimizerMs: number;
    idleMs: number;
  }>;
}

/** Figures over the step records after the first `warmupSteps`. */
export function stepFigures(
  records: ReadonlyArray<Record<string, unknown>>,
  warmupSteps: number,
  worldSize: number,
): StepFigures {
  const steps = records
    .filter((r) => r['type'] === 'step')
    .map((r) => r as unknown as StepRecord)
    .filter((r) => r.step >= warmupSteps);
  const samples = steps.reduce((sum, s) => sum + s.samples, 0);
  const wallSeconds = steps.reduce((sum, s) => sum + s.wallMs, 0) / 1000;
  const ranks = Array.from({ length: worldSize }, (_, rank) => rankSplit(rank, steps));
  return {
    steps: steps.length,
    samples,
    wallSeconds,
    samplesPerSecond: wallSeconds > 0 ? samples / wallSeconds : Number.NaN,
    meanStepMs: steps.length > 0 ? (wallSeconds * 1000) / steps.length : Number.NaN,
    ranks,
    nonComputeFraction: mean(ranks.map((r) => r.nonComputeFraction)),
    finalLoss: steps.at(-1)?.loss ?? Number.NaN,
    complete: steps.length > 0 && steps.every((s) => Number.isFinite(s.loss) && s.ranks.length === worldSize),
  };
}

function rankSplit(rank: number, steps: readonly StepRecord[]): RankSplit {
  const own = steps.flatMap((s) => s.ranks.filter((r) => r.rank === rank));
  const computeMs = mean(own.map((r) => r.computeMs));
  const allreduceMs = mean(own.map((r) => r.allreduceMs));
  const allreduceWaitMs = mean(own.map((r) => r.allreduceWaitMs ?? 0));
  const optimizerMs = mean(own.map((r) => r.optimizerMs));
  const idleMs = mean(own.map((r) => r.idleMs));
  const total = computeMs + allreduceMs + optimizerMs + idleMs;
  return {
    rank,
    computeMs,
    allreduceMs,
    allreduceWaitMs,
    optimizerMs,
    idleMs,
    nonComputeFraction: (total - computeMs) / total,
  };
}
