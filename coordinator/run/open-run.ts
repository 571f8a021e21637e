// Which run directory a coordinator writes to: a new one (`--out DIR`, or a timestamped one under
// the runs root) with the job's job.yaml, or, for `--resume DIR` (and `--resume-if-exists` when
// --out DIR holds a run), the existing one, which must be of the same job.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { JobConfigError } from '../../shared/errors.js';
import { jobHash, jobToYaml, loadJob } from '../../shared/job.js';
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
    assertSameJob(options.resumeDir, options.job);
    return RunDirectory.open(options.resumeDir);
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
 * A resumed run must be of the job it was started with: checkpoints would refuse another job
 * anyway (exit 10), but a run that died before its first checkpoint has none to refuse it, and
 * would silently mix two jobs' steps under the first one's job.yaml.
 */
function assertSameJob(runDir: string, job: Job): void {
  const file = path.join(runDir, 'job.yaml');
  if (!existsSync(file)) return; // RunDirectory.open says what is wrong with the directory
  const recorded = jobHash(loadJob(file));
  const current = jobHash(job);
  if (recorded !== current)
    throw new JobConfigError(file, [
      `this run is of a different job (hash ${recorded}, this job ${current}); continue it with its own job, or start a new run in another directory`,
    ]);
}
