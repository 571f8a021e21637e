// Loss, model output and metrics: the guards that refuse a job whose crossentropy would see raw
// scores (or fromLogits probabilities), or whose metric does not fit the task; and the honest
// form, fromLogits, which computes the crossentropy of softmax/sigmoid itself: the same values,
// the same metrics, and the same trained parameters as the probability form, on 1 and 2 ranks.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../shared/data/dataset.js';
import { OutputMismatchError } from '../../shared/errors.js';
import { resolveJob } from '../../shared/job.js';
import type { Job, JobInput } from '../../shared/job-schema.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { perSampleLoss } from '../../worker/replica/losses.js';
import { metricSum } from '../../worker/replica/metrics.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { checkOutputGuards, finalActivation } from '../../worker/replica/output-guards.js';
import { MLP, relativeDistance, TOLERANCE, trainWorld, xorJob } from '../helpers/memory-world.js';

type Task = Parameters<typeof checkOutputGuards>[1];

function guard(input: JobInput, task: Task): void {
  const job = resolveJob(input, 'guard job');
  const model = buildModel(job);
  try {
    checkOutputGuards(job, task, model);
  } finally {
    model.dispose();
  }
}

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('checkOutputGuards', () => {
  it.each([
    {
      name: 'categoricalCrossentropy on a linear output',
      job: xorJob({ model: MLP('relu', 2, 'linear') }),
      message:
        /^loss: categoricalCrossentropy needs probabilities, but the model's output layer "dense_2" \(Dense\) has activation linear; end the model with activation softmax, or write loss: \{ type: categoricalCrossentropy, fromLogits: true \}$/,
    },
    {
      name: 'sparseCategoricalCrossentropy on a sigmoid output',
      job: xorJob({ model: MLP('relu', 2, 'sigmoid'), loss: 'sparseCategoricalCrossentropy' }),
      message:
        /sparseCategoricalCrossentropy needs probabilities.*activation sigmoid; end the model with activation softmax/,
    },
    {
      name: 'binaryCrossentropy (object form) on a linear output',
      job: xorJob({ model: MLP('relu', 1, 'linear'), loss: { type: 'binaryCrossentropy' } }),
      message: /binaryCrossentropy needs probabilities.*activation linear; end the model with activation sigmoid/,
    },
    {
      name: 'fromLogits on a softmax output',
      job: xorJob({ loss: { type: 'categoricalCrossentropy', fromLogits: true } }),
      message:
        /^loss: fromLogits: true expects raw scores, but the model's output layer "dense_2" \(Dense\) already applies softmax; make its activation linear, or drop fromLogits$/,
    },
    {
      name: 'fromLogits after an activation layer that applies sigmoid',
      job: xorJob({
        model: {
          input: [2],
          layers: [
            { type: 'dense', units: 1 },
            { type: 'activation', activation: 'sigmoid' },
          ],
        },
        loss: { type: 'binaryCrossentropy', fromLogits: true },
      }),
      message: /output layer "activation_1" \(Activation\) already applies sigmoid/,
    },
  ])('refuses $name', ({ job, message }) => {
    expect(() => guard(job, 'classification')).toThrow(OutputMismatchError);
    expect(() => guard(job, 'classification')).toThrow(message);
  });

  it.each([
    ['accuracy', 'regression', /^metrics: accuracy needs class labels, but the task is a regression; use mae or mse$/],
    ['binaryAccuracy', 'regression', /binaryAccuracy needs class labels, but the task is a regression/],
    ['accuracy', 'reconstruction', /the task is a reconstruction \(data.target: input\)/],
    [
      'binaryAccuracy',
      'classification',
      /^metrics: binaryAccuracy thresholds one 0\/1 output, but the task has several classes; use accuracy$/,
    ],
  ] as const)('refuses metric %s on a %s task', (metric, task, message) => {
    const job = xorJob({ model: MLP('relu', 1, 'linear'), loss: 'meanSquaredError', metrics: ['mae', metric] });
    expect(() => guard(job, task)).toThrow(message);
  });

  it.each([
    ['softmax + categoricalCrossentropy', xorJob({ metrics: ['accuracy'] }), 'classification'],
    [
      'logits + categoricalCrossentropy fromLogits',
      xorJob({ model: MLP('relu', 2, 'linear'), loss: { type: 'categoricalCrossentropy', fromLogits: true } }),
      'classification',
    ],
    [
      'sigmoid + binaryCrossentropy + binaryAccuracy',
      xorJob({ model: MLP('relu', 1, 'sigmoid'), loss: 'binaryCrossentropy', metrics: ['binaryAccuracy', 'accuracy'] }),
      'binary',
    ],
    [
      'softmax activation layer after a dense layer',
      xorJob({
        model: {
          input: [2],
          layers: [
            { type: 'dense', units: 2 },
            { type: 'activation', activation: 'softmax' },
          ],
        },
      }),
      'classification',
    ],
    [
      'linear + meanSquaredError + mae on a regression',
      xorJob({ model: MLP('relu', 1, 'linear'), loss: 'meanSquaredError', metrics: ['mae', 'mse'] }),
      'regression',
    ],
  ] as const)('accepts %s', (_, job, task) => {
    expect(() => guard(job, task)).not.toThrow();
  });

  it('finds softmax in a Softmax layer and leakyRelu in a LeakyReLU layer', () => {
    const softmax = tf.sequential({ layers: [tf.layers.dense({ units: 3, inputShape: [2] }), tf.layers.softmax()] });
    const leaky = tf.sequential({ layers: [tf.layers.dense({ units: 3, inputShape: [2] }), tf.layers.leakyReLU()] });
    expect(finalActivation(softmax).activation).toBe('softmax');
    expect(finalActivation(leaky).activation).toBe('leakyRelu');
    [softmax, leaky].forEach((m) => m.dispose());
  });
});

