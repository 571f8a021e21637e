// How a run ended, as summary.json's `status` and the CLI's last line say it. One list, so that
// a new way to end (a callback's stop, say) is one more entry here and one more case below.

export const RUN_STATUSES = [
  'completed',
  'stopped-at-max-steps',
  'early-stopped',
  'stopped-by-callback',
  'preempted',
  'failed',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export interface RunEnd {
  /** Steps done when the run ended (the cursor of its last state). */
  finalStep: number;
  /** Steps the job's epochs plan: batches per epoch × training.epochs. */
  plannedSteps: number;
  stoppedEarly: boolean;
  /** A callback's stop() ended it (library train()). */
  stoppedByCallback?: boolean;
  preempted: boolean;
}

/**
 * The status of a run that ended without an error. A run short of its planned steps for no other
 * reason was cut by a step limit (`--max-steps` or training.maxSteps); a resumed run that is at or
 * past its planned steps (epochs lowered on resume) is complete.
 */
export function statusOf(end: RunEnd): RunStatus {
  if (end.preempted) return 'preempted';
  if (end.stoppedEarly) return 'early-stopped';
  if (end.stoppedByCallback === true) return 'stopped-by-callback';
  if (end.finalStep < end.plannedSteps) return 'stopped-at-max-steps';
  return 'completed';
}

export interface FinalLine {
  status: RunStatus;
  finalStep: number;
  plannedSteps: number;
  runDir: string;
  /** Step the exported model/ holds. */
  modelStep: number;
  /** Step of model-best/, when one was exported beside model/. */
  bestModelStep: number | undefined;
}

/** The last line of a run's output: how it ended and which step model/ holds. */
export function finalLine(f: FinalLine): string {
  const best = f.bestModelStep === undefined ? '' : `, model-best/ step ${f.bestModelStep}`;
  const models = `model/ is step ${f.modelStep}${best}`;
  const where = `step ${f.finalStep} of ${f.plannedSteps}`;
  switch (f.status) {
    case 'stopped-at-max-steps':
      return `ringtrain: stopped-at-max-steps at ${where}; ${models}; continue with: ringtrain train --resume ${f.runDir}`;
    case 'stopped-by-callback':
      return `ringtrain: stopped-by-callback at ${where}; ${models}; continue with: ringtrain train --resume ${f.runDir}`;
    case 'early-stopped':
      return `ringtrain: early-stopped at ${where}; ${models}; run directory ${f.runDir}`;
    default:
      return `ringtrain: ${f.status} at ${where}; ${models}; run directory ${f.runDir}`;
  }
}
