// Seeded initial weights: every random initial value comes from our own PRNG, keyed by the job
// seed and the layer's index, so every rank of every world size starts bit-identical.
import * as tf from '@tensorflow/tfjs';
import { Rng, seedFrom } from '../../shared/rng.js';

/** Stream tag for seedFrom, so init weights never share a stream with data or dropout draws. */
const INIT_STREAM = 0x696e6974; // "init"

/** Overwrites every kernel (the zero-initialised dense/conv weights) with Glorot-uniform values. */
export function initialiseKernels(model: tf.LayersModel, seed: number): void {
  model.layers.forEach((layer, layerIndex) => {
    const rng = new Rng(seedFrom(seed, INIT_STREAM, layerIndex, 0));
    for (const weight of layer.trainableWeights) {
      if (!weight.originalName.endsWith('/kernel')) continue;
      const shape = weight.read().shape; // concrete, unlike LayerVariable.shape (Shape allows null)
      const values = glorotUniform(shape, rng);
      tf.tidy(() => {
        weight.write(tf.tensor(values, shape, 'float32'));
      });
    }
  });
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
