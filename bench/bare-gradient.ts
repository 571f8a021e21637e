// The compute ceiling of `bench train`: the bare gradient loop. Each child process (the hidden
// `bench bare-grad`) builds the job's model on the job's backend with ringtrain's kernels and does
// nothing but Replica.computeGradients on its slice of a global batch, step after step: no
// coordinator, no all-reduce, no optimizer. For world size N, N children run at once (as N ranks
// would, sharing the machine) with the shard plan's slice sizes, and the ceiling is
// global batch / the slowest child's mean step time: no synchronous step can be faster.
//
// With writeParams each child also writes the (unchanged) parameters back into the model before
// every gradient, as any trainer must after its update: on the wasm backend a written weight is a
// new tensor, and XNNPACK re-packs it on its next matMul (its packed-weight cache is keyed by the
// tensor), which the plain loop, reusing one set of weights, never pays. 'bare-grad+write' is the
// ceiling for a step that trains.
import { loadDataset } from '../shared/data/dataset.js';
import { rankSlices } from '../shared/shard-plan.js';
import type { Job } from '../shared/job-schema.js';
import { selectBackend } from '../worker/backend/backend.js';
import { buildModel } from '../worker/replica/model-builder.js';
import { Replica } from '../worker/replica/replica.js';
import { BenchChild, readOrder, report } from './bench-child.js';
import { loadBenchJob } from './bench-job.js';

export interface BareCeiling {
  workers: number;
  samplesPerSecond: number;
  /** The slowest child's mean gradient time per step. */
  meanStepMs: number;
  /** Each child's mean gradient time per step. */
  rankStepMs: number[];
  /** The children wrote the parameters back before every gradient (see the header). */
  writeParams: boolean;
}

/** Runs N children at once and returns the ceiling (see the header). */
export async function measureBareCeiling(
  jobFile: string | undefined,
  backend: string | undefined,
  job: Job,
  workers: number,
  steps: number,
  warmupSteps: number,
  writeParams = false,
): Promise<BareCeiling> {
  const batch = job.training.batchSize;
  const children = rankSlices(batch, workers).map(({ start, end }, rank) =>
    BenchChild.spawn(`bare-grad rank ${rank}`, [
      'bench',
      'bare-grad',
      ...(jobFile !== undefined ? [jobFile] : []),
      ...(backend !== undefined ? ['--backend', backend] : []),
      '--samples',
      String(end - start),
      '--steps',
      String(steps),
      '--warmup-steps',
      String(warmupSteps),
      ...(writeParams ? ['--write-params'] : []),
    ]),
  );
  try {
    // Everyone loads and warms up first, then all start timing together.
    await Promise.all(children.map((child) => child.next('ready', 300_000)));
    for (const child of children) child.send({ go: true });
    const done = await Promise.all(children.map((child) => child.next('done', 600_000)));
    const rankStepMs = done.map((message) => Number(message['meanStepMs']));
    const slowest = Math.max(...rankStepMs);
    return { workers, samplesPerSecond: (batch / slowest) * 1000, meanStepMs: slowest, rankStepMs, writeParams };
  } finally {
    for (const child of children) child.kill();
  }
}

/** Child side: the loop itself. Reports "ready" after warm-up, waits for "go", reports "done". */
export async function runBareGradient(options: {
  jobFile: string | undefined;
  backend: string | undefined;
  samples: number;
  steps: number;
  warmupSteps: number;
  writeParams?: boolean;
}): Promise<void> {
  const job = loadBenchJob(options.jobFile, options.backend !== undefined ? { backend: options.backend } : {});
  await selectBackend(job.backend);
  const dataset = loadDataset(job);
  const replica = new Replica(buildModel(job), job);
  const count = Math.min(options.samples, dataset.train.count);
  const { featureSize: fs, labelSize: ls } = dataset;
  const grad = new Float32Array(replica.paramCount);
  const params = new Float32Array(replica.paramCount);
  replica.readParams(params);
  const batches = Math.max(1, Math.floor(dataset.train.count / Math.max(1, count)));
  const ids = new Uint32Array(count);
  const step = (index: number): void => {
    const first = (index % batches) * count;
    for (let i = 0; i < count; i++) ids[i] = first + i;
    const x = dataset.train.x.subarray(first * fs, (first + count) * fs);
    const y = dataset.train.y.subarray(first * ls, (first + count) * ls);
    if (options.writeParams === true) replica.writeParams(params);
    replica.computeGradients(x, y, count, index, ids, grad);
  };
  for (let index = 0; index < options.warmupSteps; index++) step(index);
  report({ event: 'ready' });
  await readOrder(300_000);
  const started = performance.now();
  for (let index = 0; index < options.steps; index++) step(options.warmupSteps + index);
  report({ event: 'done', meanStepMs: (performance.now() - started) / options.steps });
  replica.model.dispose();
}
