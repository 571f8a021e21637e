// Data-parallel equivalence per model family, in one process (test/helpers/memory-world.ts):
// N real TrainerReplicas (cpu backend) whose collective is the real ringAllReduce over
// in-memory links. For every family (dense with each activation, conv, dropout, each loss, each
// optimizer, each schedule, clipping, syncBatchNorm, accumulation, lstm, gru, embedding + conv1d
// + global pooling, layerNormalization) 1, 2 and 3 ranks reach the same
// parameters within ‖Δw‖/‖w‖ ≤ 1e-4, every rank of a world holds bit-identical parameters, and
// training moved them. Also: a micro-batched step equals the one-pass step.
import { beforeAll, describe, expect, it } from 'vitest';
import type { StepReport } from '../../proto/generated/ringtrain/v1/StepReport.js';
import { loadDataset } from '../../shared/data/dataset.js';
import { resolveJob } from '../../shared/job.js';
import type { JobInput } from '../../shared/job-schema.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { MLP, relativeDistance, TOLERANCE, trainWorld, xorJob } from '../helpers/memory-world.js';

interface Family {
  name: string;
  job: JobInput;
  steps?: number;
  /** Extra check on the 1-rank reports, e.g. that clipping really clipped. */
  check?: (reports: StepReport[]) => void;
  /** BatchNorm moving statistics must also be identical on every rank and match 1 rank's. */
  syncedStatistics?: boolean;
}

/** mnist digits read as sequences: 28 rows of 28 pixels (or 784 pixels). */
function mnistSequenceJob(layers: JobInput['model']['layers'], input = [28, 28]): JobInput {
  return {
    seed: 8,
    data: { format: 'mnist', limit: 120, split: { validation: 0, test: 0 } },
    model: { input, layers },
    loss: 'categoricalCrossentropy',
    optimizer: { type: 'adam', learningRate: 0.01 },
    training: { epochs: 1, batchSize: 10 },
  };
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
    check: (reports) => expect(reports.every((r) => Number(r.gradNorm) > 0.05)).toBe(true),
  },
  {
    name: 'syncBatchNorm, dense (BatchNorm on the input and between layers)',
    job: xorJob({
      model: {
        input: [2],
        syncBatchNorm: true,
        layers: [
          { type: 'batchNormalization', momentum: 0.8 },
          { type: 'dense', units: 8, activation: 'relu' },
          { type: 'batchNormalization', momentum: 0.8 },
          { type: 'dropout', rate: 0.25 },
          { type: 'dense', units: 6, activation: 'tanh' },
          { type: 'dense', units: 2, activation: 'softmax' },
        ],
      },
    }),
    syncedStatistics: true,
  },
  {
    name: 'syncBatchNorm, conv (per-channel statistics over batch × height × width)',
    job: {
      seed: 6,
      data: { format: 'mnist', limit: 120, split: { validation: 0, test: 0 } },
      model: {
        input: [28, 28, 1],
        syncBatchNorm: true,
        layers: [
          { type: 'conv2d', filters: 4, kernelSize: 5, strides: 3 },
          { type: 'batchNormalization' },
          { type: 'activation', activation: 'relu' },
          { type: 'maxPooling2d', poolSize: 2 },
          { type: 'flatten' },
          { type: 'batchNormalization' },
          { type: 'dense', units: 10, activation: 'softmax' },
        ],
      },
      loss: 'categoricalCrossentropy',
      // Not adam: the conv bias feeds BatchNorm, so its true gradient is 0 and what is computed
      // is rounding noise, which adam's normalised step would blow up to ±learningRate.
      optimizer: { type: 'momentum', learningRate: 0.05 },
      training: { epochs: 1, batchSize: 10 },
    },
    steps: 4,
    syncedStatistics: true,
  },
  {
    name: 'syncBatchNorm with a rank that gets no samples (global batch 2 on 3 ranks)',
    job: xorJob({
      model: {
        input: [2],
        syncBatchNorm: true,
        layers: [
          { type: 'dense', units: 8, activation: 'relu' },
          { type: 'batchNormalization', momentum: 0.5 },
          { type: 'dense', units: 2, activation: 'softmax' },
        ],
      },
      training: { epochs: 1, batchSize: 2 },
    }),
    syncedStatistics: true,
  },
  {
    name: 'lstm over the rows of mnist digits',
    job: mnistSequenceJob([
      { type: 'lstm', units: 8 },
      { type: 'dense', units: 10, activation: 'softmax' },
    ]),
    steps: 4,
  },
  {
    name: 'gru (returnSequences) + globalAveragePooling1d',
    job: mnistSequenceJob([
      { type: 'gru', units: 6, returnSequences: true, recurrentActivation: 'sigmoid' },
      { type: 'globalAveragePooling1d' },
      { type: 'dense', units: 10, activation: 'softmax' },
    ]),
    steps: 4,
  },
  {
    name: 'embedding + conv1d + globalMaxPooling1d (pixels as tokens 0..9)',
    job: mnistSequenceJob(
      [
        // x·9, truncated by the embedding: every pixel becomes a token id in 0..9.
        { type: 'normalization', mean: 0, std: 1 / 9 },
        { type: 'embedding', inputDim: 10, outputDim: 3 },
        { type: 'conv1d', filters: 4, kernelSize: 5, strides: 4, activation: 'relu' },
        { type: 'globalMaxPooling1d' },
        { type: 'dense', units: 10, activation: 'softmax' },
      ],
      [784],
    ),
    steps: 4,
  },
  {
    name: 'layerNormalization',
    job: xorJob({
      model: {
        input: [2],
        layers: [
          { type: 'dense', units: 8, activation: 'relu' },
          { type: 'layerNormalization' },
          { type: 'dense', units: 6, activation: 'tanh' },
          { type: 'layerNormalization', epsilon: 0.01 },
          { type: 'dense', units: 2, activation: 'softmax' },
        ],
      },
    }),
  },
  {
    name: 'gradient accumulation (3 micro-batches)',
    job: xorJob({ training: { epochs: 2, batchSize: 11, accumulationSteps: 3 } }),
  },
];

beforeAll(async () => {
  await selectBackend('cpu');
});

describe.each(FAMILIES)('$name', ({ job: input, steps = 8, check, syncedStatistics = false }) => {
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
      other.reports.forEach((report, i) =>
        expect(Number(report.loss)).toBeCloseTo(Number(one.reports[i]?.loss ?? Number.NaN), 5),
      );
      expect(other.reports.map((r) => r.globalCount)).toEqual(one.reports.map((r) => r.globalCount));
      if (syncedStatistics) {
        const reference = one.nonTrainable[0] as Float32Array;
        expect(reference.length).toBeGreaterThan(0);
        for (const moving of other.nonTrainable) expect(moving).toEqual(other.nonTrainable[0]);
        expect(relativeDistance(other.nonTrainable[0] as Float32Array, reference)).toBeLessThanOrEqual(TOLERANCE);
      }
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
      expect(Number(b.reports[0]?.loss)).toBeCloseTo(Number(a.reports[0]?.loss ?? Number.NaN), 6);
      expect(b.reports[0]?.globalCount).toBe(13);
    },
  );
});
