// An in-process data-parallel world for unit tests: N real TrainerReplicas whose collective is
// the real ringAllReduce over in-memory links, stepped exactly as the coordinator orders steps
// (shard plan, learning-rate schedule). Callers select the tfjs backend first.
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import type { StepReport } from '../../proto/generated/ringtrain/v1/StepReport.js';
import type { Dataset } from '../../shared/data/dataset.js';
import { encodeIndices } from '../../shared/index-codec.js';
import type { Job, JobInput } from '../../shared/job-schema.js';
import { learningRateAt } from '../../shared/lr-schedule.js';
import { batchesPerEpoch, ShardPlan, cursorOf } from '../../shared/shard-plan.js';
import { decodeTrainState } from '../../shared/train-state.js';
import { collectiveStats, type CollectiveStats } from '../../worker/collectives/collective-stats.js';
import { FrameInbox } from '../../worker/collectives/frame-inbox.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { Replica } from '../../worker/replica/replica.js';
import { ringAllReduce, type RingLink } from '../../worker/collectives/ring-allreduce.js';
import { TrainerReplica, type AllReduce } from '../../worker/replica/trainer-replica.js';

/** Small chunks, so the ring pipelines several chunks per segment even for small models. */
const CHUNK_ELEMS = 50;
export const TOLERANCE = 1e-4;

/** N in-memory ring links; rank r's sends land (copied) in rank (r + 1)'s inbox after a hop. */
export function memoryRing(worldSize: number): AllReduce[] {
  const inboxes = Array.from({ length: worldSize }, (_, rank) => new FrameInbox((rank - 1 + worldSize) % worldSize));
  return inboxes.map((inbox, rank) => {
    const right = inboxes[(rank + 1) % worldSize] as FrameInbox;
    return async (buffer: Float32Array, step: number, collective = 0): Promise<CollectiveStats> => {
      const startedMs = performance.now();
      inbox.openCollective(step, collective);
      const link: RingLink = {
        async send(chunk) {
          const copy = chunk.data.slice();
          await new Promise<void>((resolve) => setImmediate(resolve));
          right.deliver({ step, collective, round: chunk.round, chunk: chunk.chunk }, copy);
        },
        receive: (round, chunk) => inbox.take({ step, collective, round, chunk }, 10_000),
      };
      await ringAllReduce(buffer, rank, worldSize, link, CHUNK_ELEMS);
      return collectiveStats(startedMs, inbox.firstArrivalMs(step, collective));
    };
  });
}

export interface WorldOutcome {
  /** Parameters after the last step (rank 0; every rank is checked to be bit-identical). */
  params: Float32Array;
  initial: Float32Array;
  reports: StepReport[];
  /** Each rank's non-trainable weights (BatchNorm moving mean/variance) after the last step. */
  nonTrainable: Float32Array[];
}

/** Trains `job` for `steps` steps on `worldSize` in-process ranks, as the coordinator would order them. */
export async function trainWorld(job: Job, dataset: Dataset, worldSize: number, steps: number): Promise<WorldOutcome> {
  const trainers = Array.from(
    { length: worldSize },
    () => new TrainerReplica(job, dataset, new Replica(buildModel(job), job)),
  );
  const initial = paramsOf(trainers[0] as TrainerReplica);
  const collectives = memoryRing(worldSize);
  const plan = new ShardPlan(dataset.train.count, job.training.batchSize, job.seed);
  const totalSteps = batchesPerEpoch(dataset.train.count, job.training.batchSize) * job.training.epochs;
  const reports: StepReport[] = [];
  for (let step = 0; step < steps; step++) {
    const { epoch, batchInEpoch } = cursorOf(step, dataset.train.count, job.training.batchSize);
    const learningRate = learningRateAt(
      step,
      job.optimizer.learningRate,
      job.schedule,
      job.training.batchSize,
      totalSteps,
    );
    const stepReports = await Promise.all(
      trainers.map((trainer, rank) =>
        trainer.step(
          {
            generation: 1,
            step,
            epoch,
            batchInEpoch,
            sampleIndices: encodeIndices(plan.shardAt(step, rank, worldSize)),
            globalBatchSize: job.training.batchSize,
            learningRate,
            wantParamHash: true,
          },
          collectives[rank] as AllReduce,
        ),
      ),
    );
    expect(new Set(stepReports.map((r) => r.paramHash)).size).toBe(1);
    reports.push(stepReports[0] as StepReport);
  }
  const nonTrainable = trainers.map((trainer) => decodeTrainState(trainer.exportState(), 'trainer').nonTrainable);
  return { params: paramsOf(trainers[0] as TrainerReplica), initial, reports, nonTrainable };
}

