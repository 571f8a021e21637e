// Which run directory a coordinator writes to: a new one (`--out DIR`, or a timestamped one under
// the runs root) with the job's job.yaml, or, for `--resume DIR` (and `--resume-if-exists` when
// --out DIR holds a run), the existing one, which must be of the same job: only its run-length
// settings may differ (shared/job-identity.ts), and job.yaml then records the new ones.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { JobConfigError } from '../../shared/errors.js';
import { describeChange, RESUME_ADVICE, trajectoryChanges } from '../../shared/job-identity.js';
import { jobToYaml, loadJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';
import { RunDirectory } from './run-directory.js';

export interface OpenRunOptions {
  job: Job;
  /** `--out DIR`. */
  outDir?: string;
  /** `--resume DIR`. */
  resumeDir?: string;
  /** Parent of timestamped run directories and of the `latest` link. */
  runsRoot?: string;
}

export async function openRunDirectory(options: OpenRunOptions): Promise<RunDirectory> {
  if (options.resumeDir !== undefined) {
    const extended = assertSameJob(options.resumeDir, options.job);
    const runDir = await RunDirectory.open(options.resumeDir);
    // More epochs (or another cadence): the next --resume must see them, not the first ones.
    if (extended) await runDir.writeJob(jobToYaml(options.job));
    return runDir;
  }
  const runDir = await RunDirectory.create({
    name: options.job.name,
    ...(options.outDir !== undefined ? { explicitDir: options.outDir } : {}),
    ...(options.runsRoot !== undefined ? { root: options.runsRoot } : {}),
  });
  await runDir.writeJob(jobToYaml(options.job));
  return runDir;
}

/**
 * A resumed run must be of the job it was started with, up to run-length settings: checkpoints
 * would refuse another job anyway (exit 10), but a run that died before its first checkpoint has
 * none to refuse it, and would silently mix two jobs' steps under the first one's job.yaml.
 * Returns true when the run-length settings changed (job.yaml is to be rewritten).
 */
function assertSameJob(runDir: string, job: Job): boolean {
  const file = path.join(runDir, 'job.yaml');
  if (!existsSync(file)) return false; // RunDirectory.open says what is wrong with the directory
  const recorded = loadJob(file);
  const changes = trajectoryChanges(recorded, job);
  if (changes.length > 0)
    throw new JobConfigError(file, [...changes.map((change) => describeChange(change, recorded)), RESUME_ADVICE]);
  return jobToYaml(recorded) !== jobToYaml(job);
}
