// The wasm backend's convolution/pooling gradient kernels (ours: Conv2DBackpropFilter and
// MaxPoolGrad; its own: Conv2DBackpropInput) against the pure-JS cpu backend, and whole models'
// gradients on wasm against cpu: a CNN (batchNormalization, conv2d, maxPooling2d after a linear
// conv, dropout, dense) and an MLP with every activation under every loss.
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveJob } from '../../shared/job.js';
import { Rng } from '../../shared/rng.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { conv2dBackpropFilterWasm } from '../../worker/backend/kernels/conv2d-backprop-filter.js';
import { Replica } from '../../worker/replica/replica.js';
import { swapIsCheaper } from '../../worker/backend/kernels/untransposed-matmul.js';
import { registerWasmKernels, WASM_KERNELS } from '../../worker/backend/wasm-kernels.js';

type Shape4 = [number, number, number, number];
type Backend = 'cpu' | 'wasm';

function randomArray(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Runs `compute` on `backend` and returns its output values (the backend is switched first). */
async function on(backend: Backend, compute: () => tf.Tensor): Promise<Float32Array> {
  await selectBackend(backend);
  const out = tf.tidy(compute);
  const values = out.dataSync() as Float32Array;
  out.dispose();
  return values;
}

/** max |a − e| ≤ tol · max(1, max |e|): float32 rounding of sums of a few hundred products. */
function expectCloseArrays(actual: Float32Array, expected: Float32Array, tol = 1e-5): void {
  expect(actual.length).toBe(expected.length);
  let scale = 1;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i] as number));
    worst = Math.max(worst, Math.abs((actual[i] as number) - (expected[i] as number)));
  }
  expect(worst).toBeLessThanOrEqual(tol * scale);
}

interface ConvCase {
  name: string;
  x: Shape4;
  filter: Shape4;
  strides: number | [number, number];
  pad: 'same' | 'valid';
}

const CONV_CASES: ConvCase[] = [
  { name: '3×3 valid, stride 1, batch 1', x: [1, 7, 7, 1], filter: [3, 3, 1, 4], strides: 1, pad: 'valid' },
  { name: '3×3 same, stride 1, batch 3', x: [3, 8, 8, 2], filter: [3, 3, 2, 5], strides: 1, pad: 'same' },
  { name: '3×3 valid, stride 2, odd size', x: [2, 9, 8, 3], filter: [3, 3, 3, 4], strides: 2, pad: 'valid' },
  { name: '5×5 same, stride 2', x: [2, 10, 11, 3], filter: [5, 5, 3, 2], strides: 2, pad: 'same' },
  { name: '2×3 same, strides [1, 2]', x: [4, 6, 7, 2], filter: [2, 3, 2, 3], strides: [1, 2], pad: 'same' },
  { name: '1×1 valid, stride 3', x: [2, 7, 7, 4], filter: [1, 1, 4, 6], strides: 3, pad: 'valid' },
];

beforeAll(async () => {
  await selectBackend('wasm');
});

afterAll(async () => {
  await selectBackend('cpu');
});

describe('registerWasmKernels', () => {
  it('has registered ours for wasm (replacing MaxPoolGrad, wrapping the matmuls), and registering again is a no-op', () => {
    expect(WASM_KERNELS.map((k) => k.kernelName)).toEqual([
      tf.Conv2DBackpropFilter,
      tf.MaxPoolGrad,
      tf.UnsortedSegmentSum,
      tf.BatchMatMul,
      tf._FusedMatMul,
    ]);
    for (const kernel of WASM_KERNELS)
      expect(tf.getKernel(kernel.kernelName, 'wasm')?.kernelFunc).toBe(kernel.config()?.kernelFunc);
    expect(registerWasmKernels()).toEqual([]);
  });

  it("speedups: false puts wasm's own matmuls back (the stock baseline), and the default wraps them again", () => {
    const wrapped = tf.getKernel(tf.BatchMatMul, 'wasm')?.kernelFunc;
    expect(registerWasmKernels({ speedups: false })).toEqual([tf.BatchMatMul, tf._FusedMatMul]);
    const stock = tf.getKernel(tf.BatchMatMul, 'wasm')?.kernelFunc;
    expect(stock).not.toBe(wrapped);
    expect(tf.getKernel(tf.MaxPoolGrad, 'wasm')?.kernelFunc).toBe(WASM_KERNELS[1]?.config()?.kernelFunc);
    expect(registerWasmKernels()).toEqual([tf.BatchMatMul, tf._FusedMatMul]);
    expect(tf.getKernel(tf.BatchMatMul, 'wasm')?.kernelFunc).not.toBe(stock);
    expect(registerWasmKernels()).toEqual([]);
  });

  it('refuses NCHW rather than computing something else', async () => {
    await selectBackend('wasm');
    const x = tf.zeros([1, 2, 5, 5]);
    const dy = tf.zeros([1, 3, 3, 3]);
    const attrs = { strides: 1, pad: 'valid', dataFormat: 'NCHW', filterShape: [3, 3, 2, 3] };
    expect(() => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, attrs)).toThrow(/only NHWC/);
    tf.dispose([x, dy]);
  });
});

