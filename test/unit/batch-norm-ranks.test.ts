// BatchNorm under data parallelism: without syncBatchNorm the moving statistics are averaged over
// ranks every step (identical on every rank); with it, one rank's pass equals tfjs's own
// BatchNorm (gradient, loss, moving statistics, no leaked tensors), and the job refuses it with
// gradient accumulation. Multi-rank equivalence with syncBatchNorm is in equivalence-families.
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../shared/data/dataset.js';
import { resolveJob } from '../../shared/job.js';
import type { JobInput } from '../../shared/job-schema.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { expectSyncedMatchesPlain, relativeDistance, trainWorld, XOR_DATA, xorJob } from '../helpers/memory-world.js';

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('BatchNorm without syncBatchNorm', () => {
  const job = resolveJob(
    xorJob({
      model: {
        input: [2],
        layers: [
          { type: 'dense', units: 6, activation: 'relu' },
          { type: 'batchNormalization', momentum: 0.5 },
          { type: 'dense', units: 2, activation: 'softmax' },
        ],
      },
    }),
    'local batch norm',
  );
  const channels = 6;

  it('keeps the moving statistics identical on every rank, the moving mean as one rank would', async () => {
    const dataset = loadDataset(job);
    const one = await trainWorld(job, dataset, 1, 1);
    for (const worldSize of [2, 3]) {
      const world = await trainWorld(job, dataset, worldSize, 1);
      for (const moving of world.nonTrainable) expect(moving).toEqual(world.nonTrainable[0]);
      // After one step from identical weights, the count-weighted mean of the ranks' moving means
      // is the moving mean of the global batch.
      const mean = (world.nonTrainable[0] as Float32Array).subarray(0, channels);
      const oneMean = (one.nonTrainable[0] as Float32Array).subarray(0, channels);
      expect(oneMean.some((m) => m !== 0)).toBe(true);
      expect(relativeDistance(mean, oneMean)).toBeLessThanOrEqual(1e-5);
    }
    const later = await trainWorld(job, dataset, 3, 6);
    for (const moving of later.nonTrainable) expect(moving).toEqual(later.nonTrainable[0]);
  });
});

describe('syncBatchNorm on one rank', () => {
  it.each([
    {
      name: 'dense',
      input: [5],
      layers: [{ type: 'batchNormalization' }, { type: 'dense', units: 4, activation: 'tanh' }],
    },
    {
      name: 'conv',
      input: [6, 6, 2],
      layers: [
        { type: 'conv2d', filters: 3, kernelSize: 3 },
        { type: 'batchNormalization', momentum: 0.7 },
        { type: 'batchNormalization' },
        { type: 'flatten' },
        { type: 'dropout', rate: 0.3 },
        { type: 'dense', units: 4, activation: 'softmax' },
      ],
    },
  ] as const)(
    "matches tfjs's own BatchNorm ($name): gradient, loss and moving statistics, no leaks",
    async ({ input, layers }) => {
      const base = {
        seed: 9,
        data: XOR_DATA,
        loss: 'categoricalCrossentropy',
        optimizer: { type: 'sgd', learningRate: 0.1 },
        training: { epochs: 1, batchSize: 7 },
      } as const;
      const plain = resolveJob({ ...base, model: { input: [...input], layers: [...layers] } }, 'plain');
      const synced = resolveJob(
        { ...base, model: { input: [...input], layers: [...layers], syncBatchNorm: true } },
        'synced',
      );
      const count = 7;
      const featureSize = input.reduce((a: number, b: number) => a * b, 1);
      const x = Float32Array.from({ length: count * featureSize }, (_, i) => Math.sin(i * 1.7) * 3 + 1);
      const y = Float32Array.from({ length: count * 4 }, (_, i) => (i % 4 === Math.floor(i / 4) % 4 ? 1 : 0));
      const ids = Uint32Array.from({ length: count }, (_, i) => 10 + i);
      const bnCount = layers.filter((l) => l.type === 'batchNormalization').length;
      const { a, b } = await expectSyncedMatchesPlain(plain, synced, { x, y, ids, count }, bnCount);
      a.dispose();
      b.dispose();
    },
  );
});

describe('syncBatchNorm job validation', () => {
  it('refuses syncBatchNorm with gradient accumulation', () => {
    const model = {
      input: [2],
      syncBatchNorm: true,
      layers: [{ type: 'batchNormalization' }, { type: 'dense', units: 2, activation: 'softmax' }],
    };
    const input = xorJob({
      model: model as JobInput['model'],
      training: { epochs: 1, batchSize: 8, accumulationSteps: 2 },
    });
    expect(() => resolveJob(input, 'job.yaml')).toThrow(
      /model\.syncBatchNorm: cannot be combined with training\.accumulationSteps > 1/,
    );
  });
});