describe('fromLogits', () => {
  const logits = [
    [2.5, -1, 0.3],
    [-4, 3, 9],
    [0, 0, 0],
  ];
  const oneHot = [
    [1, 0, 0],
    [0, 0, 1],
    [0, 1, 0],
  ];

  it('categorical and sparse crossentropy of logits equal those of their softmax', () => {
    const [onLogits, onSparse, onProbabilities] = tf.tidy(() => {
      const z = tf.tensor2d(logits);
      return [
        perSampleLoss({ type: 'categoricalCrossentropy', fromLogits: true }, tf.tensor2d(oneHot), z).arraySync(),
        perSampleLoss(
          { type: 'sparseCategoricalCrossentropy', fromLogits: true },
          tf.tensor2d([[0], [2], [1]]),
          z,
        ).arraySync(),
        perSampleLoss('categoricalCrossentropy', tf.tensor2d(oneHot), tf.softmax(z)).arraySync(),
      ];
    });
    onProbabilities.forEach((p, i) => {
      expect(onLogits[i]).toBeCloseTo(p, 5);
      expect(onSparse[i]).toBeCloseTo(p, 5);
    });
  });

  it('binary crossentropy of logits equals that of their sigmoid, and stays finite for large logits', () => {
    const z = [[3], [-2], [0.5], [-80]];
    const y = [[1], [1], [0], [1]];
    const [onLogits, onProbabilities] = tf.tidy(() => [
      perSampleLoss({ type: 'binaryCrossentropy', fromLogits: true }, tf.tensor2d(y), tf.tensor2d(z)).arraySync(),
      perSampleLoss('binaryCrossentropy', tf.tensor2d(y), tf.sigmoid(tf.tensor2d(z))).arraySync(),
    ]);
    for (let i = 0; i < 3; i++) expect(onLogits[i]).toBeCloseTo(onProbabilities[i] as number, 5);
    // σ(−80) underflows the probability form's clip (it reads −log 1e-7 ≈ 16.1); logits give 80.
    expect(onLogits[3]).toBeCloseTo(80, 4);
  });

  it('accuracy takes the argmax of logits; binaryAccuracy and a single-unit accuracy threshold logits at 0', () => {
    const sum = (metric: 'accuracy' | 'binaryAccuracy', yTrue: number[][], yPred: number[][]): number =>
      tf.tidy(
        () =>
          metricSum(metric, tf.tensor2d(yTrue), tf.tensor2d(yPred), {
            sparseLabels: false,
            fromLogits: true,
          }).dataSync()[0] ?? NaN,
      );
    expect(sum('accuracy', oneHot, logits)).toBe(2); // rows 0 and 1 right; row 2's argmax (0) is wrong
    // Logits 0.2 and −0.3 (probabilities 0.55 and 0.43): right at threshold 0, the first would be wrong at 0.5.
    expect(sum('binaryAccuracy', [[1], [0]], [[0.2], [-0.3]])).toBe(2);
    expect(sum('accuracy', [[1], [0], [1]], [[0.2], [-0.3], [-0.1]])).toBe(2);
  });

  it.each([
    {
      name: 'categoricalCrossentropy',
      probabilities: xorJob({}),
      logits: xorJob({ model: MLP('relu', 2, 'linear'), loss: { type: 'categoricalCrossentropy', fromLogits: true } }),
    },
    {
      name: 'sparseCategoricalCrossentropy',
      probabilities: xorJob({ loss: 'sparseCategoricalCrossentropy' }),
      logits: xorJob({
        model: MLP('relu', 2, 'linear'),
        loss: { type: 'sparseCategoricalCrossentropy', fromLogits: true },
      }),
    },
    {
      name: 'binaryCrossentropy',
      probabilities: xorJob({ model: MLP('relu', 1, 'sigmoid'), loss: 'binaryCrossentropy' }),
      logits: xorJob({ model: MLP('relu', 1, 'linear'), loss: { type: 'binaryCrossentropy', fromLogits: true } }),
    },
  ])(
    '$name with fromLogits trains to the parameters softmax/sigmoid + crossentropy reach, on 1 and 2 ranks',
    async (c) => {
      const [probabilities, logits] = [c.probabilities, c.logits].map((input) => resolveJob(input, c.name)) as [
        Job,
        Job,
      ];
      const dataset = loadDataset(probabilities);
      const reference = await trainWorld(probabilities, dataset, 1, 8);
      expect(relativeDistance(reference.params, reference.initial)).toBeGreaterThan(100 * TOLERANCE);
      for (const worldSize of [1, 2]) {
        const outcome = await trainWorld(logits, dataset, worldSize, 8);
        expect(outcome.initial).toEqual(reference.initial);
        expect(relativeDistance(outcome.params, reference.params)).toBeLessThanOrEqual(TOLERANCE);
        outcome.reports.forEach((r, i) => expect(Number(r.loss)).toBeCloseTo(Number(reference.reports[i]?.loss), 4));
      }
    },
  );
});
