// Seeded initial weights: every random initial value comes from our own PRNG, keyed by the job
// seed and the layer's index, so every rank of every world size starts bit-identical. The layer
// factory builds every weight with a constant initializer; this module writes the random ones.
import * as tf from '@tensorflow/tfjs';
import { Rng, seedFrom } from '../../shared/rng.js';

/** Stream tag for seedFrom, so init weights never share a stream with data or dropout draws. */
const INIT_STREAM = 0x696e6974; // "init"

/** Keras's default embeddings initializer: uniform in ±0.05. */
const EMBEDDING_LIMIT = 0.05;

/**
 * Writes every trainable weight whose role its name tells, Keras's default way, from our PRNG or
 * as constants: `kernel` Glorot-uniform; `recurrent_kernel` orthogonal; `embeddings` uniform
 * ±0.05; `bias` zeros (an LSTM with unitForgetBias: ones on its forget gate); `gamma` ones;
 * `beta` zeros. Each layer draws from its own stream, seedFrom(seed, INIT_STREAM, layerIndex, 0),
 * in weight order, so adding a layer type never changes another's values.
 * Returns the names of trainable weights it did not recognise (left as the model built them).
 */
export function initialiseKernels(model: tf.LayersModel, seed: number): string[] {
  const unseeded: string[] = [];
  model.layers.forEach((layer, layerIndex) => {
    const rng = new Rng(seedFrom(seed, INIT_STREAM, layerIndex, 0));
    for (const weight of layer.trainableWeights) {
      const shape = weight.read().shape; // concrete, unlike LayerVariable.shape (Shape allows null)
      const values = initialValues(weight.originalName, shape, rng, layer);
      if (values === undefined) {
        unseeded.push(weight.originalName);
        continue;
      }
      tf.tidy(() => {
        weight.write(tf.tensor(values, shape, 'float32'));
      });
    }
  });
  return unseeded;
}

/** The initial values of one weight, by the last part of its name; undefined when unknown. */
function initialValues(name: string, shape: number[], rng: Rng, layer: tf.layers.Layer): Float32Array | undefined {
  const role = name.slice(name.lastIndexOf('/') + 1);
  const size = shape.reduce((a, b) => a * b, 1);
  switch (role) {
    case 'kernel':
      return glorotUniform(shape, rng);
    case 'recurrent_kernel':
      return orthogonal(shape, rng);
    case 'embeddings':
      return Float32Array.from({ length: size }, () => (2 * rng.next() - 1) * EMBEDDING_LIMIT);
    case 'bias':
      return bias(size, layer);
    case 'gamma':
      return new Float32Array(size).fill(1);
    case 'beta':
      return new Float32Array(size);
    default:
      return undefined;
  }
}

/** Zeros, except an LSTM with unitForgetBias (the Keras default): its forget-gate slice [u, 2u) is 1. */
function bias(size: number, layer: tf.layers.Layer): Float32Array {
  const out = new Float32Array(size);
  if (layer.getClassName() === 'LSTM' && layer.getConfig()['unitForgetBias'] === true) {
    const units = size / 4;
    out.fill(1, units, 2 * units);
  }
  return out;
}

/**
 * Keras's Orthogonal initializer (gain 1) from our PRNG: a standard-normal matrix of
 * max(rows, cols) × min(rows, cols), rows = product of all but the last dimension, is
 * orthonormalised column by column (Gram–Schmidt in float64, which is QR with a positive R
 * diagonal, i.e. Keras's sign correction), and transposed when rows < cols.
 */
export function orthogonal(shape: readonly number[], rng: Rng): Float32Array {
  const cols = shape[shape.length - 1] ?? 1;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const n = Math.max(rows, cols);
  const m = Math.min(rows, cols);
  // q[c] is column c of the n × m matrix, drawn row-major as Keras draws its normal matrix.
  const drawn = Array.from({ length: n * m }, () => rng.normal());
  const q = Array.from({ length: m }, (_, c) => Float64Array.from({ length: n }, (_, r) => drawn[r * m + c] as number));
  for (let c = 0; c < m; c++) {
    const column = q[c] as Float64Array;
    for (let p = 0; p < c; p++) {
      const basis = q[p] as Float64Array;
      let dot = 0;
      for (let r = 0; r < n; r++) dot += (basis[r] as number) * (column[r] as number);
      for (let r = 0; r < n; r++) column[r] = (column[r] as number) - dot * (basis[r] as number);
    }
    let norm = 0;
    for (let r = 0; r < n; r++) norm += (column[r] as number) ** 2;
    norm = Math.sqrt(norm);
    for (let r = 0; r < n; r++) column[r] = (column[r] as number) / norm;
  }
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      // rows ≥ cols: out = Q (n × m); rows < cols: out = Qᵀ (m × n).
      out[i * cols + j] = rows >= cols ? ((q[j] as Float64Array)[i] as number) : ((q[i] as Float64Array)[j] as number);
    }
  }
  return out;
}

/**
 * Glorot-uniform values in row-major order: limit sqrt(6 / (fanIn + fanOut)), where conv fans
 * include the receptive field (kernel shape [kh, kw, in, out] → fanIn = kh·kw·in).
 */
export function glorotUniform(shape: readonly number[], rng: Rng): Float32Array {
  if (shape.length < 2) throw new RangeError(`glorotUniform: kernel shape [${shape.join(', ')}] has rank < 2`);
  const fanInUnits = shape[shape.length - 2] as number;
  const fanOutUnits = shape[shape.length - 1] as number;
  const receptive = shape.slice(0, -2).reduce((a, b) => a * b, 1);
  const limit = Math.sqrt(6 / (fanInUnits * receptive + fanOutUnits * receptive));
  const size = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = (2 * rng.next() - 1) * limit;
  return out;
}
