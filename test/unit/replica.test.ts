// The replica's contract with the trainer: flat layout, gradient of the SUM over a slice
// (additive across any split, correct by finite differences), sharding-independent dropout,
// evaluation sums, and no tensor leaks.
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_JOB, resolveJob } from '../../shared/job.js';
import type { Job, JobInput, LayerSpec, LossName } from '../../shared/job-schema.js';
import { Rng } from '../../shared/rng.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { EVAL_BATCH_SIZE, Replica } from '../../worker/replica/replica.js';

type LayerInput = Record<string, unknown> & { type: LayerSpec['type'] };

function tinyJob(loss: LossName, layers: LayerInput[], input = [3], extra: Partial<JobInput> = {}): Job {
  return resolveJob(
    { ...structuredClone(DEFAULT_JOB), model: { input, layers }, loss, metrics: [], ...extra },
    'test job',
  );
}

function replicaFor(job: Job, options: { labelScale?: number } = {}): Replica {
  return new Replica(buildModel(job), job, options);
}

function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * scale);
}

/** Labels suited to the loss: one-hot rows, class indices, 0/1, or real values. */
function labelsFor(loss: LossName, count: number, units: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  if (loss === 'sparseCategoricalCrossentropy') return Float32Array.from({ length: count }, () => rng.nextInt(units));
  if (loss === 'categoricalCrossentropy') {
    const y = new Float32Array(count * units);
    for (let i = 0; i < count; i++) y[i * units + rng.nextInt(units)] = 1;
    return y;
  }
  if (loss === 'binaryCrossentropy') return Float32Array.from({ length: count * units }, () => rng.nextInt(2));
  return randomArray(count * units, seed);
}

function ids(...values: number[]): Uint32Array {
  return Uint32Array.from(values);
}

function expectClose(actual: Float32Array, expected: Float32Array, relTol: number, absTol: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    if (Math.abs(a - e) > absTol + relTol * Math.abs(e)) expect.fail(`element ${i}: ${a} vs ${e}`);
  }
}

const DROPOUT_MLP: LayerInput[] = [
  { type: 'dense', units: 8, activation: 'tanh' },
  { type: 'dropout', rate: 0.5 },
  { type: 'dense', units: 6, activation: 'leakyRelu' },
  { type: 'dropout', rate: 0.3 },
  { type: 'dense', units: 3, activation: 'softmax' },
];

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('Replica layout', () => {
  it('counts the parameters of the default MLP and round-trips them through a flat buffer', () => {
    const job = resolveJob(structuredClone(DEFAULT_JOB), 'default job');
    const replica = replicaFor(job);
    expect(replica.paramCount).toBe(784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);
    expect(replica.nonTrainableCount).toBe(0);
    expect([replica.featureSize, replica.labelSize]).toEqual([784, 10]);
    const params = randomArray(replica.paramCount + 2, 11, 0.1);
    replica.writeParams(params);
    params.fill(0); // the variables must hold copies, not views of our buffer
    const back = new Float32Array(replica.paramCount);
    replica.readParams(back);
    expect(
      Buffer.from(back.buffer).equals(
        Buffer.from(randomArray(replica.paramCount + 2, 11, 0.1).buffer, 0, back.byteLength),
      ),
    ).toBe(true);
    // Flat order is model.trainableWeights order: the first 784·256 floats are the first kernel.
    const kernel = replica.model.layers[0]?.getWeights()[0]?.dataSync();
    expect(kernel?.subarray(0, 5)).toEqual(back.subarray(0, 5));
    replica.dispose();
  });

  it('reads and writes BatchNorm moving statistics as non-trainable state', () => {
    const job = tinyJob('meanSquaredError', [
      { type: 'dense', units: 4 },
      { type: 'batchNormalization', momentum: 0.5 },
      { type: 'dense', units: 2 },
    ]);
    const replica = replicaFor(job);
    expect(replica.nonTrainableCount).toBe(8);
    const before = new Float32Array(8);
    replica.readNonTrainable(before);
    expect([...before]).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    const grad = new Float32Array(replica.paramCount);
    replica.computeGradients(randomArray(6 * 3, 1, 3), randomArray(6 * 2, 2), 6, 0, ids(0, 1, 2, 3, 4, 5), grad);
    const after = new Float32Array(8);
    replica.readNonTrainable(after);
    expect(after).not.toEqual(before); // training moves the local moving statistics
    replica.writeNonTrainable(before);
    replica.readNonTrainable(after);
    expect(after).toEqual(before);
    replica.dispose();
  });
});

