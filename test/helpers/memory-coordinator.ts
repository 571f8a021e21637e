// The coordinator's core wired as coordinator.ts wires it (membership, elastic loop, run
// directory, checkpoint store, event log), but over memory workers instead of gRPC sessions and
// processes: for unit tests of the step plan, boundaries, regroup and failure paths.
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pino } from 'pino';
import { ElasticTraining } from '../../coordinator/loop/elastic-training.js';
import { Membership } from '../../coordinator/loop/membership.js';
import { StragglerDetector } from '../../coordinator/loop/straggler-detector.js';
import type { LoopResult } from '../../coordinator/loop/training-loop.js';
import { CheckpointStore } from '../../coordinator/run/checkpoint-store.js';
import { EventLog } from '../../coordinator/run/event-log.js';
import { PlainProgressView, ProgressReporter } from '../../coordinator/run/progress-reporter.js';
import { readMetrics, RunDirectory } from '../../coordinator/run/run-directory.js';
import { LearningRates } from '../../coordinator/loop/learning-rates.js';
import { CallbackRunner, type TrainingCallbacks } from '../../coordinator/training-callbacks.js';
import { loadDataset, type Dataset } from '../../shared/data/dataset.js';
import { jobHash, resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';
import { ManualClock } from './manual-clock.js';
import { MemoryCluster, type MemoryWorker } from './memory-workers.js';

export const STEP_TIMEOUT_MS = 30_000;
export const READY_TIMEOUT_MS = 20_000;

/** An XOR job: 64 samples, 48 train / 16 validation; batch 8 -> 6 steps an epoch. */
export function loopJob(overrides: Record<string, unknown> = {}): Job {
  return resolveJob(
    {
      name: 'memory-loop',
      seed: 7,
      data: { format: 'xor', samples: 64, split: { validation: 0.25, test: 0 } },
      model: { input: [2], layers: [{ type: 'dense', units: 1, activation: 'sigmoid' }] },
      loss: 'binaryCrossentropy',
      optimizer: { type: 'sgd', learningRate: 0.1 },
      training: { epochs: 2, batchSize: 8 },
      checkpoint: { everySteps: 0, keep: 100 },
      consistencyCheckEverySteps: 0,
      ...overrides,
    },
    'memory-loop test',
  );
}

export interface MemoryCoordinator {
  job: Job;
  dataset: Dataset;
  clock: ManualClock;
  cluster: MemoryCluster;
  membership: Membership;
  runDir: RunDirectory;
  checkpoints: CheckpointStore;
  events: EventLog;
  /** What the reporter printed. */
  notes: string[];
  /** Aborting it stops the run at the next boundary (SIGTERM). */
  stop: AbortController;
  /** Workers offered to the membership, in order. */
  joined: MemoryWorker[];
  /** Joins a new worker (it waits in the membership until a regroup takes it). */
  join: (worker?: MemoryWorker) => MemoryWorker;
  /** Forms generation 1 from the joined workers and trains to the end (or a failure). */
  train: (startStep?: number) => Promise<{ elastic: ElasticTraining; result: LoopResult }>;
  /** The schedule and the callbacks' overrides (persisted in the run directory). */
  learningRates: LearningRates;
  /** Step records of metrics.jsonl. */
  stepRecords: () => Array<Record<string, unknown>>;
  validationRecords: () => Array<Record<string, unknown>>;
  /** Removes the run directory. */
  dispose: () => Promise<void>;
}

export async function memoryCoordinator(options: {
  job: Job;
  workers: number;
  bounds: { min: number; max: number };
  evalLoss?: (split: string, step: number) => number;
  callbacks?: TrainingCallbacks[];
  /** @default 1 */
  onStepEvery?: number;
}): Promise<MemoryCoordinator> {
  const { job } = options;
  const dataset = loadDataset(job);
  const clock = new ManualClock();
  const cluster = new MemoryCluster({
    clock,
    dataHash: dataset.hash,
    ...(options.evalLoss !== undefined ? { evalLoss: options.evalLoss } : {}),
  });
  const logger = pino({ level: 'silent' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ringtrain-memory-loop-'));
  const runDir = await RunDirectory.create({ name: job.name, explicitDir: path.join(dir, 'run') });
  const hash = jobHash(job);
  const membership = new Membership(job, hash, runDir.path, logger, options.bounds.max, clock);
  const checkpoints = new CheckpointStore(runDir.checkpointsDir, { keep: job.checkpoint.keep, jobHash: hash, logger });
  const events = new EventLog(logger);
  const notes: string[] = [];
  const stop = new AbortController();
  const joined: MemoryWorker[] = [];
  let requestId = 1;
  const learningRates = LearningRates.forJob(job, dataset.train.count, runDir.path);
  const callbacks = new CallbackRunner(
    (options.callbacks ?? []).map((c) => ({ callbacks: c })),
    learningRates,
    runDir.path,
    options.onStepEvery ?? 1,
  );
  const join = (worker = cluster.spawn()): MemoryWorker => {
    joined.push(worker);
    membership.offer(worker);
    return worker;
  };
  for (let i = 0; i < options.workers; i++) join();
  const train = async (startStep = 0): Promise<{ elastic: ElasticTraining; result: LoopResult }> => {
    const links = await membership.waitForWorkers(options.workers, 0, stop.signal);
    const first = await membership.formRing(links, dataset.hash, READY_TIMEOUT_MS);
    const elastic = new ElasticTraining(
      {
        job,
        dataset,
        runDir,
        checkpoints,
        callbacks,
        reporter: new ProgressReporter(new PlainProgressView((line) => notes.push(line))),
        logger,
        events,
        stragglers: new StragglerDetector(job.stragglers.margin, job.stragglers.patienceSteps, () => undefined),
        membership,
        bounds: options.bounds,
        stepTimeoutMs: STEP_TIMEOUT_MS,
        recordParamHashes: false,
        readyTimeoutMs: READY_TIMEOUT_MS,
        stopAtStep: undefined,
        stopSignal: stop.signal,
        replacementMs: () => job.timeouts.replacementMs,
        onEvicted: () => undefined,
        nextRequestId: () => requestId++,
      },
      first,
    );
    const result = await elastic.run(startStep, undefined);
    return { elastic, result };
  };
  const records = (type: string) => (): Array<Record<string, unknown>> =>
    readMetrics(runDir.metricsFile).filter((r) => r['type'] === type);
  return {
    job,
    dataset,
    clock,
    cluster,
    membership,
    runDir,
    checkpoints,
    events,
    notes,
    stop,
    joined,
    join,
    train,
    learningRates,
    stepRecords: records('step'),
    validationRecords: records('validation'),
    dispose: async () => {
      await runDir.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