describe('matmuls with transposed operands on wasm', () => {
  const CASES: { a: number[]; b: number[]; transposeA: boolean; transposeB: boolean }[] = [
    { a: [7, 5], b: [7, 3], transposeA: true, transposeB: false },
    { a: [4, 6], b: [9, 6], transposeA: false, transposeB: true },
    { a: [6, 4], b: [9, 6], transposeA: true, transposeB: true },
    { a: [3, 5, 4], b: [3, 6, 5], transposeA: true, transposeB: true },
    { a: [1, 128, 10], b: [1, 256, 10], transposeA: false, transposeB: true },
    { a: [2, 8, 3], b: [1, 8, 5], transposeA: true, transposeB: false },
    // Swapped (see below): a batch-1 left operand against a rank-2 right one, and a wide dX.
    { a: [1, 16, 8], b: [40, 8], transposeA: false, transposeB: true },
    { a: [16, 12], b: [50, 12], transposeA: false, transposeB: true },
  ];

  it.each(CASES)('matMul $a × $b (transposeA $transposeA, transposeB $transposeB) matches cpu', async (c) => {
    const product = (): tf.Tensor =>
      tf.matMul(
        tf.tensor(randomArray(size(c.a), 4), c.a),
        tf.tensor(randomArray(size(c.b), 5), c.b),
        c.transposeA,
        c.transposeB,
      );
    expectCloseArrays(await on('wasm', product), await on('cpu', product));
  });

  it('packs the smaller operand: dX = dY·Wᵀ runs swapped, dW = Xᵀ·dY and the forward run directly', () => {
    // A dense layer 784 -> 256 at batch 128: X [128,784], W [784,256], dY [128,256].
    expect(swapIsCheaper([128, 256], [784, 256], false, true)).toBe(true);
    expect(swapIsCheaper([128, 784], [128, 256], true, false)).toBe(false);
    expect(swapIsCheaper([128, 784], [784, 256], false, false)).toBe(false);
    // Batched products never reach XNNPACK, so there is nothing to save.
    expect(swapIsCheaper([3, 5, 4], [3, 6, 5], true, true)).toBe(false);
    expect(swapIsCheaper([1, 128, 256], [784, 256], false, true)).toBe(true);
  });

  it('a swapped product frees its temporaries too', async () => {
    await selectBackend('wasm');
    const backend = tf.engine().backend;
    const before = backend.numDataIds();
    const a = tf.tensor(randomArray(16 * 12, 9), [16, 12]);
    const b = tf.tensor(randomArray(50 * 12, 10), [50, 12]);
    expect(swapIsCheaper(a.shape, b.shape, false, true)).toBe(true);
    const product = tf.matMul(a, b, false, true);
    expect(product.shape).toEqual([16, 50]);
    tf.dispose([a, b, product]);
    expect(backend.numDataIds()).toBe(before);
  });

  it('fused matmul with bias and relu matches cpu, and frees its temporaries', async () => {
    const fused = (): tf.Tensor =>
      tf.fused.matMul({
        a: tf.tensor(randomArray(40, 6), [8, 5]),
        b: tf.tensor(randomArray(30, 7), [6, 5]),
        transposeB: true,
        bias: tf.tensor(randomArray(8, 8).subarray(0, 6), [6]),
        activation: 'relu',
      });
    const expected = await on('cpu', fused);
    await selectBackend('wasm');
    const backend = tf.engine().backend;
    const before = backend.numDataIds();
    const actual = await on('wasm', fused);
    expect(backend.numDataIds()).toBe(before);
    expectCloseArrays(actual, expected);
  });
});

