// The learning rate of every step: the job's schedule (shared/lr-schedule.ts), overridden from a
// given step on by callbacks' setLearningRate(lr). The overrides are run state: they are kept in
// <run>/learning-rates.json, so a resumed run follows the same learning rates.
//
// Invariants:
// - `changes` is sorted by fromStep, and a step's rate is that of the last change with
//   fromStep <= step, else the schedule's.
// - A change takes effect from `nextUnsentStep`, the first step whose order has not gone out
//   (the loop sends some orders one step ahead), so no order already sent is contradicted.
// - A change decided at boundary b has fromStep b or b + 1; a checkpoint at step K is taken only
//   where nothing is ahead, so the changes with fromStep <= K are exactly those decided up to it.
//   Resuming from K keeps those and drops the rest (the callbacks decide again from there).
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { isNotFound, rethrowStorageFull } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import { learningRateAt } from '../../shared/lr-schedule.js';
import { batchesPerEpoch } from '../../shared/shard-plan.js';

export interface LearningRateChange {
  fromStep: number;
  learningRate: number;
}

/** The run directory's record of setLearningRate decisions. */
export const LEARNING_RATES_FILE = 'learning-rates.json';

export class LearningRates {
  private changes: LearningRateChange[] = [];
  private dirty = false;
  /** The first step whose order has not gone out. */
  private nextUnsentStep = 0;

  constructor(
    /** The job's schedule: the learning rate of `step` without overrides. */
    private readonly scheduled: (step: number) => number,
    /** Where the changes are persisted; undefined keeps them in memory only (unit tests). */
    private readonly file: string | undefined,
  ) {}

  /** The job's schedule, with overrides persisted in `runDir` (in memory only when undefined). */
  static forJob(job: Job, trainCount: number, runDir: string | undefined): LearningRates {
    const batchSize = job.training.batchSize;
    const totalSteps = batchesPerEpoch(trainCount, batchSize) * job.training.epochs;
    return new LearningRates(
      (step) => learningRateAt(step, job.optimizer.learningRate, job.schedule, batchSize, totalSteps),
      runDir === undefined ? undefined : path.join(runDir, LEARNING_RATES_FILE),
    );
  }

  /** The learning rate of `step`. */
  at(step: number): number {
    let rate: number | undefined;
    for (const change of this.changes) if (change.fromStep <= step) rate = change.learningRate;
    return rate ?? this.scheduled(step);
  }

  /** The rate the next order will carry. */
  get current(): number {
    return this.at(this.nextUnsentStep);
  }

  /** The order of `step` is going out: later changes apply from the step after it. */
  sent(step: number): void {
    this.nextUnsentStep = Math.max(this.nextUnsentStep, step + 1);
  }

  /** The loop (re)starts at `step` (a regroup, a resume): its order has not gone out. */
  restartAt(step: number): void {
    this.nextUnsentStep = step;
  }

  /** From the next unsent step on, train at `learningRate` (replacing the schedule). */
  set(learningRate: number): void {
    if (!Number.isFinite(learningRate) || learningRate < 0)
      throw new RangeError(`setLearningRate: the learning rate must be finite and >= 0, got ${learningRate}`);
    if (this.current === learningRate) return;
    const fromStep = this.nextUnsentStep;
    this.changes = [...this.changes.filter((c) => c.fromStep < fromStep), { fromStep, learningRate }];
    this.dirty = true;
  }

  /** The changes so far (for tests and the summary). */
  get history(): readonly LearningRateChange[] {
    return this.changes;
  }

  /** Writes the changes made since the last flush (atomically). */
  async flush(): Promise<void> {
    if (!this.dirty || this.file === undefined) return;
    this.dirty = false;
    const text = `${JSON.stringify({ changes: this.changes }, null, 2)}\n`;
    await writeFileAtomic(this.file, text).catch((error: unknown) => rethrowStorageFull(error, this.file ?? ''));
  }

  /** A resumed run continues at `step`: the changes decided up to it are in force again. */
  async resumeAt(step: number): Promise<void> {
    this.changes = (await readChanges(this.file)).filter((c) => c.fromStep <= step);
    this.restartAt(step);
    this.dirty = true;
    await this.flush();
  }
}

async function readChanges(file: string | undefined): Promise<LearningRateChange[]> {
  if (file === undefined) return [];
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
  const parsed = JSON.parse(text) as { changes?: unknown };
  if (!Array.isArray(parsed.changes)) return [];
  return parsed.changes
    .filter(
      (c): c is LearningRateChange =>
        typeof c === 'object' &&
        c !== null &&
        Number.isInteger((c as LearningRateChange).fromStep) &&
        Number.isFinite((c as LearningRateChange).learningRate),
    )
    .sort((a, b) => a.fromStep - b.fromStep);
}
