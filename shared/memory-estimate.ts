// What one worker's training step needs in memory, estimated from the job alone (no TensorFlow),
// so a model and batch that cannot fit the backend are refused before any worker starts instead
// of crashing every worker at step 0 with "memory access out of bounds".
//
// The formula, in float32 (4 bytes) units, for P trainable parameters and n samples per rank:
//
//   tensor memory (the backend's heap) = 6·P + n·(2·I + 8·Σ L)
//     6·P   the weights, their gradients and the flat gradient copy (3·P live at the peak of a
//           step, measured with tf.memory), plus transient copies and heap fragmentation that
//           grow the wasm heap by about 3·P more (measured: the heap after one step of a
//           79.5M-parameter model is 1.89 GB, 6.0·P);
//     I     floats per input sample: the input batch and its transposed copy for the gradient;
//     L     each layer's output floats per sample, about 8 tensors of it alive at the peak
//           (forward outputs kept for the backward pass, pre-activations, their gradients);
//           flatten and reshape share their input's memory and count 0.
//   host memory (JavaScript arrays) = P·(2 + optimizer slots + 1 with gradient accumulation)
//           flat parameters and the all-reduce buffer, plus Adam's 2 slots or momentum's 1.
//
// n is the largest slice a rank can get: the global batch split over the fewest workers the job
// may run with (workers.min), divided into accumulationSteps micro-batches; evaluation's forward
// passes (EVAL_BATCH_SIZE rows, no backward) count when they need more.
import { ModelTooLargeError } from './errors.js';
import type { Job, LayerSpec } from './job-schema.js';
import { isGraph } from './model-graph.js';

/** Rows per evaluation forward pass (worker/replica/replica.ts EVAL_BATCH_SIZE). */
const EVAL_ROWS = 256;
/** Tensors of a layer's output size alive at the peak of a training step / a forward pass. */
const TRAIN_COPIES = 8;
const EVAL_COPIES = 3;
const BYTES = 4;

/** The wasm backend's whole heap: 32-bit WebAssembly memory (measured: allocation fails at 4 GiB). */
export const WASM_HEAP_LIMIT_BYTES = 4 * 2 ** 30;

export interface MemoryEstimate {
  paramCount: number;
  /** Samples in the largest forward/backward pass one rank runs. */
  samplesPerRank: number;
  /** 6·P·4: weights, gradients, copies and fragmentation on the backend's heap. */
  parameterBytes: number;
  /** Activations of the largest pass (training step or evaluation). */
  activationBytes: number;
  /** Which pass that is: "16 training samples per rank", "256 evaluation rows". */
  largestPass: string;
  /** What the backend's heap must hold: parameterBytes + activationBytes. */
  tensorBytes: number;
  /** Flat parameters, all-reduce buffer and optimizer state, in JavaScript memory. */
  hostBytes: number;
}

/** A built model's size, from the coordinator's probe (coordinator/model-probe.ts). */
export interface ModelShape {
  paramCount: number;
  /** Σ of every layer's output floats per sample (flatten and reshape count 0). */
  layerOutputs: number;
}

/** `probe` sizes a model the YAML walk cannot (from, module, a graph); a YAML stack is walked. */
export function estimateMemory(job: Job, minWorkers: number, probe?: ModelShape): MemoryEstimate {
  const layers = job.model.layers;
  const stack = layers !== undefined && !isGraph(layers) ? layers : undefined;
  if (stack === undefined && probe === undefined)
    throw new TypeError('estimateMemory: a model without a plain layers stack needs the probe');
  const { paramCount, layerOutputs } = stack === undefined ? (probe as ModelShape) : walkLayers(job.model.input, stack);
  const input = product(job.model.input);
  const perRank = Math.ceil(job.training.batchSize / Math.max(1, minWorkers));
  const samplesPerRank = Math.ceil(perRank / job.training.accumulationSteps);
  const trainFloats = samplesPerRank * (2 * input + TRAIN_COPIES * layerOutputs);
  const evalFloats = EVAL_ROWS * (input + EVAL_COPIES * layerOutputs);
  const parameterBytes = 6 * paramCount * BYTES;
  const activationBytes = Math.max(trainFloats, evalFloats) * BYTES;
  const slots = optimizerSlots(job) + (job.training.accumulationSteps > 1 ? 1 : 0);
  return {
    paramCount,
    samplesPerRank,
    parameterBytes,
    activationBytes,
    largestPass:
      trainFloats >= evalFloats ? `${samplesPerRank} training samples per rank` : `${EVAL_ROWS} evaluation rows`,
    tensorBytes: parameterBytes + activationBytes,
    hostBytes: paramCount * (2 + slots) * BYTES,
  };
}

