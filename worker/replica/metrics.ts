// Metric SUMS over a batch (not means), so the coordinator can add them across ranks and divide
// by the total count once. Each per-sample value is first averaged over output units.
import * as tf from '@tensorflow/tfjs';
import type { MetricName } from '../../shared/job-schema.js';
import { sparseToOneHot } from './losses.js';

export interface MetricOptions {
  /** Labels are [batch, 1] class indices (sparseCategoricalCrossentropy) rather than one value per output unit. */
  sparseLabels: boolean;
  /**
   * Standard deviation the labels were divided by (Dataset.normalization.labelStd); mae is
   * multiplied by it and mse by its square, so both read in the label's own units. @default 1
   */
  labelScale?: number;
  /** The model outputs logits (loss fromLogits): a single unit or binaryAccuracy thresholds at 0, not 0.5. @default false */
  fromLogits?: boolean;
}

/** Sum over the batch of `metric`, as a scalar tensor. yPred is [batch, ...units]. */
export function metricSum(metric: MetricName, yTrue: tf.Tensor, yPred: tf.Tensor, options: MetricOptions): tf.Scalar {
  return tf.tidy(() => {
    const batch = yPred.shape[0] ?? 0;
    const pred = tf.reshape<tf.Rank.R2>(yPred, [batch, -1]);
    const units = pred.shape[1];
    const labels = options.sparseLabels ? sparseToOneHot(yTrue, units) : tf.reshape<tf.Rank.R2>(yTrue, [batch, -1]);
    const scale = options.labelScale ?? 1;
    // σ(z) > 0.5 exactly when z > 0, so logits are thresholded at 0 and labels at 0.5.
    const threshold = options.fromLogits === true ? 0 : 0.5;
    switch (metric) {
      case 'accuracy':
        return accuracySum(labels, pred, threshold);
      case 'binaryAccuracy':
        return tf.sum(tf.mean(thresholdMatch(labels, pred, threshold), 1));
      case 'mae':
        return tf.mul(tf.sum(tf.mean(tf.abs(tf.sub(pred, labels)), 1)), scale);
      case 'mse':
        return tf.mul(tf.sum(tf.mean(tf.square(tf.sub(pred, labels)), 1)), scale * scale);
    }
  });
}

/** Argmax match; a single-unit (sigmoid or logit) output is thresholded instead. */
function accuracySum(labels: tf.Tensor2D, pred: tf.Tensor2D, threshold: number): tf.Scalar {
  if (pred.shape[1] === 1) return tf.sum(thresholdMatch(labels, pred, threshold));
  return tf.sum(tf.cast(tf.equal(tf.argMax(pred, 1), tf.argMax(labels, 1)), 'float32'));
}

/** 1 where the prediction is above `threshold` exactly when the label is above 0.5, else 0. */
function thresholdMatch(labels: tf.Tensor, pred: tf.Tensor, threshold: number): tf.Tensor {
  return tf.cast(tf.equal(tf.greater(pred, threshold), tf.greater(labels, 0.5)), 'float32');
}
