// Per-sample losses, shape [batch], from the model's outputs: probabilities, or logits when the
// job's loss says fromLogits (then the loss applies log-softmax / log-sigmoid itself, stably).
// The replica sums them, so a rank's gradient is the gradient of the SUM over its slice and the
// all-reduced sum divided by the global count is exactly the mean-loss gradient of the batch.
import * as tf from '@tensorflow/tfjs';
import type { LossName } from '../../shared/job-schema.js';
import { lossFromLogits, lossName, type LossSpec } from '../../shared/loss-spec.js';

/** Probabilities are clipped to [CLIP_EPSILON, 1 − CLIP_EPSILON] before any log. */
export const CLIP_EPSILON = 1e-7;

/**
 * Per-sample loss. `yPred` is [batch, ...units] and is treated as [batch, units] (flattened).
 * `yTrue` has the same size per sample, except for sparseCategoricalCrossentropy, where it is
 * [batch, 1] holding class indices as floats.
 */
export function perSampleLoss(loss: LossSpec, yTrue: tf.Tensor, yPred: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const batch = yPred.shape[0] ?? 0;
    const pred = tf.reshape<tf.Rank.R2>(yPred, [batch, -1]);
    if (lossFromLogits(loss)) return fromLogits(lossName(loss), tf.reshape(yTrue, [batch, -1]), pred);
    switch (lossName(loss)) {
      case 'meanSquaredError':
        return tf.mean<tf.Tensor1D>(tf.square(tf.sub(pred, tf.reshape(yTrue, [batch, -1]))), 1);
      case 'binaryCrossentropy':
        return binaryCrossentropy(tf.reshape<tf.Rank.R2>(yTrue, [batch, -1]), pred);
      case 'categoricalCrossentropy':
        return categoricalCrossentropy(tf.reshape<tf.Rank.R2>(yTrue, [batch, -1]), pred);
      case 'sparseCategoricalCrossentropy':
        return categoricalCrossentropy(sparseToOneHot(yTrue, pred.shape[1]), pred);
    }
  });
}

/** The crossentropies on logits z: categorical −Σ y·logSoftmax(z); binary as binaryFromLogits. */
function fromLogits(loss: LossName, yTrue: tf.Tensor2D, logits: tf.Tensor2D): tf.Tensor1D {
  switch (loss) {
    case 'binaryCrossentropy':
      return binaryFromLogits(yTrue, logits);
    case 'categoricalCrossentropy':
      return tf.neg(tf.sum<tf.Tensor1D>(tf.mul(yTrue, tf.logSoftmax(logits)), 1));
    case 'sparseCategoricalCrossentropy':
      return tf.neg(tf.sum<tf.Tensor1D>(tf.mul(sparseToOneHot(yTrue, logits.shape[1]), tf.logSoftmax(logits)), 1));
    case 'meanSquaredError':
      throw new Error('meanSquaredError has no fromLogits form'); // the schema refuses it
  }
}

/**
 * −[y·log σ(z) + (1−y)·log(1−σ(z))] = max(z, 0) − z·y + log(1 + e^−|z|), averaged over output
 * units: TensorFlow's sigmoid_cross_entropy_with_logits, finite for any z.
 */
function binaryFromLogits(yTrue: tf.Tensor2D, logits: tf.Tensor2D): tf.Tensor1D {
  const softplusOfNegAbs = tf.log(tf.add(1, tf.exp(tf.neg(tf.abs(logits)))));
  const perUnit = tf.add(tf.sub(tf.relu(logits), tf.mul(logits, yTrue)), softplusOfNegAbs);
  return tf.mean<tf.Tensor1D>(perUnit, 1);
}

/** −[y·log p + (1−y)·log(1−p)], averaged over output units. */
function binaryCrossentropy(yTrue: tf.Tensor2D, yPred: tf.Tensor2D): tf.Tensor1D {
  const p = tf.clipByValue(yPred, CLIP_EPSILON, 1 - CLIP_EPSILON);
  const positive = tf.mul(yTrue, tf.log(p));
  const negative = tf.mul(tf.sub(1, yTrue), tf.log(tf.sub(1, p)));
  return tf.neg(tf.mean<tf.Tensor1D>(tf.add(positive, negative), 1));
}

/** −Σ y·log p over classes. */
function categoricalCrossentropy(yTrue: tf.Tensor2D, yPred: tf.Tensor2D): tf.Tensor1D {
  const p = tf.clipByValue(yPred, CLIP_EPSILON, 1 - CLIP_EPSILON);
  return tf.neg(tf.sum<tf.Tensor1D>(tf.mul(yTrue, tf.log(p)), 1));
}

/** [batch, 1] float class indices → [batch, classes] one-hot floats. */
export function sparseToOneHot(yTrue: tf.Tensor, classes: number): tf.Tensor2D {
  return tf.tidy(() => {
    const indices = tf.cast(tf.reshape<tf.Rank.R1>(yTrue, [-1]), 'int32');
    return tf.reshape<tf.Rank.R2>(tf.cast(tf.oneHot(indices, classes), 'float32'), [-1, classes]);
  });
}
