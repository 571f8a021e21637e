// The job a training benchmark runs: the named file or the default MNIST MLP (on wasm unless
// told otherwise), with the benchmark's overrides, validated like any job.
import { loadJob, type JobOverrides } from '../shared/job.js';
import type { Job } from '../shared/job-schema.js';
import type { WireCodec } from '../worker/collectives/wire-compression.js';

export interface BenchJobOverrides {
  backend?: string;
  compression?: WireCodec;
}

export function loadBenchJob(file: string | undefined, overrides: BenchJobOverrides): Job {
  const jobOverrides: JobOverrides = {};
  const backend = overrides.backend ?? (file === undefined ? 'wasm' : undefined);
  if (backend !== undefined) jobOverrides.backend = backend;
  const job = loadJob(file, jobOverrides);
  if (overrides.compression !== undefined) job.allreduce.compression = overrides.compression;
  return job;
}

/** Bench runs measure steady-state steps: no periodic checkpoints, validations or early stopping in between. */
export function withoutInterruptions(job: Job, workers: number): Job {
  const copy = structuredClone(job);
  copy.workers = workers;
  copy.checkpoint = { ...copy.checkpoint, everySteps: 0, atEpochEnd: false };
  copy.validation = { everySteps: 0 };
  return copy;
}
