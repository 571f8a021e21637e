// How long a run is planned to be, and whether its global batch fits its training split: both
// read the job against the loaded dataset, before any process starts and again at the end.
import type { DataShape } from '../../shared/data/data-source.js';
import { JobConfigError } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import { batchesPerEpoch } from '../../shared/shard-plan.js';

/** Steps the job's epochs plan (batches per epoch × epochs): what a run must reach to be complete. */
export function plannedSteps(job: Job, dataset: DataShape): number {
  return batchesPerEpoch(dataset.train.count, job.training.batchSize) * job.training.epochs;
}

/**
 * A global batch larger than the training split is refused, not capped: every step would be the
 * whole split while the job, and a summary, named a batch size the run never used.
 */
export function assertBatchFits(job: Job, dataset: DataShape, source: string): void {
  const { batchSize } = job.training;
  const count = dataset.train.count;
  if (count > 0 && batchSize > count)
    throw new JobConfigError(source, [
      `training.batchSize: ${batchSize} is larger than the training split (${count} samples); use at most ${count} (a full batch), with --batch-size or in the job file`,
    ]);
}
