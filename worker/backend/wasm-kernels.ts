// The wasm backend's gradient kernels that ringtrain provides itself (worker/kernels/), and their
// registration into the global tfjs kernel registry. backend.ts calls registerWasmKernels()
// before it activates wasm.
//
// Why these: tfjs-backend-wasm 4.22 registers every kernel the cpu backend has except Complex,
// ComplexAbs, Conv2DBackpropFilter, DepthwiseConv2dNative{BackpropFilter,BackpropInput}, Draw,
// Einsum, FFT/IFFT, Imag/Real, the Ragged* kernels, StaticRegexReplace and UnsortedSegmentSum.
// Of those Conv2DBackpropFilter (conv2d and conv1d) and UnsortedSegmentSum (the gradient of
// Gather, so of `embedding`) lie on the backward path of the layers a job can name, so without
// them a CNN or an embedding cannot train on wasm. (Checked for every layer type of
// shared/layer-schema.ts: the recurrent, pooling and layerNormalization backward passes use only
// kernels wasm has, and test/unit/wasm-layer-gradients.test.ts holds each to cpu.) Its MaxPoolGrad exists but routes the gradient of any
// window whose maximum is ≤ 0 wrongly (see max-pool-grad.ts), so ours replaces it. Its matmuls
// are right but 5–8× slower with a transposed operand, which every dense backward pass asks for,
// so ours wrap them and transpose first (see untransposed-matmul.ts). The other
// kernels a job's backward pass uses (Conv2DBackpropInput, activations, BatchNorm, softmax, ...)
// are wasm's own and are checked against cpu in test/unit/wasm-kernels.test.ts.
//
// Invariant: each kernel here computes what the cpu backend's kernel computes, up to float32
// rounding, and throws on what it does not implement (NCHW), so a wasm run never silently trains
// on a different gradient.
import * as tf from '@tensorflow/tfjs';
import { conv2dBackpropFilterConfig } from './kernels/conv2d-backprop-filter.js';
import { maxPoolGradConfig } from './kernels/max-pool-grad.js';
import { stockMatMulConfig, untransposedMatMulConfig } from './kernels/untransposed-matmul.js';
import { unsortedSegmentSumConfig } from './kernels/unsorted-segment-sum.js';

export interface WasmKernel {
  kernelName: string;
  /**
   * 'missing': wasm has none (a later tfjs version's own is kept); 'replaces': wasm's own is
   * wrong; 'wraps': wasm's own runs inside ours.
   */
  role: 'missing' | 'replaces' | 'wraps';
  /** The config to register; undefined for a wrapper while wasm's own is not registered. */
  config(): tf.KernelConfig | undefined;
  /** For 'wraps': wasm's own config, registered instead when speed-ups are turned off. */
  stock?(): tf.KernelConfig | undefined;
}

export const WASM_KERNELS: readonly WasmKernel[] = [
  { kernelName: tf.Conv2DBackpropFilter, role: 'missing', config: () => conv2dBackpropFilterConfig },
  { kernelName: tf.MaxPoolGrad, role: 'replaces', config: () => maxPoolGradConfig },
  { kernelName: tf.UnsortedSegmentSum, role: 'missing', config: () => unsortedSegmentSumConfig },
  {
    kernelName: tf.BatchMatMul,
    role: 'wraps',
    config: () => untransposedMatMulConfig(tf.BatchMatMul),
    stock: () => stockMatMulConfig(tf.BatchMatMul),
  },
  {
    kernelName: tf._FusedMatMul,
    role: 'wraps',
    config: () => untransposedMatMulConfig(tf._FusedMatMul),
    stock: () => stockMatMulConfig(tf._FusedMatMul),
  },
];

export interface WasmKernelOptions {
  /**
   * Register the 'wraps' kernels (pure speed-ups). false registers wasm's own instead: the
   * bench's plain model.fit baseline runs stock TensorFlow.js plus only what correctness needs.
   * @default true
   */
  speedups?: boolean;
}

/** Registers the kernels (idempotent); returns the names this call registered. */
export function registerWasmKernels(options: WasmKernelOptions = {}): string[] {
  const added: string[] = [];
  for (const kernel of WASM_KERNELS) {
    const config = kernel.role === 'wraps' && options.speedups === false ? kernel.stock?.() : kernel.config();
    if (config === undefined) continue;
    const existing = tf.getKernel(config.kernelName, config.backendName);
    if (existing?.kernelFunc === config.kernelFunc) continue;
    if (existing !== undefined) {
      if (kernel.role === 'missing') continue;
      tf.unregisterKernel(config.kernelName, config.backendName);
    }
    tf.registerKernel(config);
    added.push(config.kernelName);
  }
  return added;
}
