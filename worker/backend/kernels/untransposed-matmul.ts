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
    const transposeA = attrs['transposeA'] === true;
    const transposeB = attrs['transposeB'] === true;
    if (a === undefined || b === undefined || (!transposeA && !transposeB)) return original.kernelFunc(args);
    const temporaries: tf.TensorInfo[] = [];
    /** `info` with its last two axes swapped, as a new tensor. */
    const transposed = (info: tf.TensorInfo): tf.TensorInfo => {
      const rank = info.shape.length;
      const perm = [...Array.from({ length: rank - 2 }, (_, axis) => axis), rank - 1, rank - 2];
      return transpose.kernelFunc({ inputs: { x: info }, backend: args.backend, attrs: { perm } }) as tf.TensorInfo;
    };
    const swapped = (info: tf.TensorInfo): tf.TensorInfo => {
      const out = transposed(info);
      temporaries.push(out);
      return out;
    };
    const untransposed = { ...attrs, transposeA: false, transposeB: false };
    try {
      // A plain product (no bias, no activation) may instead run as C = (op(B)ᵀ·op(A)ᵀ)ᵀ, which
      // packs op(A) rather than op(B): for dX = dY·Wᵀ that packs the batch-sized dY instead of W.
      if (kernelName === tf.BatchMatMul && swapIsCheaper(a.shape, b.shape, transposeA, transposeB)) {
        const product = original.kernelFunc({
          ...args,
          inputs: { a: transposeB ? b : swapped(b), b: transposeA ? a : swapped(a) },
          attrs: untransposed,
        }) as tf.TensorInfo;
        temporaries.push(product);
        return transposed(product);
      }
      return original.kernelFunc({
        ...args,
        inputs: { ...inputs, a: transposeA ? swapped(a) : a, b: transposeB ? swapped(b) : b },
        attrs: untransposed,
      });
    } finally {
      for (const info of temporaries) (args.backend as DisposingBackend).disposeData(info.dataId);
    }
  };
  ORIGINALS.set(kernelFunc, original);
  return { ...original, kernelFunc: kernelFunc };
}

/**
 * Whether C = op(A)·op(B) costs fewer element moves as (op(B)ᵀ·op(A)ᵀ)ᵀ. XNNPACK packs its right
 * operand on every call here (weights change every step), so the cost is the transposes each form
 * needs plus the packing of its right operand, plus, when swapped, transposing the result.
 * Only products of single matrices (no batch, or a batch of 1) take XNNPACK's path at all.
 */
export function swapIsCheaper(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): boolean {
  if (aShape.length < 2 || bShape.length < 2) return false;
  const batch = (shape: readonly number[]): number => shape.slice(0, -2).reduce((x, y) => x * y, 1);
  if (batch(aShape) !== 1 || batch(bShape) !== 1) return false;
  const [aRows, aCols] = aShape.slice(-2) as [number, number];
  const [bRows, bCols] = bShape.slice(-2) as [number, number];
  const [m, k] = transposeA ? [aCols, aRows] : [aRows, aCols];
  const n = transposeB ? bRows : bCols;
  const direct = (transposeA ? m * k : 0) + (transposeB ? k * n : 0) + k * n;
  const swapped = (transposeB ? 0 : k * n) + (transposeA ? 0 : m * k) + k * m + m * n;
  return swapped < direct;
}

/** wasm's own config of `kernelName`: the registered one, or the one our registered wrapper runs. */
export function stockMatMulConfig(kernelName: MatMulKernel): tf.KernelConfig | undefined {
  const registered = tf.getKernel(kernelName, 'wasm');
  return registered === undefined ? undefined : (ORIGINALS.get(registered.kernelFunc) ?? registered);
}

/** The wasm config each wrapper this module produced runs (so wrapping twice is a no-op, and unwrapping possible). */
const ORIGINALS = new WeakMap<tf.KernelFunc, tf.KernelConfig>();
