// Conv2DBackpropFilter for the wasm backend (tfjs-backend-wasm 4.22 has none): the gradient of a
// 2-D convolution with respect to its filter, NHWC only, float64 accumulation as in the cpu
// backend's kernel so both round each output once.
import * as tf from '@tensorflow/tfjs';
import { float32View, requireInput, type KernelArgs, type WasmBackendHeap } from './wasm-heap.js';

const KERNEL = tf.Conv2DBackpropFilter;

/**
 * dW[wR, wC, d1, d2] = Σ_{b, yR, yC} x[b, yR·sH + wR − padTop, yC·sW + wC − padLeft, d1] · dy[b, yR, yC, d2]
 * for NHWC `x` [batch, inH, inW, inC] and `dy` [batch, outH, outW, outC]; taps that fall into the
 * padding contribute nothing. Returns the filter gradient [fH, fW, inC, outC], row-major.
 */
export function conv2dBackpropFilterNhwc(
  x: Float32Array,
  dy: Float32Array,
  info: tf.backend_util.Conv2DInfo,
): Float32Array {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { strideHeight: sH, strideWidth: sW, filterHeight: fH, filterWidth: fW } = info;
  const { top: padTop, left: padLeft } = info.padInfo;
  const acc = new Float64Array(fH * fW * inChannels * outChannels);
  for (let b = 0; b < batchSize; b++) {
    for (let yR = 0; yR < outHeight; yR++) {
      for (let wR = 0; wR < fH; wR++) {
        const xR = yR * sH + wR - padTop;
        if (xR < 0 || xR >= inHeight) continue;
        for (let yC = 0; yC < outWidth; yC++) {
          const dyBase = ((b * outHeight + yR) * outWidth + yC) * outChannels;
          for (let wC = 0; wC < fW; wC++) {
            const xC = yC * sW + wC - padLeft;
            if (xC < 0 || xC >= inWidth) continue;
            const xBase = ((b * inHeight + xR) * inWidth + xC) * inChannels;
            const tapBase = (wR * fW + wC) * inChannels * outChannels;
            accumulateOuter(acc, tapBase, x, xBase, inChannels, dy, dyBase, outChannels);
          }
        }
      }
    }
  }
  return Float32Array.from(acc);
}

/** acc[at + d1·outC + d2] += x[xBase + d1] · dy[dyBase + d2]: one rank-1 update of a filter tap. */
function accumulateOuter(
  acc: Float64Array,
  at: number,
  x: Float32Array,
  xBase: number,
  inChannels: number,
  dy: Float32Array,
  dyBase: number,
  outChannels: number,
): void {
  for (let d1 = 0; d1 < inChannels; d1++) {
    const xv = x[xBase + d1] as number;
    const row = at + d1 * outChannels;
    for (let d2 = 0; d2 < outChannels; d2++)
      acc[row + d2] = (acc[row + d2] as number) + xv * (dy[dyBase + d2] as number);
  }
}

function conv2dBackpropFilterKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackendHeap;
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  if (attrs.dataFormat !== 'NHWC')
    throw new Error(`${KERNEL} (wasm): only NHWC (channelsLast) is implemented, got ${attrs.dataFormat}`);
  const x = requireInput(args, 'x', KERNEL);
  const dy = requireInput(args, 'dy', KERNEL);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  const dW = conv2dBackpropFilterNhwc(
    float32View(backend, x, KERNEL, 'x'),
    float32View(backend, dy, KERNEL, 'dy'),
    info,
  );
  return backend.makeOutput([...info.filterShape], 'float32', undefined, dW);
}

export const conv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: KERNEL,
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilterKernel,
};
