// The slice of tfjs-backend-wasm's BackendWasm (backend_wasm.d.ts) that our TypeScript kernels
// use, typed structurally so this code does not import the optional wasm package.
import type * as tf from '@tensorflow/tfjs';

export interface WasmBackendHeap {
  /** A view of a tensor's bytes on the wasm heap; invalidated by the next heap allocation. */
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  /** Allocates an output tensor on the heap, copying `values` in when given. */
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: Float32Array): tf.TensorInfo;
  /** Drops one reference to a tensor's heap memory (frees it at zero). */
  disposeData(dataId: tf.DataId): boolean;
}

/** What tfjs passes a kernel function. */
export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: object;
  attrs?: tf.NamedAttrMap;
}

/**
 * The float32 contents of `info` as a heap view. Read every input before makeOutput: an
 * allocation may grow (and so detach) the heap.
 */
export function float32View(
  backend: WasmBackendHeap,
  info: tf.TensorInfo,
  kernel: string,
  input: string,
): Float32Array {
  if (info.dtype !== 'float32') throw new Error(`${kernel} (wasm): input ${input} must be float32, got ${info.dtype}`);
  return backend.typedArrayFromHeap(info) as Float32Array;
}

/** Input `name` of a kernel call, or an error naming the kernel. */
export function requireInput(args: KernelArgs, name: string, kernel: string): tf.TensorInfo {
  const info = args.inputs[name];
  if (info === undefined) throw new Error(`${kernel} (wasm): input ${name} is missing`);
  return info;
}
