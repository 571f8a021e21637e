// The memory estimate against the real thing: its parameter count is the built model's, its
// tensor memory is within a band of what one training step really grows the wasm heap to, and
// the check refuses a ~200M-parameter job for wasm while it accepts one just under the limit.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ModelTooLargeError } from '../../shared/errors.js';
import { DEFAULT_JOB, resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';
import { assertFitsMemory, estimateMemory, WASM_HEAP_LIMIT_BYTES } from '../../shared/memory-estimate.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { Replica } from '../../worker/replica/replica.js';

function job(input: number[], layers: Array<Record<string, unknown>>, batchSize: number, extra = {}): Job {
  return resolveJob(
    {
      ...structuredClone(DEFAULT_JOB),
      model: { input, layers },
      loss: 'categoricalCrossentropy',
      metrics: [],
      training: { epochs: 1, batchSize },
      ...extra,
    },
    'test job',
  );
}

const mlp = (units: number, batchSize: number, extra = {}): Job =>
  job(
    [784],
    [
      { type: 'dense', units, activation: 'relu' },
      { type: 'dense', units: 10, activation: 'softmax' },
    ],
    batchSize,
    extra,
  );

/** The wasm heap's size in bytes (it only grows, so after a step it bounds the step's peak). */
function wasmHeapBytes(): number {
  return (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length;
}

beforeAll(async () => {
  await selectBackend('wasm');
});

describe('estimateMemory', () => {
  it.each([
    ['mlp', mlp(64, 32)],
    [
      'conv, pooling, batch norm, leakyRelu, reshape',
      job(
        [12, 12, 1],
        [
          { type: 'conv2d', filters: 4, kernelSize: 3, activation: 'leakyRelu' },
          { type: 'maxPooling2d', poolSize: 2 },
          { type: 'conv2d', filters: 3, kernelSize: [2, 3], strides: 2, padding: 'same' },
          { type: 'batchNormalization' },
          { type: 'flatten' },
          { type: 'reshape', targetShape: [9, 3] },
          { type: 'flatten' },
          { type: 'dense', units: 5, useBias: false },
          { type: 'dropout', rate: 0.1 },
          { type: 'dense', units: 10, activation: 'softmax' },
        ],
        8,
      ),
    ],
    [
      'embedding, conv1d, recurrent layers, 1-D poolings, layerNormalization',
      job(
        [16],
        [
          { type: 'embedding', inputDim: 30, outputDim: 6 },
          { type: 'conv1d', filters: 5, kernelSize: 3, strides: 2, padding: 'same', activation: 'leakyRelu' },
          { type: 'lstm', units: 7, returnSequences: true },
          { type: 'averagePooling1d', poolSize: 2 },
          { type: 'gru', units: 4, returnSequences: true },
          { type: 'maxPooling1d', poolSize: 3, strides: 1, padding: 'same' },
          { type: 'layerNormalization' },
          { type: 'simpleRnn', units: 3, returnSequences: true },
          { type: 'globalMaxPooling1d' },
          { type: 'dense', units: 10, activation: 'softmax' },
        ],
        8,
      ),
    ],
    [
      'lstm (last step), globalAveragePooling1d',
      job(
        [9, 4],
        [
          { type: 'lstm', units: 6 },
          { type: 'reshape', targetShape: [3, 2] },
          { type: 'globalAveragePooling1d' },
          { type: 'dense', units: 10, activation: 'softmax' },
        ],
        8,
      ),
    ],
    [
      '2-D average and global poolings, layerNormalization over an inner axis',
      job(
        [10, 9, 2],
        [
          { type: 'conv2d', filters: 4, kernelSize: 3 },
          { type: 'averagePooling2d', poolSize: [2, 3], padding: 'same' },
          { type: 'layerNormalization', axis: 1 },
          { type: 'globalAveragePooling2d' },
          { type: 'reshape', targetShape: [2, 2, 1] },
          { type: 'globalMaxPooling2d' },
          { type: 'dense', units: 10, activation: 'softmax' },
        ],
        8,
      ),
    ],
  ])('%s: counts the parameters the built model has', (_, spec) => {
    const model = buildModel(spec);
    // countParams() counts BatchNorm's moving statistics too; the estimate counts what trains.
    const untrained = model.nonTrainableWeights.reduce((n, w) => n + w.read().size, 0);
    expect(estimateMemory(spec, 1).paramCount).toBe(model.countParams() - untrained);
    const replica = new Replica(model, spec);
    expect(estimateMemory(spec, 1).paramCount).toBe(replica.paramCount);
    replica.dispose();
  });

  // In ascending order of need: the heap never shrinks, so its size after each step is that
  // step's peak only when no earlier test needed more.
  it.each([
    ['activations dominate', 2_000, 1_024],
    ['parameters dominate', 8_000, 64],
  ])('%s: within 35 percent of the wasm heap one real step grows to', (_, units, batchSize) => {
    const spec = mlp(units, batchSize);
    const estimate = estimateMemory(spec, 1);
    const replica = new Replica(buildModel(spec), spec);
    const x = new Float32Array(batchSize * 784).fill(0.5);
    const y = new Float32Array(batchSize * 10);
    for (let i = 0; i < batchSize; i++) y[i * 10 + (i % 10)] = 1;
    const grad = new Float32Array(replica.paramCount + 2);
    const ids = Uint32Array.from({ length: batchSize }, (_, i) => i);
    replica.computeGradients(x, y, batchSize, 0, ids, grad);
    const params = new Float32Array(replica.paramCount);
    replica.readParams(params);
    replica.writeParams(params);
    const heapBytes = wasmHeapBytes();
    replica.dispose();
    expect(heapBytes / estimate.tensorBytes).toBeGreaterThan(0.65);
    expect(heapBytes / estimate.tensorBytes).toBeLessThan(1.35);
  });

  it('splits the batch over the fewest workers and over accumulation micro-batches', () => {
    expect(estimateMemory(mlp(64, 100), 1).samplesPerRank).toBe(100);
    expect(estimateMemory(mlp(64, 100), 3).samplesPerRank).toBe(34);
    expect(
      estimateMemory(mlp(64, 100, { training: { epochs: 1, batchSize: 100, accumulationSteps: 4 } }), 1),
    ).toMatchObject({ samplesPerRank: 25 });
    // Adam keeps two slots per parameter in host memory, plain SGD none.
    const adam = estimateMemory(mlp(64, 8, { optimizer: { type: 'adam', learningRate: 0.01 } }), 1);
    const sgd = estimateMemory(mlp(64, 8, { optimizer: { type: 'sgd', learningRate: 0.01 } }), 1);
    expect(adam.hostBytes).toBe(4 * adam.paramCount * 4);
    expect(sgd.hostBytes).toBe(2 * sgd.paramCount * 4);
  });
});

describe('assertFitsMemory', () => {
  it('refuses a ~200M-parameter model for wasm with one line naming the estimate and the limit', () => {
    const big = mlp(250_000, 32);
    let caught: unknown;
    try {
      assertFitsMemory(big, 2, 'wasm');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ModelTooLargeError);
    const error = caught as ModelTooLargeError;
    expect(error.exitCode).toBe(2);
    expect(error.limitBytes).toBe(WASM_HEAP_LIMIT_BYTES);
    expect(error.estimatedBytes).toBeGreaterThan(WASM_HEAP_LIMIT_BYTES);
    expect(error.message).not.toContain('\n');
    expect(error.message).toMatch(
      /need about 5\.\d GiB of tensor memory per worker, more than the wasm backend's 4\.0 GiB heap \(198,750,010 parameters/,
    );
    // No fixed limit on native TensorFlow or the cpu backend.
    expect(() => assertFitsMemory(big, 2, 'tensorflow')).not.toThrow();
    expect(() => assertFitsMemory(big, 2, 'cpu')).not.toThrow();
  });

  it('accepts a model just under the wasm limit', () => {
    // 153M parameters (6·P·4 bytes) and evaluation's activations: 3.97 GiB, just below 4 GiB.
    const nearLimit = mlp(192_500, 4);
    const estimate = assertFitsMemory(nearLimit, 1, 'wasm');
    expect(estimate.tensorBytes).toBeLessThanOrEqual(WASM_HEAP_LIMIT_BYTES);
    expect(estimate.tensorBytes).toBeGreaterThan(0.98 * WASM_HEAP_LIMIT_BYTES);
    expect(() => assertFitsMemory(mlp(195_000, 4), 1, 'wasm')).toThrow(ModelTooLargeError);
  });
});
