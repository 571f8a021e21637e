// `model: { from, initialize: fresh }`: a loaded model's every weight replaced by a value that
// depends only on the job seed, as a YAML model starts: trainable weights by seeded-init.ts
// (kernel, recurrent_kernel, embeddings, bias, gamma, beta), BatchNorm moving statistics as
// tf.js's constant defaults.
import * as tf from '@tensorflow/tfjs';
import { JobConfigError } from '../../shared/errors.js';
import { initialiseKernels } from './seeded-init.js';

/** Non-trainable weight-name suffix → constant initial value (the tf.js/Keras defaults). */
const CONSTANTS: ReadonlyArray<[string, number]> = [
  ['/moving_mean', 0],
  ['/moving_variance', 1],
];

/** Overwrites every weight of `model`; refuses (naming it) a weight it cannot give a seeded value. */
export function initialiseFresh(model: tf.LayersModel, seed: number, source: string): void {
  for (const weight of model.nonTrainableWeights) {
    const constant = CONSTANTS.find(([suffix]) => weight.originalName.endsWith(suffix))?.[1];
    if (constant === undefined) refuse(weight.originalName, source);
    tf.tidy(() => {
      weight.write(tf.fill(weight.read().shape, constant ?? 0, 'float32'));
    });
  }
  const unseeded = initialiseKernels(model, seed);
  if (unseeded.length > 0) refuse(unseeded[0] ?? '', source);
}

function refuse(weight: string, source: string): never {
  throw new JobConfigError(source, [
    `model.initialize: fresh cannot give weight "${weight}" a seeded value (known: kernel, recurrent_kernel, embeddings, bias, gamma, beta, moving_mean, moving_variance); use initialize: pretrained`,
  ]);
}
