// What a failed step leaves behind: per rank, whether it finished the step, aborted it with its
// state untouched, or is gone. Recovery reads this to pick the most advanced consistent state.
import type { StepReport__Output } from '../../proto/generated/ringtrain/v1/StepReport.js';
import { describeWorker, WorkerFailedError } from '../../shared/errors.js';
import type { Generation, RingMember } from './membership.js';

export type RankOutcome =
  | { member: RingMember; kind: 'done'; completedSteps: number; report: StepReport__Output }
  | {
      member: RingMember;
      kind: 'aborted';
      completedSteps: number;
      reason: string;
      /** Robust mode: the ranks this one saw send outlying gradients. */
      outlierRanks?: number[];
    }
  | { member: RingMember; kind: 'failed'; completedSteps: number; reason: string };

export class StepFailedError extends WorkerFailedError {
  constructor(
    readonly step: number,
    readonly outcomes: RankOutcome[],
  ) {
    const failed = outcomes.filter((o) => o.kind === 'failed');
    const first = failed[0] ?? outcomes.find((o) => o.kind === 'aborted');
    const why = failed.length === 1 ? (failed[0]?.reason ?? '') : first?.kind === 'aborted' ? first.reason : '';
    super(first?.member.session.identity ?? -1, `at step ${step}: ${why || 'collective aborted'}`);
    // Several at once: name each, so the message does not blame only the first.
    if (failed.length > 1)
      this.message = `${failed.length} workers failed at step ${step}: ${failed.map((f) => `${describeWorker(f.member.session.identity)}: ${f.reason}`).join('; ')}`;
    else this.message = this.message.replace(' failed: at step', ' failed at step');
  }

  /** Ranks named as gradient outliers by any rank (robust mode): they are evicted. */
  get outlierRanks(): Set<number> {
    return new Set(this.outcomes.flatMap((o) => (o.kind === 'aborted' ? (o.outlierRanks ?? []) : [])));
  }

  /** Ranks whose control stream is still open. */
  get survivors(): Array<Exclude<RankOutcome, { kind: 'failed' }>> {
    return this.outcomes.filter(
      (o): o is Exclude<RankOutcome, { kind: 'failed' }> => o.kind !== 'failed' && !o.member.session.isClosed,
    );
  }
}

/** A failure outside a step (validation, checkpoint) still leaves every survivor at the boundary. */
export function asStepFailure(
  error: unknown,
  generation: Generation,
  boundaryStep: number,
): StepFailedError | undefined {
  if (error instanceof StepFailedError) return error;
  if (!(error instanceof WorkerFailedError) || !generation.members.some((m) => m.session.isClosed)) return undefined;
  return new StepFailedError(
    boundaryStep,
    generation.members.map((member) =>
      member.session.isClosed
        ? { member, kind: 'failed' as const, completedSteps: boundaryStep, reason: error.reason }
        : { member, kind: 'aborted' as const, completedSteps: boundaryStep, reason: 'peer failed outside a step' },
    ),
  );
}
