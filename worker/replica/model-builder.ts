// Turns the job's model spec into a tf.Sequential whose initial weights depend only on the job
// seed, so every rank of every world size starts bit-identical.
//
// Layer names are fixed (`<type>_<index>`), which keeps weight names in model.json stable across
// processes. Input normalization is a built-in `Rescaling` layer (x · 1/std + (−mean/std)), so an
// exported model needs no custom classes and predicts on raw inputs in any TensorFlow.js runtime.
import * as tf from '@tensorflow/tfjs';
import type { Job } from '../../shared/job-schema.js';
import { Rng, seedFrom } from '../../shared/rng.js';
import { toTfLayers, type BaseArgs } from './layer-factory.js';

export { DEFAULT_LEAKY_ALPHA } from './layer-factory.js';

/** Stream tag for seedFrom, so init weights never share a stream with data or dropout draws. */
const INIT_STREAM = 0x696e6974; // "init"

/**
 * Builds the job's model. Kernels are Glorot-uniform from our own PRNG (one stream per layer,
 * seedFrom(seed, INIT_STREAM, layerIndex, 0)); biases 0; BatchNorm gamma 1, beta 0, moving mean
 * 0, moving variance 1 (tfjs defaults, which are constants).
 */
export function buildModel(job: Job): tf.Sequential {
  const layers: tf.layers.Layer[] = [];
  job.model.layers.forEach((spec, index) => {
    const base: BaseArgs = { name: `${spec.type}_${index}` };
    if (index === 0) base.inputShape = [...job.model.input];
    layers.push(...toTfLayers(spec, base));
  });
  const model = tf.sequential({ layers, name: job.name.replace(/[^A-Za-z0-9_]/g, '_') });
  initialiseKernels(model, job.seed);
  return model;
}

/** Overwrites every kernel (the zero-initialised dense/conv weights) with Glorot-uniform values. */
function initialiseKernels(model: tf.Sequential, seed: number): void {
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