/** The fixed limit on tensor memory of `backend`, where it has one (wasm); undefined otherwise. */
export function tensorLimitBytes(backend: 'wasm' | 'tensorflow' | 'cpu'): number | undefined {
  return backend === 'wasm' ? WASM_HEAP_LIMIT_BYTES : undefined;
}

/**
 * Throws ModelTooLargeError (one line naming the estimate, its parts and the limit) when the
 * job's step cannot fit `backend`'s fixed tensor memory on the fewest workers it may run with.
 */
export function assertFitsMemory(
  job: Job,
  minWorkers: number,
  backend: 'wasm' | 'tensorflow' | 'cpu',
  probe?: ModelShape,
): MemoryEstimate {
  const estimate = estimateMemory(job, minWorkers, probe);
  const limit = tensorLimitBytes(backend);
  if (limit === undefined || estimate.tensorBytes <= limit) return estimate;
  throw new ModelTooLargeError(
    estimate.tensorBytes,
    limit,
    `the model and batch need about ${formatBytes(estimate.tensorBytes)} of tensor memory per worker, more than the ${backend} backend's ${formatBytes(limit)} heap (${estimate.paramCount.toLocaleString('en-US')} parameters: ${formatBytes(estimate.parameterBytes)} for weights, gradients and their copies; activations of ${estimate.largestPass}: ${formatBytes(estimate.activationBytes)}); use a smaller model, a smaller training.batchSize or more workers, or backend: tensorflow`,
  );
}

