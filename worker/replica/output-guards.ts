// Loss, model output and metrics must agree, or the job is refused before any worker trains.
// Two silent failures motivate it: categoricalCrossentropy on a last layer without softmax
// clips raw scores into [1e-7, 1 − 1e-7] and trains to a reported loss of 0.0000, and accuracy
// on a regression task prints a meaningless number.
//
// The check reads the built tf.LayersModel (any model source), not the YAML, so it sees the
// activation that really ends the model: the output layer's `activation` config, an Activation
// layer, or a Softmax layer.
import type * as tf from '@tensorflow/tfjs';
import type { DataShape } from '../../shared/data/data-source.js';
import { OutputMismatchError } from '../../shared/errors.js';
import type { Job, LossName } from '../../shared/job-schema.js';
import { lossFromLogits, lossName } from '../../shared/loss-spec.js';

/** The probability activation each crossentropy expects of the model's output. */
const PROBABILITY: Partial<Record<LossName, 'softmax' | 'sigmoid'>> = {
  categoricalCrossentropy: 'softmax',
  sparseCategoricalCrossentropy: 'softmax',
  binaryCrossentropy: 'sigmoid',
};

/** Throws OutputMismatchError (one line naming the key and the fix) when loss, output and metrics disagree. */
export function checkOutputGuards(job: Job, task: DataShape['task'], model: tf.LayersModel): void {
  checkLossOutput(job, model);
  checkMetrics(job, task);
}

function checkLossOutput(job: Job, model: tf.LayersModel): void {
  const name = lossName(job.loss);
  const expected = PROBABILITY[name];
  if (expected === undefined) return;
  const { activation, layer } = finalActivation(model);
  const applied = activation === 'softmax' || activation === 'sigmoid';
  if (lossFromLogits(job.loss)) {
    if (applied) {
      throw new OutputMismatchError(
        'loss',
        `fromLogits: true expects raw scores, but the model's output layer ${layer} already applies ${activation}; make its activation linear, or drop fromLogits`,
      );
    }
    return;
  }
  if (activation === expected) return;
  throw new OutputMismatchError(
    'loss',
    `${name} needs probabilities, but the model's output layer ${layer} has activation ${activation}; end the model with activation ${expected}, or write loss: { type: ${name}, fromLogits: true }`,
  );
}

function checkMetrics(job: Job, task: DataShape['task']): void {
  for (const metric of job.metrics) {
    if (
      (metric === 'accuracy' || metric === 'binaryAccuracy') &&
      (task === 'regression' || task === 'reconstruction')
    ) {
      throw new OutputMismatchError(
        'metrics',
        `${metric} needs class labels, but the task is ${task === 'regression' ? 'a regression' : 'a reconstruction (data.target: input)'}; use mae or mse`,
      );
    }
    if (metric === 'binaryAccuracy' && task === 'classification') {
      throw new OutputMismatchError(
        'metrics',
        'binaryAccuracy thresholds one 0/1 output, but the task has several classes; use accuracy',
      );
    }
  }
}

/**
 * The activation that ends `model` and the layer that applies it: the output layer's
 * `activation` config ('linear' for a layer without one), or 'softmax' for a Softmax layer and
 * 'leakyRelu' for a LeakyReLU layer.
 */
export function finalActivation(model: tf.LayersModel): { activation: string; layer: string } {
  const layer = model.outputLayers[0] ?? model.layers[model.layers.length - 1];
  if (layer === undefined) return { activation: 'linear', layer: '(none)' };
  const className = layer.getClassName();
  const named = `"${layer.name}" (${className})`;
  if (className === 'Softmax') return { activation: 'softmax', layer: named };
  if (className === 'LeakyReLU') return { activation: 'leakyRelu', layer: named };
  const configured = layer.getConfig()['activation'];
  return { activation: typeof configured === 'string' ? configured : 'linear', layer: named };
}
