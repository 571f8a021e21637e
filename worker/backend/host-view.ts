// Reading a float32 tensor back to the host without an extra copy where the backend allows it.
// dataSync() on wasm returns a fresh copy of the tensor's heap bytes — for the flat gradient that
// is 1 MB of garbage per step, which is most of what grows a worker's memory between collections.
// On wasm the view below reads the heap in place; callers copy out what they keep at once.
import * as tf from '@tensorflow/tfjs';
import type { WasmBackendHeap } from './kernels/wasm-heap.js';

/**
 * The values of float32 `tensor`: a view of the wasm heap (valid only until the next TensorFlow
 * call, which may grow and so detach the heap) or, on other backends, dataSync()'s array.
 */
export function hostView(tensor: tf.Tensor): Float32Array {
  if (tensor.dtype !== 'float32') throw new TypeError(`hostView: tensor is ${tensor.dtype}, not float32`);
  const backend = tf.engine().backend as Partial<WasmBackendHeap>;
  if (tf.getBackend() === 'wasm' && typeof backend.typedArrayFromHeap === 'function')
    return backend.typedArrayFromHeap(tensor) as Float32Array;
  return tensor.dataSync() as Float32Array;
}
