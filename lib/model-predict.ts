// Predictions and evaluation with an exported model on raw data (lib/model-data.ts reads it).
// Evaluation reproduces what a run reports in summary.json: the job's loss in the space training
// computed it (standardised labels for a normalised regression), mae/mse in the label's units.
import * as tf from '@tensorflow/tfjs';
import type { ModelMetadata } from '../shared/model-metadata.js';
import { perSampleLoss } from '../worker/replica/losses.js';
import { metricSum } from '../worker/replica/metrics.js';
import type { ModelData } from './model-data.js';
import type { LoadedModel } from './model-io.js';

/** Rows per forward pass: bounded memory whatever the file's size. */
const PREDICT_BATCH_SIZE = 256;

/** One row's answer: the class (classifiers) with every class's probability, or the value(s). */
export interface Prediction {
  class?: string;
  probabilities?: Record<string, number>;
  value?: number | number[];
}

/** The model's raw outputs, row-major (count × units), and units per row. */
export function predictOutputs(loaded: LoadedModel, data: ModelData): { outputs: Float32Array; units: number } {
  const chunks: Float32Array[] = [];
  let units = 0;
  forEachBatch(loaded, data, (xs) => {
    const out = tf.tidy(() => {
      const pred = loaded.model.predict(xs) as tf.Tensor;
      return tf.reshape(pred, [pred.shape[0] ?? 0, -1]);
    });
    units = out.shape[1] ?? 0;
    chunks.push(out.dataSync() as Float32Array);
    out.dispose();
  });
  const outputs = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    outputs.set(chunk, at);
    at += chunk.length;
  }
  return { outputs, units };
}

/** Named predictions: class names for classifiers, values otherwise. */
export function describePredictions(metadata: ModelMetadata, outputs: Float32Array, units: number): Prediction[] {
  const rows: Prediction[] = [];
  for (let r = 0; r * units < outputs.length; r++) {
    const row = Array.from(outputs.subarray(r * units, (r + 1) * units));
    rows.push(describeRow(metadata, row));
  }
  return rows;
}

function describeRow(metadata: ModelMetadata, row: number[]): Prediction {
  if (metadata.task === 'regression' || metadata.task === 'reconstruction')
    return { value: row.length === 1 ? (row[0] as number) : row };
  const names = metadata.classNames ?? Array.from({ length: metadata.numClasses ?? row.length }, (_, i) => String(i));
  // Binary: one sigmoid unit, the probability of the second class.
  const probs = metadata.task === 'binary' && row.length === 1 ? [1 - (row[0] as number), row[0] as number] : row;
  let best = 0;
  probs.forEach((p, i) => (best = p > (probs[best] as number) ? i : best));
  const probabilities: Record<string, number> = {};
  probs.forEach((p, i) => (probabilities[names[i] ?? String(i)] = p));
  return { class: names[best] ?? String(best), probabilities };
}

/** { loss, ...metrics } over `data` (which must carry labels), as summary.json reports a split. */
export function evaluateModel(loaded: LoadedModel, data: ModelData): Record<string, number> {
  const meta = loaded.metadata;
  const norm = meta.normalization;
  const featureSize = meta.inputShape.reduce((a, b) => a * b, 1);
  const labelWidth = data.y === undefined ? featureSize : data.y.length / Math.max(1, data.count);
  const sums: Record<string, number> = { loss: 0 };
  let start = 0;
  forEachBatch(loaded, data, (xs, count) => {
    const parts = tf.tidy(() => {
      let pred = tf.reshape(loaded.model.predict(xs) as tf.Tensor, [count, -1]);
      let ys =
        data.y === undefined
          ? tf.reshape(xs, [count, -1]) // an autoencoder's target is its input
          : tf.tensor2d(data.y.subarray(start * labelWidth, (start + count) * labelWidth), [count, labelWidth]);
      // Back into the space the loss was trained in (the model answers in the label's units).
      if (meta.task === 'regression' && norm?.labelMean !== undefined && norm.labelStd !== undefined) {
        [pred, ys] = [pred, ys].map((t) => tf.div(tf.sub(t, norm.labelMean ?? 0), norm.labelStd ?? 1)) as [
          tf.Tensor2D,
          tf.Tensor2D,
        ];
      } else if (meta.task === 'reconstruction' && norm !== undefined) {
        const [mean, std] = [tf.tensor1d(norm.featureMean), tf.tensor1d(norm.featureStd)];
        [pred, ys] = [pred, ys].map((t) => tf.div(tf.sub(t, mean), std)) as [tf.Tensor2D, tf.Tensor2D];
      }
      const options = { sparseLabels: meta.labelEncoding === 'sparse', labelScale: labelScaleOf(meta) };
      return [tf.sum(perSampleLoss(meta.loss, ys, pred)), ...meta.metrics.map((m) => metricSum(m, ys, pred, options))];
    });
    const values = parts.map((t) => t.dataSync()[0] as number);
    tf.dispose(parts);
    sums['loss'] = (sums['loss'] ?? 0) + (values[0] as number);
    meta.metrics.forEach((m, i) => (sums[m] = (sums[m] ?? 0) + (values[i + 1] as number)));
    start += count;
  });
  const result: Record<string, number> = {};
  for (const [name, sum] of Object.entries(sums)) result[name] = sum / Math.max(1, data.count);
  return result;
}

/** mae/mse of a normalised regression read in the label's units, as in training (worker.ts). */
function labelScaleOf(meta: ModelMetadata): number {
  return meta.task === 'regression' ? (meta.normalization?.labelStd ?? 1) : 1;
}

function forEachBatch(loaded: LoadedModel, data: ModelData, body: (xs: tf.Tensor, count: number) => void): void {
  const shape = loaded.metadata.inputShape;
  const featureSize = shape.reduce((a, b) => a * b, 1);
  for (let start = 0; start < data.count; start += PREDICT_BATCH_SIZE) {
    const count = Math.min(PREDICT_BATCH_SIZE, data.count - start);
    const xs = tf.tensor(data.x.subarray(start * featureSize, (start + count) * featureSize), [count, ...shape]);
    try {
      body(xs, count);
    } finally {
      xs.dispose();
    }
  }
}
