// Every layer type of issue 12 trains on wasm with the gradient it has on cpu: a small model per
// layer, one gradient of the summed loss on each backend, every parameter compared. Plus our
// UnsortedSegmentSum kernel (the gradient of embedding's Gather) against cpu's, with repeated and
// out-of-range segment ids, and without leaking tensors.
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveJob } from '../../shared/job.js';
import type { JobInput } from '../../shared/job-schema.js';
import { Rng } from '../../shared/rng.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { Replica } from '../../worker/replica/replica.js';

type Backend = 'cpu' | 'wasm';
type Layers = NonNullable<JobInput['model']['layers']>;

const COUNT = 5;
const CLASSES = 3;

/** max |a − e| ≤ tol · max(1, max |e|). */
function expectCloseArrays(actual: Float32Array, expected: Float32Array, tol: number): void {
  expect(actual.length).toBe(expected.length);
  let scale = 1;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i] as number));
    worst = Math.max(worst, Math.abs((actual[i] as number) - (expected[i] as number)));
  }
  expect(worst).toBeLessThanOrEqual(tol * scale);
}

interface LayerCase {
  name: string;
  input: number[];
  layers: Layers;
  /** Inputs are token ids in [0, tokens) instead of standard normals. */
  tokens?: number;
}

const CASES: LayerCase[] = [
  {
    name: 'embedding',
    input: [7],
    tokens: 6,
    layers: [{ type: 'embedding', inputDim: 6, outputDim: 4 }, { type: 'flatten' }],
  },
  { name: 'lstm (last step)', input: [6, 3], layers: [{ type: 'lstm', units: 5 }] },
  {
    name: 'lstm (sequences, sigmoid gates)',
    input: [6, 3],
    layers: [{ type: 'lstm', units: 4, returnSequences: true, recurrentActivation: 'sigmoid' }, { type: 'flatten' }],
  },
  { name: 'gru', input: [6, 3], layers: [{ type: 'gru', units: 5 }] },
  {
    name: 'gru (sequences)',
    input: [5, 2],
    layers: [{ type: 'gru', units: 3, returnSequences: true }, { type: 'flatten' }],
  },
  { name: 'simpleRnn', input: [6, 3], layers: [{ type: 'simpleRnn', units: 5, activation: 'relu' }] },
  {
    name: 'conv1d',
    input: [11, 3],
    layers: [
      { type: 'conv1d', filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'leakyRelu' },
      { type: 'conv1d', filters: 2, kernelSize: 2 },
      { type: 'flatten' },
    ],
  },
  {
    name: 'averagePooling2d',
    input: [7, 6, 2],
    layers: [
      { type: 'conv2d', filters: 3, kernelSize: 2 },
      { type: 'averagePooling2d', poolSize: 2, strides: 1, padding: 'same' },
      { type: 'averagePooling2d', poolSize: [3, 2] },
      { type: 'flatten' },
    ],
  },
  {
    name: 'averagePooling1d and maxPooling1d',
    input: [9, 3],
    layers: [
      { type: 'conv1d', filters: 3, kernelSize: 2 },
      { type: 'averagePooling1d', poolSize: 2, strides: 1 },
      { type: 'maxPooling1d', poolSize: 3, padding: 'same' },
      { type: 'flatten' },
    ],
  },
  {
    name: 'globalAveragePooling1d',
    input: [8, 3],
    layers: [{ type: 'conv1d', filters: 4, kernelSize: 3 }, { type: 'globalAveragePooling1d' }],
  },
  {
    name: 'globalMaxPooling1d',
    input: [8, 3],
    layers: [{ type: 'conv1d', filters: 4, kernelSize: 3 }, { type: 'globalMaxPooling1d' }],
  },
  {
    name: 'globalAveragePooling2d',
    input: [5, 5, 2],
    layers: [{ type: 'conv2d', filters: 4, kernelSize: 2 }, { type: 'globalAveragePooling2d' }],
  },
  {
    name: 'globalMaxPooling2d',
    input: [5, 5, 2],
    layers: [{ type: 'conv2d', filters: 4, kernelSize: 2 }, { type: 'globalMaxPooling2d' }],
  },
  {
    name: 'layerNormalization',
    input: [6],
    layers: [
      { type: 'dense', units: 5, activation: 'tanh' },
      { type: 'layerNormalization', epsilon: 0.01 },
    ],
  },
  {
    name: 'layerNormalization over sequences',
    input: [4, 3],
    layers: [{ type: 'layerNormalization' }, { type: 'gru', units: 3 }],
  },
];

