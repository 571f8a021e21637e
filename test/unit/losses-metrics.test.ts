// Per-sample loss values and metric sums against hand-computed numbers.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LossName, MetricName } from '../../shared/job-schema.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { CLIP_EPSILON, perSampleLoss } from '../../worker/replica/losses.js';
import { metricSum, type MetricOptions } from '../../worker/replica/metrics.js';

function loss(name: LossName, yTrue: number[][], yPred: number[][]): number[] {
  return tf.tidy(() => [...perSampleLoss(name, tf.tensor2d(yTrue), tf.tensor2d(yPred)).dataSync()]);
}

function metric(
  name: MetricName,
  yTrue: number[][],
  yPred: number[][],
  options: MetricOptions = { sparseLabels: false },
): number {
  return tf.tidy(() => metricSum(name, tf.tensor2d(yTrue), tf.tensor2d(yPred), options).dataSync()[0] ?? NaN);
}

function expectValues(actual: number[], expected: number[]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((a, i) => expect(a).toBeCloseTo(expected[i] ?? NaN, 4));
}

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('perSampleLoss', () => {
  it('meanSquaredError averages over output units', () => {
    expectValues(
      loss(
        'meanSquaredError',
        [
          [1, 2],
          [0, 0],
        ],
        [
          [1, 4],
          [1, 1],
        ],
      ),
      [2, 1],
    );
  });

  it('binaryCrossentropy works on probabilities, clipped to [eps, 1 - eps]', () => {
    // In float32, 1 - 1e-7 rounds to 1 - 2^-23, so a certain wrong answer costs -log(2^-23).
    const worst = -Math.log(1 - Math.fround(1 - CLIP_EPSILON));
    expectValues(loss('binaryCrossentropy', [[1], [0], [0]], [[0.8], [0.1], [1]]), [
      -Math.log(0.8),
      -Math.log(0.9),
      worst,
    ]);
    expectValues(loss('binaryCrossentropy', [[1, 0]], [[0.8, 0.1]]), [(-Math.log(0.8) - Math.log(0.9)) / 2]);
  });

  it('categoricalCrossentropy takes one-hot labels and clips zero probabilities', () => {
    expectValues(
      loss(
        'categoricalCrossentropy',
        [
          [0, 1, 0],
          [1, 0, 0],
        ],
        [
          [0.2, 0.5, 0.3],
          [0, 0.5, 0.5],
        ],
      ),
      [-Math.log(0.5), -Math.log(CLIP_EPSILON)],
    );
  });

  it('sparseCategoricalCrossentropy takes class indices as floats', () => {
    expectValues(
      loss(
        'sparseCategoricalCrossentropy',
        [[1], [2]],
        [
          [0.2, 0.5, 0.3],
          [0.1, 0.1, 0.8],
        ],
      ),
      [-Math.log(0.5), -Math.log(0.8)],
    );
  });
});

describe('metricSum', () => {
  const pred = [
    [0.2, 0.5, 0.3],
    [0.6, 0.3, 0.1],
  ];

  it('accuracy counts argmax matches for one-hot and sparse labels', () => {
    expect(
      metric(
        'accuracy',
        [
          [0, 1, 0],
          [0, 0, 1],
        ],
        pred,
      ),
    ).toBe(1);
    expect(metric('accuracy', [[1], [0]], pred, { sparseLabels: true })).toBe(2);
  });

  it('accuracy thresholds a single sigmoid unit at 0.5', () => {
    expect(metric('accuracy', [[1], [0], [0]], [[0.7], [0.2], [0.6]])).toBe(2);
  });

  it('binaryAccuracy averages matches over units, then sums over samples', () => {
    expect(
      metric(
        'binaryAccuracy',
        [
          [1, 1],
          [0, 1],
        ],
        [
          [0.7, 0.2],
          [0.6, 0.9],
        ],
      ),
    ).toBeCloseTo(1, 6);
  });

  it('mae and mse are per-sample unit means, summed, and scaled to label units', () => {
    expect(
      metric(
        'mae',
        [
          [2, 1],
          [0, 0],
        ],
        [
          [1, 3],
          [1, 1],
        ],
      ),
    ).toBeCloseTo(1.5 + 1, 6);
    expect(
      metric(
        'mse',
        [
          [2, 1],
          [0, 0],
        ],
        [
          [1, 3],
          [1, 1],
        ],
      ),
    ).toBeCloseTo(2.5 + 1, 6);
    expect(metric('mae', [[2, 1]], [[1, 3]], { sparseLabels: false, labelScale: 2 })).toBeCloseTo(3, 6);
    expect(metric('mse', [[2, 1]], [[1, 3]], { sparseLabels: false, labelScale: 2 })).toBeCloseTo(10, 6);
  });
});
