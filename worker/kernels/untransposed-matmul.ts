// BatchMatMul and _FusedMatMul for the wasm backend, wrapping tfjs-backend-wasm 4.22's own: an
// operand the caller wants transposed is transposed into a temporary first, and wasm's kernel
// then runs with both transpose flags off.
//
// Why: wasm's matmul runs XNNPACK's packed GEMM only for untransposed operands; with transposeA
// or transposeB it takes a plain loop that is 5–8× slower. Every dense layer's backward pass asks
// for exactly those (dX = dY·Wᵀ, dW = Xᵀ·dY), so on the default MLP (batch 128) the two
// transposed products of the first layer took ≈ 20 ms each, against ≈ 0.5 ms for the transpose
// plus ≈ 2.5–3.7 ms for the untransposed product (see bench/RESULTS.md).
//
// Invariant: the result is the same product, up to float32 summation order (checked against the
// cpu backend in test/unit/wasm-kernels.test.ts); the temporaries are freed before returning.
import * as tf from '@tensorflow/tfjs';
import type { KernelArgs } from './wasm-heap.js';

/** What the wrapper needs of the wasm backend: freeing a temporary. */
interface DisposingBackend {
  disposeData(dataId: tf.DataId): boolean;
}

type MatMulKernel = typeof tf.BatchMatMul | typeof tf._FusedMatMul;

/** The wrapped kernel config for `kernelName`, or undefined while wasm has not registered its own. */
export function untransposedMatMulConfig(kernelName: MatMulKernel): tf.KernelConfig | undefined {
  const original = tf.getKernel(kernelName, 'wasm');
  const transpose = tf.getKernel(tf.Transpose, 'wasm');
  if (original === undefined || transpose === undefined) return undefined;
  if (ORIGINALS.has(original.kernelFunc)) return original;
  const kernelFunc = (args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] => {
    const { inputs, attrs = {} } = args;
    const a = inputs['a'];
    const b = inputs['b'];
    if (a === undefined || b === undefined || (attrs['transposeA'] !== true && attrs['transposeB'] !== true))
      return original.kernelFunc(args);
    const temporaries: tf.TensorInfo[] = [];
    const untransposed = (info: tf.TensorInfo): tf.TensorInfo => {
      const rank = info.shape.length;
      const perm = [...Array.from({ length: rank - 2 }, (_, axis) => axis), rank - 1, rank - 2];
      const out = transpose.kernelFunc({ inputs: { x: info }, backend: args.backend, attrs: { perm } });
      temporaries.push(out as tf.TensorInfo);
      return out as tf.TensorInfo;
    };
    try {
      return original.kernelFunc({
        ...args,
        inputs: {
          ...inputs,
          a: attrs['transposeA'] === true ? untransposed(a) : a,
          b: attrs['transposeB'] === true ? untransposed(b) : b,
        },
        attrs: { ...attrs, transposeA: false, transposeB: false },
      });
    } finally {
      for (const info of temporaries) (args.backend as DisposingBackend).disposeData(info.dataId);
    }
  };
  ORIGINALS.set(kernelFunc, original);
  return { ...original, kernelFunc: kernelFunc };
}

/** wasm's own config of `kernelName`: the registered one, or the one our registered wrapper runs. */
export function stockMatMulConfig(kernelName: MatMulKernel): tf.KernelConfig | undefined {
  const registered = tf.getKernel(kernelName, 'wasm');
  return registered === undefined ? undefined : (ORIGINALS.get(registered.kernelFunc) ?? registered);
}

/** The wasm config each wrapper this module produced runs (so wrapping twice is a no-op, and unwrapping possible). */
const ORIGINALS = new WeakMap<tf.KernelFunc, tf.KernelConfig>();