function inputs(c: LayerCase): Float32Array {
  const rng = new Rng(11);
  const size = COUNT * c.input.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: size }, () => (c.tokens === undefined ? rng.normal() : rng.nextInt(c.tokens)));
}

beforeAll(async () => {
  await selectBackend('wasm');
});

afterAll(async () => {
  await selectBackend('cpu');
});

describe.each(CASES)('$name', (c) => {
  it('has the same gradient on wasm as on cpu, for every parameter, leaking no tensors', async () => {
    const job = resolveJob(
      {
        seed: 9,
        data: { format: 'xor' },
        model: { input: c.input, layers: [...c.layers, { type: 'dense', units: CLASSES, activation: 'softmax' }] },
        loss: 'sparseCategoricalCrossentropy',
        optimizer: { type: 'sgd', learningRate: 0.1 },
        training: { epochs: 1, batchSize: COUNT },
      },
      `${c.name} job`,
    );
    const x = inputs(c);
    const y = Float32Array.from({ length: COUNT }, (_, i) => i % CLASSES);
    const gradients: Float32Array[] = [];
    let headParams = 0;
    for (const backend of ['wasm', 'cpu'] as Backend[]) {
      await selectBackend(backend);
      const model = buildModel(job);
      headParams = model.layers.at(-1)?.countParams() ?? 0;
      const replica = new Replica(model, job);
      const grad = new Float32Array(replica.paramCount);
      const before = tf.memory().numTensors;
      replica.computeGradients(x, y, COUNT, 1, Uint32Array.from([0, 1, 2, 3, 4]), grad);
      expect(tf.memory().numTensors).toBe(before);
      replica.dispose();
      gradients.push(grad);
    }
    const [wasm, cpu] = gradients as [Float32Array, Float32Array];
    // The layers under test get a gradient, not only the dense head after them.
    expect(cpu.subarray(0, cpu.length - headParams).some((g) => g !== 0)).toBe(true);
    expectCloseArrays(wasm, cpu, 1e-5);
  });
});

describe('UnsortedSegmentSum (ours) on wasm', () => {
  const x = Float32Array.from({ length: 7 * 3 }, (_, i) => Math.sin(i) * 10);
  const ids = Int32Array.from([2, 0, 2, 5, -1, 2, 4]);

  async function on(backend: Backend): Promise<{ values: Float32Array; shape: number[] }> {
    await selectBackend(backend);
    const before = tf.memory().numTensors;
    const out = tf.tidy(() => tf.unsortedSegmentSum(tf.tensor2d(x, [7, 3]), tf.tensor1d(ids, 'int32'), 5));
    const values = Float32Array.from(out.dataSync());
    const shape = out.shape;
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
    return { values, shape };
  }

  it('sums repeated ids, drops ids outside [0, numSegments), and equals cpu', async () => {
    const wasm = await on('wasm');
    const cpu = await on('cpu');
    expect(wasm.shape).toEqual([5, 3]);
    expect(wasm.values).toEqual(cpu.values);
    // Segment 2 = rows 0, 2 and 5; segment 1 and 3 are empty; row 3 (id 5) and row 4 (id -1) are dropped.
    for (let k = 0; k < 3; k++) {
      expect(wasm.values[2 * 3 + k]).toBeCloseTo((x[k] as number) + (x[6 + k] as number) + (x[15 + k] as number), 5);
      expect(wasm.values[1 * 3 + k]).toBe(0);
    }
  });

  it('is the gradient of gather with repeated indices, as on cpu', async () => {
    const grad = (): tf.Tensor =>
      tf.grad((p) =>
        tf.sum(tf.mul(tf.gather(p, tf.tensor1d([1, 3, 1, 1, 0], 'int32')), tf.range(1, 6).reshape([5, 1]))),
      )(tf.ones([4, 2]));
    await selectBackend('wasm');
    const wasm = tf.tidy(grad).dataSync();
    await selectBackend('cpu');
    const cpu = tf.tidy(grad).dataSync();
    expect(Array.from(wasm)).toEqual(Array.from(cpu));
    expect(Array.from(wasm)).toEqual([5, 5, 1 + 3 + 4, 1 + 3 + 4, 0, 0, 2, 2]);
  });
});