describe.each(CONV_CASES)(
  'conv2d gradients on wasm match cpu: $name',
  ({ x: xShape, filter: fShape, strides, pad }) => {
    const xValues = randomArray(size(xShape), 1);
    const fValues = randomArray(size(fShape), 2);
    const conv = (x: tf.Tensor4D, f: tf.Tensor4D): tf.Tensor4D => tf.conv2d(x, f, strides, pad);

    /** Upstream gradient of the same shape as the forward output, fixed values. */
    function dyFor(): tf.Tensor4D {
      const outShape = conv(tf.zeros(xShape), tf.zeros(fShape)).shape;
      return tf.tensor4d(randomArray(size(outShape), 3), outShape);
    }

    it('Conv2DBackpropFilter (ours)', async () => {
      const dW = (): tf.Tensor =>
        tf.grad((f) => conv(tf.tensor4d(xValues, xShape), f as tf.Tensor4D))(tf.tensor4d(fValues, fShape), dyFor());
      const [wasm, cpu] = [await on('wasm', dW), await on('cpu', dW)];
      expect(tf.util.sizeFromShape(fShape)).toBe(cpu.length);
      expectCloseArrays(wasm, cpu);
    });

    it('Conv2DBackpropFilter (ours), one sample per chunk', async () => {
      const dW = async (): Promise<Float32Array> => {
        await selectBackend('wasm');
        const [x, dy] = tf.tidy(() => [tf.tensor4d(xValues, xShape), dyFor()]);
        const attrs = { strides, pad, dataFormat: 'NHWC', filterShape: fShape };
        const out = tf
          .engine()
          .makeTensorFromTensorInfo(conv2dBackpropFilterWasm({ inputs: { x, dy }, backend: tf.backend(), attrs }, 1));
        const values = out.dataSync() as Float32Array;
        tf.dispose([x, dy, out]);
        return values;
      };
      const cpu = await on('cpu', () =>
        tf.grad((f) => conv(tf.tensor4d(xValues, xShape), f as tf.Tensor4D))(tf.tensor4d(fValues, fShape), dyFor()),
      );
      const before = tf.memory().numTensors;
      expectCloseArrays(await dW(), cpu);
      expect(tf.memory().numTensors).toBe(before);
    });

    it('Conv2DBackpropInput (tfjs-backend-wasm)', async () => {
      const dx = (): tf.Tensor =>
        tf.grad((x) => conv(x as tf.Tensor4D, tf.tensor4d(fValues, fShape)))(tf.tensor4d(xValues, xShape), dyFor());
      expectCloseArrays(await on('wasm', dx), await on('cpu', dx));
    });
  },
);

describe.each([
  { x: [2, 8, 8, 3] as Shape4, pool: 2, strides: 2, pad: 'valid' as const },
  { x: [3, 7, 9, 2] as Shape4, pool: 3, strides: 2, pad: 'same' as const },
  { x: [1, 6, 6, 4] as Shape4, pool: 2, strides: 1, pad: 'valid' as const },
  {
    x: [2, 5, 7, 1] as Shape4,
    pool: [2, 3] as [number, number],
    strides: [1, 2] as [number, number],
    pad: 'same' as const,
  },
])('MaxPoolGrad (ours) on wasm matches cpu: pool $pool, stride $strides, $pad', ({ x: xShape, pool, strides, pad }) => {
  // Standard-normal inputs: about a sixteenth of 2×2 windows have a negative maximum, which
  // tfjs-backend-wasm 4.22's own MaxPoolGrad routes wrongly.
  it('routes the gradient to the same maxima, negative windows and padding included', async () => {
    const xValues = randomArray(size(xShape), 4);
    const dx = (): tf.Tensor => {
      const x = tf.tensor4d(xValues, xShape);
      const outShape = tf.maxPool(x, pool, strides, pad).shape;
      const dy = tf.tensor4d(randomArray(size(outShape), 5), outShape);
      return tf.grad((input) => tf.maxPool(input as tf.Tensor4D, pool, strides, pad))(x, dy);
    };
    expectCloseArrays(await on('wasm', dx), await on('cpu', dx), 0);
  });
});