/** "3.2 GiB", "740 MiB". */
export function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.ceil(bytes / 2 ** 20)} MiB`;
}

function optimizerSlots(job: Job): number {
  const optimizer = job.optimizer;
  if (optimizer.type === 'adam') return 2;
  if (optimizer.type === 'sgd') return optimizer.momentum > 0 ? 1 : 0;
  return 1;
}

/** Trainable parameters and the sum of every layer's output floats per sample. */
function walkLayers(
  input: readonly number[],
  layers: readonly LayerSpec[],
): { paramCount: number; layerOutputs: number } {
  let shape = [...input];
  let paramCount = 0;
  let layerOutputs = 0;
  for (const layer of layers) {
    const next = layerShape(layer, shape);
    paramCount += next.params;
    // leakyRelu runs as a layer of its own after dense/conv2d.
    const outputs = 'activation' in layer && layer.activation === 'leakyRelu' ? 2 : 1;
    if (layer.type !== 'flatten' && layer.type !== 'reshape') layerOutputs += outputs * product(next.shape);
    layerOutputs += next.work ?? 0;
    shape = next.shape;
  }
  return { paramCount, layerOutputs };
}

function layerShape(layer: LayerSpec, shape: number[]): { shape: number[]; params: number; work?: number } {
  const last = shape[shape.length - 1] ?? 1;
  switch (layer.type) {
    case 'dense':
      return {
        shape: [...shape.slice(0, -1), layer.units],
        params: last * layer.units + (layer.useBias ? layer.units : 0),
      };
    case 'conv2d': {
      const [kh, kw] = pair(layer.kernelSize);
      const [h, w] = spatial(shape, [kh, kw], pair(layer.strides), layer.padding);
      return { shape: [h, w, layer.filters], params: kh * kw * last * layer.filters + layer.filters };
    }
    case 'maxPooling2d': {
      const pool = pair(layer.poolSize);
      const [h, w] = spatial(shape, pool, pair(layer.strides ?? layer.poolSize), layer.padding);
      return { shape: [h, w, last], params: 0 };
    }
    case 'batchNormalization':
      return { shape, params: 2 * last }; // gamma and beta; the moving statistics are not trained
    case 'flatten':
      return { shape: [product(shape)], params: 0 };
    case 'reshape':
      return { shape: [...layer.targetShape], params: 0 };
    case 'dropout':
    case 'activation':
    case 'normalization':
      return { shape, params: 0 };
    case 'add':
    case 'concatenate':
      // Graph models are estimated from the coordinator's probe (estimateMemory's `probe`), never walked.
      return { shape, params: 0 };
    default:
      return sequenceLayerShape(layer, shape, last);
  }
}

/** Gate blocks per recurrent cell: each has a kernel, a recurrent kernel and a bias (tfjs GRU has no reset_after). */
const GATES = { lstm: 4, gru: 3, simpleRnn: 1 } as const;

/** The sequence and normalization layers of issue 12 (shapes exclude the batch dimension). */
function sequenceLayerShape(
  layer: Exclude<
    LayerSpec,
    {
      type:
        | 'dense'
        | 'conv2d'
        | 'maxPooling2d'
        | 'batchNormalization'
        | 'flatten'
        | 'reshape'
        | 'dropout'
        | 'activation'
        | 'normalization'
        | 'add'
        | 'concatenate';
    }
  >,
  shape: number[],
  last: number,
): { shape: number[]; params: number; work?: number } {
  switch (layer.type) {
    case 'embedding':
      return { shape: [...shape, layer.outputDim], params: layer.inputDim * layer.outputDim };
    case 'lstm':
    case 'gru':
    case 'simpleRnn': {
      const units = layer.units;
      const steps = shape[0] ?? 1;
      const gates = GATES[layer.type];
      return {
        shape: layer.returnSequences ? [steps, units] : [units],
        params: gates * (last * units + units * units + units),
        // Every step's gate pre-activations are kept for the backward pass.
        work: steps * gates * units,
      };
    }
    case 'conv1d': {
      const [length] = spatial([shape[0] ?? 1, 1], [layer.kernelSize, 1], [layer.strides, 1], layer.padding);
      return { shape: [length, layer.filters], params: layer.kernelSize * last * layer.filters + layer.filters };
    }
    case 'averagePooling2d': {
      const pool = pair(layer.poolSize);
      const [h, w] = spatial(shape, pool, pair(layer.strides ?? layer.poolSize), layer.padding);
      return { shape: [h, w, last], params: 0 };
    }
    case 'averagePooling1d':
    case 'maxPooling1d': {
      const [length] = spatial(
        [shape[0] ?? 1, 1],
        [layer.poolSize, 1],
        [layer.strides ?? layer.poolSize, 1],
        layer.padding,
      );
      return { shape: [length, last], params: 0 };
    }
    case 'globalAveragePooling1d':
    case 'globalAveragePooling2d':
    case 'globalMaxPooling1d':
    case 'globalMaxPooling2d':
      return { shape: [last], params: 0 };
    case 'layerNormalization': {
      // tfjs counts the axis with the batch dimension: -1 is the last feature axis, 1 the first.
      const size = shape[layer.axis < 0 ? shape.length + layer.axis : layer.axis - 1] ?? 1;
      return { shape, params: 2 * size }; // gamma and beta
    }
  }
}

/** Output height and width of a 2-D window over [h, w, c] (tfjs conv/pool arithmetic). */
function spatial(
  shape: number[],
  window: [number, number],
  strides: [number, number],
  padding: 'valid' | 'same',
): [number, number] {
  const size = (n: number, k: number, s: number): number =>
    Math.max(0, padding === 'same' ? Math.ceil(n / s) : Math.floor((n - k) / s) + 1);
  return [size(shape[0] ?? 1, window[0], strides[0]), size(shape[1] ?? 1, window[1], strides[1])];
}

function pair(value: number | readonly [number, number]): [number, number] {
  return typeof value === 'number' ? [value, value] : [value[0], value[1]];
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}
