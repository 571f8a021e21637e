// MaxPoolGrad for the wasm backend, replacing tfjs-backend-wasm 4.22's own. Theirs
// (src/cc/kernels/MaxPoolGrad.cc) starts each window's running maximum at
// std::numeric_limits<float>::min(), the smallest POSITIVE float, so a window whose maximum is
// ≤ 0 sends its gradient to the wrong element (or nowhere), and ties go to the last maximum.
// That is a silently different gradient whenever max pooling sees non-positive inputs (pooling
// after a linear conv, or after BatchNorm). This kernel follows the cpu backend exactly: the
// first strict maximum in row-major window order, from −∞; a window of NaNs gets no gradient.
import * as tf from '@tensorflow/tfjs';
import { float32View, requireInput, type KernelArgs, type WasmBackendHeap } from './wasm-heap.js';

const KERNEL = tf.MaxPoolGrad;

/** dx for NHWC `x` [batch, inH, inW, C] and `dy` [batch, outH, outW, C]: each dy goes to its window's argmax. */
export function maxPoolGradNhwc(x: Float32Array, dy: Float32Array, info: tf.backend_util.Conv2DInfo): Float32Array {
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth } = info;
  const { strideHeight: sH, strideWidth: sW, filterHeight: fH, filterWidth: fW } = info;
  const { top: padTop, left: padLeft } = info.padInfo;
  const acc = new Float64Array(x.length);
  for (let b = 0; b < batchSize; b++) {
    for (let yR = 0; yR < outHeight; yR++) {
      const rowStart = Math.max(0, yR * sH - padTop);
      const rowEnd = Math.min(inHeight, yR * sH - padTop + fH);
      for (let yC = 0; yC < outWidth; yC++) {
        const colStart = Math.max(0, yC * sW - padLeft);
        const colEnd = Math.min(inWidth, yC * sW - padLeft + fW);
        const dyBase = ((b * outHeight + yR) * outWidth + yC) * channels;
        for (let d = 0; d < channels; d++) {
          const at = argmaxInWindow(x, b, d, rowStart, rowEnd, colStart, colEnd, info);
          if (at >= 0) acc[at] = (acc[at] as number) + (dy[dyBase + d] as number);
        }
      }
    }
  }
  return Float32Array.from(acc);
}

/** Flat index into x of the first strict maximum of channel d in the window, or −1. */
function argmaxInWindow(
  x: Float32Array,
  b: number,
  d: number,
  rowStart: number,
  rowEnd: number,
  colStart: number,
  colEnd: number,
  info: tf.backend_util.Conv2DInfo,
): number {
  let best = Number.NEGATIVE_INFINITY;
  let at = -1;
  for (let xR = rowStart; xR < rowEnd; xR++) {
    for (let xC = colStart; xC < colEnd; xC++) {
      const index = ((b * info.inHeight + xR) * info.inWidth + xC) * info.inChannels + d;
      const value = x[index] as number;
      if (value > best) {
        best = value;
        at = index;
      }
    }
  }
  return at;
}

function maxPoolGradKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackendHeap;
  const attrs = args.attrs as unknown as tf.MaxPoolGradAttrs;
  const input = requireInput(args, 'input', KERNEL);
  const dy = requireInput(args, 'dy', KERNEL);
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const dx = maxPoolGradNhwc(
    float32View(backend, input, KERNEL, 'input'),
    float32View(backend, dy, KERNEL, 'dy'),
    info,
  );
  return backend.makeOutput([...input.shape], 'float32', undefined, dx);
}

export const maxPoolGradConfig: tf.KernelConfig = {
  kernelName: KERNEL,
  backendName: 'wasm',
  kernelFunc: maxPoolGradKernel,
};