describe('a CNN trains on wasm with the gradient it has on cpu', () => {
  const job = resolveJob(
    {
      seed: 3,
      data: { format: 'mnist', limit: 100 },
      model: {
        input: [10, 10, 1],
        layers: [
          { type: 'batchNormalization' },
          { type: 'conv2d', filters: 4, kernelSize: 3, padding: 'same', activation: 'linear' },
          { type: 'maxPooling2d', poolSize: 2 },
          { type: 'activation', activation: 'tanh' },
          { type: 'conv2d', filters: 6, kernelSize: 3, strides: 2, activation: 'leakyRelu' },
          { type: 'dropout', rate: 0.3 },
          { type: 'flatten' },
          { type: 'dense', units: 3, activation: 'softmax' },
        ],
      },
      loss: 'categoricalCrossentropy',
      optimizer: { type: 'sgd', learningRate: 0.1 },
      training: { epochs: 1, batchSize: 5 },
    },
    'cnn test job',
  );
  const count = 5;
  const x = randomArray(count * 100, 6);
  const y = new Float32Array(count * 3).map((_, i) => (i % 3 === Math.floor(i / 3) % 3 ? 1 : 0));
  const sampleIds = Uint32Array.from([4, 8, 15, 16, 23]);

  async function gradientOn(backend: Backend): Promise<{ grad: Float32Array; lossSum: number }> {
    await selectBackend(backend);
    const replica = new Replica(buildModel(job), job);
    const grad = new Float32Array(replica.paramCount);
    const before = tf.memory().numTensors;
    const { lossSum } = replica.computeGradients(x, y, count, 2, sampleIds, grad);
    expect(tf.memory().numTensors).toBe(before);
    replica.dispose();
    return { grad, lossSum };
  }

  it('matches cpu for every parameter, conv kernels included', async () => {
    const wasm = await gradientOn('wasm');
    const cpu = await gradientOn('cpu');
    expect(wasm.lossSum).toBeCloseTo(cpu.lossSum, 4);
    expect(cpu.grad.some((g) => g !== 0)).toBe(true);
    expectCloseArrays(wasm.grad, cpu.grad, 1e-4);
  });
});

describe.each([
  { loss: 'meanSquaredError' as const, last: 'linear' as const, units: 3 },
  { loss: 'binaryCrossentropy' as const, last: 'sigmoid' as const, units: 1 },
  { loss: 'categoricalCrossentropy' as const, last: 'softmax' as const, units: 3 },
  { loss: 'sparseCategoricalCrossentropy' as const, last: 'softmax' as const, units: 3 },
])('an MLP with every activation under $loss', ({ loss, last, units }) => {
  it('has the same gradient on wasm as on cpu', async () => {
    const job = resolveJob(
      {
        seed: 5,
        data: { format: 'xor' },
        model: {
          input: [4],
          layers: [
            { type: 'normalization', mean: 0.5, std: 2 },
            { type: 'dense', units: 6, activation: 'relu' },
            { type: 'dense', units: 6, activation: 'leakyRelu', alpha: 0.1 },
            { type: 'batchNormalization' },
            { type: 'dense', units: 5, activation: 'tanh' },
            { type: 'dropout', rate: 0.5 },
            { type: 'dense', units: 5, activation: 'sigmoid' },
            { type: 'dense', units, activation: last },
          ],
        },
        loss,
        optimizer: { type: 'sgd', learningRate: 0.1 },
        training: { epochs: 1, batchSize: 6 },
      },
      'mlp test job',
    );
    const count = 6;
    const x = randomArray(count * 4, 7);
    const labelSize = loss === 'categoricalCrossentropy' || loss === 'meanSquaredError' ? units : 1;
    const y = Float32Array.from({ length: count * labelSize }, (_, i) =>
      loss === 'meanSquaredError'
        ? Math.sin(i)
        : loss === 'categoricalCrossentropy'
          ? Number(i % units === Math.floor(i / units) % units)
          : i % (loss === 'binaryCrossentropy' ? 2 : units),
    );
    const gradients: Float32Array[] = [];
    for (const backend of ['wasm', 'cpu'] as const) {
      await selectBackend(backend);
      const replica = new Replica(buildModel(job), job);
      const grad = new Float32Array(replica.paramCount);
      replica.computeGradients(x, y, count, 1, Uint32Array.from([0, 1, 2, 3, 4, 5]), grad);
      replica.dispose();
      gradients.push(grad);
    }
    expectCloseArrays(gradients[0] as Float32Array, gradients[1] as Float32Array, 1e-4);
  });
});
