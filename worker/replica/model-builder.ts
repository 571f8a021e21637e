// Turns the job's model spec into a tf.Sequential whose initial weights depend only on the job
// seed, so every rank of every world size starts bit-identical.
//
// Layer names are fixed (`<type>_<index>`), which keeps weight names in model.json stable across
// processes. Input normalization is a built-in `Rescaling` layer (x · 1/std + (−mean/std)), so an
// exported model needs no custom classes and predicts on raw inputs in any TensorFlow.js runtime.
import * as tf from '@tensorflow/tfjs';
import type { Job } from '../../shared/job-schema.js';
import { toTfLayers, type BaseArgs } from './layer-factory.js';
import { initialiseKernels } from './seeded-init.js';

export { DEFAULT_LEAKY_ALPHA } from './layer-factory.js';

/**
 * Builds the job's model. Kernels are Glorot-uniform, recurrent kernels orthogonal and
 * embeddings uniform ±0.05, from our own PRNG (one stream per layer, seedFrom(seed, INIT_STREAM,
 * layerIndex, 0)); biases 0 (an LSTM's forget gate 1); gamma 1, beta 0; BatchNorm moving mean 0,
 * moving variance 1 (tfjs defaults, which are constants). See seeded-init.ts.
 */
export function buildModel(job: Job): tf.Sequential {
  const layers: tf.layers.Layer[] = [];
  job.model.layers.forEach((spec, index) => {
    const base: BaseArgs = { name: `${spec.type}_${index}` };
    if (index === 0) base.inputShape = [...job.model.input];
    layers.push(...toTfLayers(spec, base));
  });
  const model = tf.sequential({ layers, name: job.name.replace(/[^A-Za-z0-9_]/g, '_') });
  const unseeded = initialiseKernels(model, job.seed);
  // Every weight a job's layers make has a known role; one that had not would start from a tfjs
  // random initializer, different on every rank.
  if (unseeded.length > 0) throw new Error(`buildModel: no seeded initial values for ${unseeded.join(', ')}`);
  return model;
}
