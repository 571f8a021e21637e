// The job's model spec → tf.Sequential: layer coverage, parameter count, seeded initialisation.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_JOB, resolveJob } from '../../shared/job.js';
import type { Job, JobInput } from '../../shared/job-schema.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { buildModel } from '../../worker/replica/model-builder.js';

function jobWith(changes: Partial<JobInput>): Job {
  return resolveJob({ ...structuredClone(DEFAULT_JOB), ...changes }, 'test job');
}

/** All weights (trainable and not) concatenated, as one Float32Array. */
function allWeights(model: tf.LayersModel): Float32Array {
  const parts = model.getWeights().map((w) => w.dataSync());
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function floats(tensor: tf.Tensor | undefined): Float32Array {
  return Float32Array.from(tensor?.dataSync() ?? []);
}

function maxAbs(values: Float32Array): number {
  return values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

function bytesEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('buildModel', () => {
  it("builds the default job's 784-256-256-10 MLP", () => {
    const model = buildModel(jobWith({}));
    expect(model.countParams()).toBe(784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);
    expect(model.layers.map((l) => l.name)).toEqual(['dense_0', 'dense_1', 'dense_2']);
    expect(model.outputs[0]?.shape).toEqual([null, 10]);
    model.dispose();
  });

  it('gives bit-identical weights for the same seed and different ones for another seed', () => {
    const a = buildModel(jobWith({ seed: 7 }));
    const b = buildModel(jobWith({ seed: 7 }));
    const c = buildModel(jobWith({ seed: 8 }));
    expect(bytesEqual(allWeights(a), allWeights(b))).toBe(true);
    expect(bytesEqual(allWeights(a), allWeights(c))).toBe(false);
    [a, b, c].forEach((m) => m.dispose());
  });

  it('initialises kernels Glorot-uniform and biases to zero', () => {
    const model = buildModel(jobWith({}));
    const [kernel, bias] = model.layers[0]?.getWeights() ?? [];
    const k = floats(kernel);
    const limit = Math.sqrt(6 / (784 + 256));
    expect(k.length).toBe(784 * 256);
    expect(maxAbs(k)).toBeLessThanOrEqual(limit);
    expect(maxAbs(k)).toBeGreaterThan(0.99 * limit);
    // Uniform on [-limit, limit]: mean 0, variance limit²/3.
    const mean = k.reduce((s, v) => s + v, 0) / k.length;
    const variance = k.reduce((s, v) => s + (v - mean) ** 2, 0) / k.length;
    expect(Math.abs(mean)).toBeLessThan(0.01 * limit);
    expect(variance / ((limit * limit) / 3)).toBeCloseTo(1, 1);
    expect([...(bias?.dataSync() ?? [1])].every((v) => v === 0)).toBe(true);
    model.dispose();
  });

  it('builds every layer type, with conv fans including the receptive field', () => {
    const job = jobWith({
      model: {
        input: [64],
        layers: [
          { type: 'normalization', mean: 0.5, std: 0.25 },
          { type: 'reshape', targetShape: [8, 8, 1] },
          { type: 'conv2d', filters: 4, kernelSize: 3, activation: 'leakyRelu', alpha: 0.1, padding: 'same' },
          { type: 'batchNormalization' },
          { type: 'maxPooling2d', poolSize: 2 },
          { type: 'flatten' },
          { type: 'dropout', rate: 0.25 },
          { type: 'dense', units: 5, activation: 'relu' },
          { type: 'activation', activation: 'tanh' },
          { type: 'dense', units: 3, activation: 'softmax' },
        ],
      },
    });
    const model = buildModel(job);
    expect(model.outputs[0]?.shape).toEqual([null, 3]);
    expect(model.layers.map((l) => l.getClassName())).toEqual([
      'Rescaling',
      'Reshape',
      'Conv2D',
      'LeakyReLU',
      'BatchNormalization',
      'MaxPooling2D',
      'Flatten',
      'Dropout',
      'Dense',
      'Activation',
      'Dense',
    ]);
    const convKernel = floats(model.layers[2]?.getWeights()[0]);
    const limit = Math.sqrt(6 / (3 * 3 * 1 + 3 * 3 * 4));
    expect(maxAbs(convKernel)).toBeLessThanOrEqual(limit);
    expect(maxAbs(convKernel)).toBeGreaterThan(0.8 * limit);
    // BatchNorm: gamma 1, beta 0 trainable; moving mean 0, moving variance 1 not trainable.
    const bn = model.layers[4]?.getWeights().map((w) => [...w.dataSync()]) ?? [];
    expect(bn).toEqual([
      [1, 1, 1, 1],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
      [1, 1, 1, 1],
    ]);
    expect(model.nonTrainableWeights.length).toBe(2);
    model.dispose();
  });

  it('applies normalization as (x - mean) / std and leakyRelu with its alpha', () => {
    const job = jobWith({
      model: {
        input: [3],
        layers: [
          { type: 'normalization', mean: 2, std: 4 },
          { type: 'activation', activation: 'leakyRelu', alpha: 0.1 },
        ],
      },
      loss: 'meanSquaredError',
      metrics: [],
    });
    const model = buildModel(job);
    const out = tf.tidy(() => (model.predict(tf.tensor2d([[-2, 2, 10]])) as tf.Tensor).dataSync());
    expect([...out].map((v) => Number(v.toFixed(6)))).toEqual([-0.1, 0, 2]);
    model.dispose();
  });
});
