// summary.json of a run that a signal or an error ended: no final metrics and no new model
// (model/ and model-best/, if there, are an earlier attempt's), but how it ended, the error's
// line, and where a --resume would continue (the newest checkpoint). Written so that no earlier
// attempt's summary is left looking like this one's.
import * as os from 'node:os';
import {
  PreemptedError,
  RingtrainError,
  StoppedBySignalError,
  StorageFullError,
  userFacingError,
} from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import type { Logger } from '../../shared/logger.js';
import type { CheckpointStore } from './checkpoint-store.js';
import type { EventLog } from './event-log.js';
import type { RunDirectory } from './run-directory.js';
import type { RunStatus } from './run-status.js';

export interface EndedRun {
  job: Job;
  hash: string;
  plannedSteps: number;
  events: EventLog;
  logger: Logger;
}

/**
 * Best effort: the error that ended the run may keep this from being written too, and must not
 * be hidden by it (a failed write is logged). A full disk or file-size limit (StorageFullError)
 * is not even tried: there is no room, and a part-written summary would be worse than none.
 */
export async function writeEndedSummary(
  runDir: RunDirectory,
  checkpoints: CheckpointStore,
  thrown: unknown,
  run: EndedRun,
): Promise<void> {
  const error = userFacingError(thrown);
  if (error instanceof StorageFullError) return;
  // A stop at a step boundary (also while waiting for replacements) or before training started
  // is preempted; anything else failed.
  const status: RunStatus =
    error instanceof PreemptedError || error instanceof StoppedBySignalError ? 'preempted' : 'failed';
  try {
    const newest = (await checkpoints.list()).at(-1);
    await runDir.writeSummary({
      name: run.job.name,
      status,
      ...(status === 'failed' ? { error: reportLine(error) } : {}),
      exitCode: error instanceof RingtrainError ? error.exitCode : 1,
      jobHash: run.hash,
      runDir: runDir.path,
      epochs: run.job.training.epochs,
      plannedSteps: run.plannedSteps,
      steps: error instanceof PreemptedError ? error.step : null,
      lastCheckpointStep: newest?.step ?? null,
      modelStep: null,
      globalBatchSize: run.job.training.batchSize,
      events: run.events.events,
      coordinatorHost: os.hostname(),
      finishedAt: new Date().toISOString(),
    });
  } catch (writeError) {
    run.logger.warn({ err: writeError }, 'could not write summary.json for the run that ended');
  }
}

/** The one line the CLI reports the failure with. */
function reportLine(error: unknown): string {
  if (error instanceof RingtrainError) return `ringtrain: ${error.message}`;
  const text = error instanceof Error ? error.message : String(error);
  return `ringtrain: internal error: ${text.split('\n')[0] ?? text}`;
}
