// Data-parallel equivalence per model family, in one process: N real TrainerReplicas (cpu
// backend) step together, their collective being the real ringAllReduce over in-memory links.
// For every family (dense with each activation, conv, dropout, each loss, each optimizer, each
// schedule, clipping, accumulation) 1, 2 and 3 ranks reach the same parameters within
// ‖Δw‖/‖w‖ ≤ 1e-4, every rank of a world holds bit-identical parameters, and training moved
// them. Also: a micro-batched step equals the one-pass step.
import { beforeAll, describe, expect, it } from 'vitest';
import type { StepReport } from '../../proto/generated/ringtrain/v1/StepReport.js';
import { loadDataset, type Dataset } from '../../shared/data/dataset.js';
import { encodeIndices } from '../../shared/index-codec.js';
import { resolveJob } from '../../shared/job.js';
import type { Job, JobInput } from '../../shared/job-schema.js';
import { learningRateAt } from '../../shared/lr-schedule.js';
import { batchesPerEpoch, ShardPlan, cursorOf } from '../../shared/shard-plan.js';
import { decodeTrainState } from '../../shared/train-state.js';
import { selectBackend } from '../../worker/backend.js';
import { FrameInbox } from '../../worker/frame-inbox.js';
import { buildModel } from '../../worker/model-builder.js';
import { Replica } from '../../worker/replica.js';
import { ringAllReduce, type RingLink } from '../../worker/ring-allreduce.js';
import { TrainerReplica, type AllReduce } from '../../worker/trainer-replica.js';

/** Small chunks, so the ring pipelines several chunks per segment even for small models. */
const CHUNK_ELEMS = 50;
const TOLERANCE = 1e-4;

/** N in-memory ring links; rank r's sends land (copied) in rank (r + 1)'s inbox after a hop. */
function memoryRing(worldSize: number): AllReduce[] {
  const inboxes = Array.from({ length: worldSize }, (_, rank) => new FrameInbox((rank - 1 + worldSize) % worldSize));
  return inboxes.map((inbox, rank) => {
    const right = inboxes[(rank + 1) % worldSize] as FrameInbox;
    return async (buffer: Float32Array, step: number, collective = 0): Promise<void> => {
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
    };
  });
}

interface WorldOutcome {
  /** Parameters after the last step (rank 0; every rank is checked to be bit-identical). */
  params: Float32Array;
  initial: Float32Array;
  reports: StepReport[];
}

/** Trains `job` for `steps` steps on `worldSize` in-process ranks, as the coordinator would order them. */
async function trainWorld(job: Job, dataset: Dataset, worldSize: number, steps: number): Promise<WorldOutcome> {
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
  return { params: paramsOf(trainers[0] as TrainerReplica), initial, reports };
}

function paramsOf(trainer: TrainerReplica): Float32Array {
  return decodeTrainState(trainer.exportState(), 'trainer').params;
}

function relativeDistance(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += ((a[i] as number) - (b[i] as number)) ** 2;
    norm += (b[i] as number) ** 2;
  }
  return Math.sqrt(diff) / Math.sqrt(norm);
}

const MLP = (activation: string, units = 2, last = 'softmax'): JobInput['model'] => ({
  input: [2],
  layers: [
    { type: 'dense', units: 8, activation: activation as 'relu' },
    { type: 'dense', units: 6, activation: activation as 'relu' },
    { type: 'dense', units, activation: last as 'softmax' },
  ],
});

const XOR_DATA = { format: 'xor', samples: 64, noise: 0.3, split: { validation: 0, test: 0 } } as const;

