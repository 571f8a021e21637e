// UnsortedSegmentSum for the wasm backend, which tfjs-backend-wasm 4.22 lacks. It is the gradient
// of Gather (tf.gather's backward pass sums the upstream rows of every repeated index), so
// without it an `embedding` layer cannot train on wasm.
//
// Semantics (as the cpu backend): for x of shape [...segmentIds.shape, ...inner] and int32
// segmentIds, out[s, ...inner] = Σ x[j, ...inner] over every j with segmentIds[j] = s; ids outside
// [0, numSegments) contribute nothing. Sums run in float64 in ascending j, as the cpu backend's
// masked sum does, so both round to the same float32.
import * as tf from '@tensorflow/tfjs';
import { float32View, requireInput, type KernelArgs, type WasmBackendHeap } from './wasm-heap.js';

const KERNEL = tf.UnsortedSegmentSum;

/** out [numSegments, inner] from x [ids.length, inner] rows and their segment ids. */
export function unsortedSegmentSum(x: Float32Array, ids: Int32Array, numSegments: number): Float32Array {
  const inner = ids.length === 0 ? 0 : x.length / ids.length;
  const acc = new Float64Array(numSegments * inner);
  for (let j = 0; j < ids.length; j++) {
    const segment = ids[j] as number;
    if (segment < 0 || segment >= numSegments) continue;
    const from = j * inner;
    const to = segment * inner;
    for (let k = 0; k < inner; k++) acc[to + k] = (acc[to + k] as number) + (x[from + k] as number);
  }
  return Float32Array.from(acc);
}

function unsortedSegmentSumKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackendHeap;
  const { numSegments } = args.attrs as unknown as tf.UnsortedSegmentSumAttrs;
  const x = requireInput(args, 'x', KERNEL);
  const segmentIds = requireInput(args, 'segmentIds', KERNEL);
  if (segmentIds.dtype !== 'int32')
    throw new Error(`${KERNEL} (wasm): segmentIds must be int32, got ${segmentIds.dtype}`);
  const idShape = segmentIds.shape;
  if (idShape.some((d, i) => x.shape[i] !== d))
    throw new Error(
      `${KERNEL} (wasm): segmentIds shape [${idShape.join(', ')}] is not a prefix of x's [${x.shape.join(', ')}]`,
    );
  const ids = backend.typedArrayFromHeap(segmentIds) as Int32Array;
  const out = unsortedSegmentSum(float32View(backend, x, KERNEL, 'x'), ids, numSegments);
  return backend.makeOutput([numSegments, ...x.shape.slice(idShape.length)], 'float32', undefined, out);
}

export const unsortedSegmentSumConfig: tf.KernelConfig = {
  kernelName: KERNEL,
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSumKernel,
};