describe('Replica.computeGradients', () => {
  it.each<LossName>([
    'meanSquaredError',
    'binaryCrossentropy',
    'categoricalCrossentropy',
    'sparseCategoricalCrossentropy',
  ])('matches central finite differences of the loss sum for %s', (loss) => {
    const units = loss === 'binaryCrossentropy' ? 2 : 3;
    const last = loss === 'meanSquaredError' ? 'linear' : loss === 'binaryCrossentropy' ? 'sigmoid' : 'softmax';
    const job = tinyJob(loss, [
      { type: 'dense', units: 4, activation: 'tanh' },
      { type: 'dense', units, activation: last },
    ]);
    const replica = replicaFor(job);
    const count = 5;
    const x = randomArray(count * 3, 3);
    const y = labelsFor(loss, count, units, 4);
    const grad = new Float32Array(replica.paramCount);
    const { lossSum } = replica.computeGradients(x, y, count, 0, ids(0, 1, 2, 3, 4), grad);
    const params = new Float32Array(replica.paramCount);
    replica.readParams(params);
    expect(replica.evaluate(x, y, count, []).lossSum).toBeCloseTo(lossSum, 5);
    const h = 1e-2;
    const numeric = new Float32Array(replica.paramCount);
    for (let j = 0; j < replica.paramCount; j++) {
      const saved = params[j] as number;
      params[j] = saved + h;
      replica.writeParams(params);
      const plus = replica.evaluate(x, y, count, []).lossSum;
      params[j] = saved - h;
      replica.writeParams(params);
      const minus = replica.evaluate(x, y, count, []).lossSum;
      params[j] = saved;
      numeric[j] = (plus - minus) / (2 * h);
    }
    expectClose(grad, numeric, 1e-2, 2e-3);
    replica.dispose();
  });

  it('gives the gradient of the sum: a batch equals its two halves added, dropout included', () => {
    const replica = replicaFor(tinyJob('categoricalCrossentropy', DROPOUT_MLP));
    const count = 7;
    const x = randomArray(count * 3, 5);
    const y = labelsFor('categoricalCrossentropy', count, 3, 6);
    const sampleIds = ids(40, 3, 17, 8, 99, 23, 5);
    const whole = new Float32Array(replica.paramCount + 2);
    const total = replica.computeGradients(x, y, count, 12, sampleIds, whole);
    expect(total.count).toBe(count);
    expect(whole[replica.paramCount]).toBe(0); // the two trailing slots are the caller's

    const first = new Float32Array(replica.paramCount);
    const second = new Float32Array(replica.paramCount);
    const a = replica.computeGradients(
      x.subarray(0, 3 * 3),
      y.subarray(0, 3 * 3),
      3,
      12,
      sampleIds.subarray(0, 3),
      first,
    );
    const b = replica.computeGradients(x.subarray(3 * 3), y.subarray(3 * 3), 4, 12, sampleIds.subarray(3), second);
    expect(a.lossSum + b.lossSum).toBeCloseTo(total.lossSum, 4);
    expectClose(
      whole.subarray(0, replica.paramCount),
      first.map((v, i) => v + (second[i] as number)),
      1e-4,
      1e-6,
    );
    replica.dispose();
  });

  it('draws dropout masks from (seed, step, sampleId): same ids give the same gradient, another step another one', () => {
    const replica = replicaFor(tinyJob('categoricalCrossentropy', DROPOUT_MLP));
    const x = randomArray(3, 7);
    const y = labelsFor('categoricalCrossentropy', 1, 3, 8);
    const gradient = (step: number, sampleId: number): Float32Array => {
      const grad = new Float32Array(replica.paramCount);
      replica.computeGradients(x, y, 1, step, ids(sampleId), grad);
      return grad;
    };
    expect(gradient(4, 21)).toEqual(gradient(4, 21));
    expect(gradient(4, 21)).not.toEqual(gradient(5, 21));
    expect(gradient(4, 21)).not.toEqual(gradient(4, 22));
    // Evaluation runs without dropout, so its loss differs from the masked training loss.
    const grad = new Float32Array(replica.paramCount);
    const trained = replica.computeGradients(x, y, 1, 4, ids(21), grad).lossSum;
    expect(replica.evaluate(x, y, 1, []).lossSum).not.toBeCloseTo(trained, 6);
    replica.dispose();
  });

  it('returns zeros for an empty slice', () => {
    const replica = replicaFor(tinyJob('meanSquaredError', [{ type: 'dense', units: 2 }]));
    const grad = new Float32Array(replica.paramCount).fill(9);
    expect(replica.computeGradients(new Float32Array(0), new Float32Array(0), 0, 0, ids(), grad)).toEqual({
      lossSum: 0,
      count: 0,
    });
    expect([...grad].every((v) => v === 0)).toBe(true);
    replica.dispose();
  });

  it('rejects buffers that are too short', () => {
    const replica = replicaFor(tinyJob('meanSquaredError', [{ type: 'dense', units: 2 }]));
    const grad = new Float32Array(replica.paramCount);
    expect(() => replica.computeGradients(new Float32Array(5), new Float32Array(4), 2, 0, ids(0, 1), grad)).toThrow(
      RangeError,
    );
    expect(() =>
      replica.computeGradients(new Float32Array(6), new Float32Array(4), 2, 0, ids(0, 1), new Float32Array(1)),
    ).toThrow(RangeError);
    replica.dispose();
  });
});