/** A dense xor job; `overrides` replace whole top-level keys. */
function xorJob(overrides: Partial<JobInput>): JobInput {
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

interface Family {
  name: string;
  job: JobInput;
  steps?: number;
  /** Extra check on the 1-rank reports, e.g. that clipping really clipped. */
  check?: (reports: StepReport[]) => void;
}

const FAMILIES: Family[] = [
  { name: 'dense relu + softmax, categoricalCrossentropy', job: xorJob({}) },
  { name: 'dense tanh', job: xorJob({ model: MLP('tanh') }) },
  { name: 'dense sigmoid', job: xorJob({ model: MLP('sigmoid') }) },
  { name: 'dense leakyRelu', job: xorJob({ model: MLP('leakyRelu') }) },
  { name: 'meanSquaredError', job: xorJob({ model: MLP('relu', 1, 'linear'), loss: 'meanSquaredError' }) },
  { name: 'binaryCrossentropy', job: xorJob({ model: MLP('relu', 1, 'sigmoid'), loss: 'binaryCrossentropy' }) },
  { name: 'sparseCategoricalCrossentropy', job: xorJob({ loss: 'sparseCategoricalCrossentropy' }) },
  {
    name: 'dropout',
    job: xorJob({
      model: {
        input: [2],
        layers: [
          { type: 'dense', units: 16, activation: 'relu' },
          { type: 'dropout', rate: 0.5 },
          { type: 'dense', units: 8, activation: 'relu' },
          { type: 'dropout', rate: 0.25 },
          { type: 'dense', units: 2, activation: 'softmax' },
        ],
      },
    }),
  },
  {
    name: 'conv2d + maxPooling2d on mnist digits',
    job: {
      seed: 5,
      data: { format: 'mnist', limit: 120, split: { validation: 0, test: 0 } },
      model: {
        input: [28, 28, 1],
        layers: [
          { type: 'conv2d', filters: 4, kernelSize: 5, strides: 2, activation: 'relu' },
          { type: 'maxPooling2d', poolSize: 2 },
          { type: 'conv2d', filters: 6, kernelSize: 3, padding: 'same', activation: 'tanh' },
          { type: 'flatten' },
          { type: 'dense', units: 10, activation: 'softmax' },
        ],
      },
      loss: 'categoricalCrossentropy',
      optimizer: { type: 'sgd', learningRate: 0.2 },
      training: { epochs: 1, batchSize: 10 },
    },
    steps: 4,
  },
  { name: 'sgd with weight decay', job: xorJob({ optimizer: { type: 'sgd', learningRate: 0.5, weightDecay: 0.01 } }) },
  { name: 'momentum', job: xorJob({ optimizer: { type: 'momentum', learningRate: 0.2, momentum: 0.9 } }) },
  { name: 'nesterov', job: xorJob({ optimizer: { type: 'nesterov', learningRate: 0.2, momentum: 0.9 } }) },
  {
    name: 'adam with weight decay',
    job: xorJob({ optimizer: { type: 'adam', learningRate: 0.01, weightDecay: 0.01 } }),
  },
  {
    name: 'step schedule',
    job: xorJob({ schedule: { type: 'step', stepSize: 3, gamma: 0.5 } }),
    check: (reports) => expect(reports).toHaveLength(8),
  },
  { name: 'cosine schedule', job: xorJob({ schedule: { type: 'cosine', minLearningRate: 0.01 } }) },
  {
    name: 'linear warm-up + linear scaling',
    job: xorJob({ schedule: { warmupSteps: 5, scaleLinearly: true, referenceBatchSize: 8 } }),
  },
  {
    name: 'gradient clipping by global norm',
    job: xorJob({ optimizer: { type: 'sgd', learningRate: 0.5, clipNorm: 0.05 } }),
    check: (reports) => expect(reports.every((r) => r.gradNorm > 0.05)).toBe(true),
  },
  {
    name: 'gradient accumulation (3 micro-batches)',
    job: xorJob({ training: { epochs: 2, batchSize: 11, accumulationSteps: 3 } }),
  },
];

beforeAll(async () => {
  await selectBackend('cpu');
});

describe.each(FAMILIES)('$name', ({ job: input, steps = 8, check }) => {
  it('reaches the same parameters on 1, 2 and 3 ranks', async () => {
    const job = resolveJob(input, 'family job');
    const dataset = loadDataset(job);
    const one = await trainWorld(job, dataset, 1, steps);
    // The comparison below is between trained parameters, not two copies of the initialisation.
    expect(relativeDistance(one.params, one.initial)).toBeGreaterThan(100 * TOLERANCE);
    check?.(one.reports);
    for (const worldSize of [2, 3]) {
      const other = await trainWorld(job, dataset, worldSize, steps);
      expect(other.params.length).toBe(one.params.length);
      expect(relativeDistance(other.params, one.params)).toBeLessThanOrEqual(TOLERANCE);
      other.reports.forEach((report, i) => expect(report.loss).toBeCloseTo(one.reports[i]?.loss ?? Number.NaN, 5));
      expect(other.reports.map((r) => r.globalCount)).toEqual(one.reports.map((r) => r.globalCount));
    }
  });
});

describe('gradient accumulation', () => {
  it.each([
    { worldSize: 1, accumulationSteps: 4 },
    { worldSize: 2, accumulationSteps: 3 },
    { worldSize: 3, accumulationSteps: 5 },
  ])(
    'a step of $accumulationSteps micro-batches on $worldSize rank(s) equals the one-pass step',
    async ({ worldSize, accumulationSteps }) => {
      const dropoutModel: JobInput['model'] = {
        input: [2],
        layers: [
          { type: 'dense', units: 12, activation: 'tanh' },
          { type: 'dropout', rate: 0.3 },
          { type: 'dense', units: 2, activation: 'softmax' },
        ],
      };
      const base = xorJob({ model: dropoutModel, training: { epochs: 1, batchSize: 13 } });
      const full = resolveJob(base, 'full');
      const micro = resolveJob({ ...base, training: { epochs: 1, batchSize: 13, accumulationSteps } }, 'micro');
      const dataset = loadDataset(full);
      const a = await trainWorld(full, dataset, worldSize, 1);
      const b = await trainWorld(micro, dataset, worldSize, 1);
      const updateA = a.params.map((p, i) => p - (a.initial[i] as number));
      const updateB = b.params.map((p, i) => p - (b.initial[i] as number));
      expect(b.initial).toEqual(a.initial);
      expect(relativeDistance(updateB, updateA)).toBeLessThanOrEqual(1e-5);
      expect(b.reports[0]?.loss).toBeCloseTo(a.reports[0]?.loss ?? Number.NaN, 6);
      expect(b.reports[0]?.globalCount).toBe(13);
    },
  );
});