export function paramsOf(trainer: TrainerReplica): Float32Array {
  return decodeTrainState(trainer.exportState(), 'trainer').params;
}

export function relativeDistance(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += ((a[i] as number) - (b[i] as number)) ** 2;
    norm += (b[i] as number) ** 2;
  }
  return Math.sqrt(diff) / Math.sqrt(norm);
}

export const MLP = (activation: string, units = 2, last = 'softmax'): JobInput['model'] => ({
  input: [2],
  layers: [
    { type: 'dense', units: 8, activation: activation as 'relu' },
    { type: 'dense', units: 6, activation: activation as 'relu' },
    { type: 'dense', units, activation: last as 'softmax' },
  ],
});

export const XOR_DATA = { format: 'xor', samples: 64, noise: 0.3, split: { validation: 0, test: 0 } } as const;

/** A dense xor job; `overrides` replace whole top-level keys. */
export function xorJob(overrides: Partial<JobInput>): JobInput {
  return {
    seed: 11,
    data: XOR_DATA,
    model: MLP('relu'),
    loss: 'categoricalCrossentropy',
    optimizer: { type: 'sgd', learningRate: 0.5 },
    training: { epochs: 2, batchSize: 11 },
    ...overrides,
  };
}

/**
 * One rank, one batch: `synced` (syncBatchNorm, its collectives answered as a lone rank's) must
 * give `plain`'s (tfjs's own BatchNorm) gradient, loss and moving statistics, call the collective
 * twice per BatchNorm layer, and leak no tensor. Returns both replicas; the caller disposes them.
 */
export async function expectSyncedMatchesPlain(
  plain: Job,
  synced: Job,
  batch: { x: Float32Array; y: Float32Array; ids: Uint32Array; count: number },
  batchNormLayers: number,
): Promise<{ a: Replica; b: Replica; gradB: Float32Array }> {
  const { x, y, ids, count } = batch;
  const a = new Replica(buildModel(plain), plain);
  const b = new Replica(buildModel(synced), synced);
  expect(b.needsCollectives).toBe(true);
  const gradA = new Float32Array(a.paramCount);
  const gradB = new Float32Array(b.paramCount);
  const lossA = a.computeGradients(x, y, count, 3, ids, gradA).lossSum;
  const before = tf.memory().numTensors;
  let calls = 0;
  const lossB = (await b.computeGradientsSynced(x, y, count, 3, ids, gradB, () => Promise.resolve(void calls++)))
    .lossSum;
  expect(tf.memory().numTensors).toBe(before);
  expect(calls).toBe(2 * batchNormLayers);
  expect(lossB).toBeCloseTo(lossA, 4);
  expect(gradA.some((g) => g !== 0)).toBe(true);
  expect(relativeDistance(gradB, gradA)).toBeLessThanOrEqual(1e-4);
  const [movingA, movingB] = [new Float32Array(a.nonTrainableCount), new Float32Array(b.nonTrainableCount)];
  a.readNonTrainable(movingA);
  b.readNonTrainable(movingB);
  expect(relativeDistance(movingB, movingA)).toBeLessThanOrEqual(1e-5);
  return { a, b, gradB };
}