describe('Replica.evaluate', () => {
  it('sums loss and metrics over internal batches exactly like over separate calls', () => {
    const job = tinyJob('sparseCategoricalCrossentropy', [{ type: 'dense', units: 4, activation: 'softmax' }]);
    const replica = replicaFor(job);
    const count = EVAL_BATCH_SIZE + 300;
    const x = randomArray(count * 3, 9);
    const y = labelsFor('sparseCategoricalCrossentropy', count, 4, 10);
    const all = replica.evaluate(x, y, count, ['accuracy', 'mse']);
    const head = replica.evaluate(x.subarray(0, 300 * 3), y.subarray(0, 300), 300, ['accuracy', 'mse']);
    const tail = replica.evaluate(x.subarray(300 * 3), y.subarray(300), count - 300, ['accuracy', 'mse']);
    expect(all.count).toBe(count);
    expect(all.lossSum).toBeCloseTo(head.lossSum + tail.lossSum, 2);
    expect(all.metricSums['accuracy']).toBe(
      (head.metricSums['accuracy'] ?? NaN) + (tail.metricSums['accuracy'] ?? NaN),
    );
    expect(all.metricSums['accuracy']).toBeGreaterThan(0);
    expect(all.metricSums['accuracy']).toBeLessThan(count);
    replica.dispose();
  });

  it('reports mae and mse in label units when given labelScale', () => {
    const job = tinyJob('meanSquaredError', [{ type: 'dense', units: 1 }]);
    const plain = replicaFor(job);
    const scaled = replicaFor(job, { labelScale: 3 });
    const x = randomArray(10 * 3, 12);
    const y = randomArray(10, 13);
    const a = plain.evaluate(x, y, 10, ['mae', 'mse']);
    const b = scaled.evaluate(x, y, 10, ['mae', 'mse']);
    expect(b.lossSum).toBeCloseTo(a.lossSum, 5);
    expect(b.metricSums['mae']).toBeCloseTo(3 * (a.metricSums['mae'] ?? NaN), 4);
    expect(b.metricSums['mse']).toBeCloseTo(9 * (a.metricSums['mse'] ?? NaN), 4);
    expect(a.metricSums['mse']).toBeCloseTo(a.lossSum, 4); // mse is the MSE loss summed
    plain.dispose();
    scaled.dispose();
  });
});

describe('Replica memory', () => {
  afterAll(async () => {
    await selectBackend('cpu');
  });

  it.each(['cpu', 'wasm'] as const)(
    'leaks no tensors across steps, write-back and evaluation (%s)',
    async (backend) => {
      await selectBackend(backend);
      const layers: LayerInput[] = [
        { type: 'dense', units: 8, activation: 'relu' },
        { type: 'batchNormalization' },
        ...DROPOUT_MLP,
      ];
      const replica = replicaFor(tinyJob('categoricalCrossentropy', layers, [3], { metrics: ['accuracy'] }));
      const x = randomArray(6 * 3, 14);
      const y = labelsFor('categoricalCrossentropy', 6, 3, 15);
      const grad = new Float32Array(replica.paramCount + 2);
      const params = new Float32Array(replica.paramCount);
      const stats = new Float32Array(replica.nonTrainableCount);
      const cycle = (step: number): void => {
        replica.computeGradients(x, y, 6, step, ids(0, 1, 2, 3, 4, 5), grad);
        replica.readParams(params);
        for (let i = 0; i < params.length; i++) params[i] = (params[i] as number) - 0.01 * (grad[i] as number);
        replica.writeParams(params);
        replica.readNonTrainable(stats);
        replica.writeNonTrainable(stats);
        replica.evaluate(x, y, 6, ['accuracy']);
      };
      cycle(0); // first call may create lazily cached tensors
      const before = tf.memory().numTensors;
      // Backend-side buffers too: a kernel's temporaries (wasm matmul transposes) are not tensors.
      const dataIdsBefore = tf.engine().backend.numDataIds();
      for (let step = 1; step <= 5; step++) cycle(step);
      expect(tf.memory().numTensors).toBe(before);
      expect(tf.engine().backend.numDataIds()).toBe(dataIdsBefore);
      replica.dispose();
    },
  );
});

describe('Replica on wasm', () => {
  afterAll(async () => {
    await selectBackend('cpu');
  });

  it('computes the same gradient on wasm as on cpu (float rounding aside)', async () => {
    const job = tinyJob('categoricalCrossentropy', DROPOUT_MLP);
    const x = randomArray(5 * 3, 16);
    const y = labelsFor('categoricalCrossentropy', 5, 3, 17);
    const gradient = (): Float32Array => {
      const replica = replicaFor(job);
      const grad = new Float32Array(replica.paramCount);
      replica.computeGradients(x, y, 5, 3, ids(0, 1, 2, 3, 4), grad);
      replica.dispose();
      return grad;
    };
    const onCpu = gradient();
    await selectBackend('wasm');
    const onWasm = gradient();
    expect(tf.getBackend()).toBe('wasm');
    expectClose(onWasm, onCpu, 1e-4, 1e-6);
  });
});
