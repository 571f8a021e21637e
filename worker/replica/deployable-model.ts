// The model a run exports: the trained network with the data's standardisation turned into
// layers, so it takes raw features and answers in the label's own units in any TensorFlow.js
// runtime, plus the metadata (class names, columns, loss, metrics) that predict/evaluate need.
//
// Invariants:
// - Training is untouched: the wrapper is built around a COPY of the trained model (loaded from
//   its own saved artifacts, bit-identical weights), so the live replica's layers never gain
//   nodes or lose tensors, and exporting twice gives the same bytes.
// - Only built-in layers are added (Dense with a diagonal kernel, Reshape, Activation), marked
//   non-trainable, named `ringtrain_*`: tf.loadLayersModel needs no custom class anywhere.
// - A classifier always answers probabilities: a model trained with a loss `fromLogits` gets
//   the softmax/sigmoid the loss applied during training as its last layer.
import * as tf from '@tensorflow/tfjs';
import type { DataShape } from '../../shared/data/data-source.js';
import type { Normalization } from '../../shared/data/dataset.js';
import type { Job } from '../../shared/job-schema.js';
import { lossFromLogits, lossName } from '../../shared/loss-spec.js';
import { MODEL_METADATA_KEY, type ModelMetadata } from '../../shared/model-metadata.js';
import type { ModelFiles } from '../../shared/model-blob.js';
import { captureArtifacts, exportModel } from './model-export.js';

/** What the export adds around the trained layers. */
interface RawIoPlan {
  /** Standardise the input (and scale the output) as training's data was. */
  scaling?: Normalization;
  /** An autoencoder: its output is un-standardised with the feature statistics. */
  reconstruct: boolean;
  /** A loss fromLogits: the model ends in logits, so the export appends this activation. */
  probabilities?: 'softmax' | 'sigmoid';
}

/** model.json + weights.bin of the deployable model for `trained`, a model of `job` on `dataset`. */
export async function exportDeployableModel(
  trained: tf.LayersModel,
  job: Job,
  dataset: DataShape,
): Promise<ModelFiles> {
  const metadata = { [MODEL_METADATA_KEY]: modelMetadata(job, dataset) };
  const plan: RawIoPlan = {
    ...(dataset.normalization === undefined ? {} : { scaling: dataset.normalization }),
    reconstruct: dataset.task === 'reconstruction',
    ...(lossFromLogits(job.loss)
      ? { probabilities: lossName(job.loss) === 'binaryCrossentropy' ? 'sigmoid' : 'softmax' }
      : {}),
  };
  if (plan.scaling === undefined && plan.probabilities === undefined) return exportModel(trained, metadata);
  const artifacts = await captureArtifacts(trained);
  const copy = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  const added: tf.layers.Layer[] = [];
  try {
    return await exportModel(wrapForRawIo(copy, plan, added), metadata);
  } finally {
    // The only tensors involved are the copy's weights and the added layers': freed directly,
    // since model.dispose()'s reference counts differ between flattened and nested layers.
    for (const weight of [...copy.weights, ...added.flatMap((layer) => layer.weights)]) weight.dispose();
  }
}

export function modelMetadata(job: Job, dataset: DataShape): ModelMetadata {
  const data = job.data;
  return {
    version: 1,
    inputShape: [...job.model.input],
    task: dataset.task,
    loss: lossName(job.loss),
    ...(lossFromLogits(job.loss) ? { fromLogits: true } : {}),
    metrics: [...job.metrics],
    labelEncoding: dataset.task === 'classification' ? (dataset.labelSize === 1 ? 'sparse' : 'oneHot') : 'value',
    ...(dataset.numClasses === undefined ? {} : { numClasses: dataset.numClasses }),
    ...(dataset.classNames === undefined ? {} : { classNames: dataset.classNames }),
    ...(dataset.columns === undefined
      ? {}
      : { featureColumns: dataset.columns.features, labelColumn: dataset.columns.label }),
    ...(dataset.columns?.encodings === undefined ? {} : { featureEncodings: dataset.columns.encodings }),
    ...(dataset.columns?.ignored === undefined ? {} : { ignoredColumns: dataset.columns.ignored }),
    ...(data.format === 'csv' ? { delimiter: data.delimiter } : {}),
    ...(data.format === 'text' && dataset.vocabulary !== undefined
      ? { vocabulary: dataset.vocabulary, tokens: data.tokens }
      : {}),
    ...(dataset.normalization === undefined ? {} : { normalization: dataset.normalization }),
  };
}

/**
 * raw input → standardise → the trained layers → (regression) label scale, or (autoencoder)
 * feature un-scale → (fromLogits) softmax/sigmoid. A Sequential's layers are re-applied one by
 * one so the exported graph is flat; any other model is applied as one nested layer.
 */
function wrapForRawIo(model: tf.LayersModel, plan: RawIoPlan, added: tf.layers.Layer[]): tf.LayersModel {
  const inputShape = (model.inputs[0]?.shape ?? []).slice(1) as number[];
  if (model.inputs.length !== 1 || inputShape.some((d) => d === null))
    throw new Error('exporting for raw data needs a model with one input of fixed shape');
  const input = tf.input({ shape: inputShape, name: 'ringtrain_raw_input' });
  const scaling = plan.scaling;
  let x = input;
  if (scaling !== undefined) {
    const invStd = scaling.featureStd.map((s) => 1 / s);
    const offset = scaling.featureMean.map((m, i) => -m * (invStd[i] as number));
    x = affine(x, invStd, offset, 'standardize', added);
  }
  if (model instanceof tf.Sequential) for (const layer of model.layers) x = layer.apply(x) as tf.SymbolicTensor;
  else x = model.apply(x) as tf.SymbolicTensor;
  if (scaling?.labelMean !== undefined && scaling.labelStd !== undefined)
    x = affine(x, [scaling.labelStd], [scaling.labelMean], 'label_scale', added);
  else if (scaling !== undefined && plan.reconstruct)
    x = affine(x, scaling.featureStd, scaling.featureMean, 'unstandardize', added);
  if (plan.probabilities !== undefined)
    x = tf.layers
      .activation({ activation: plan.probabilities, name: 'ringtrain_probabilities' })
      .apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: x, name: `${model.name}_raw_io` });
}

/**
 * x·scale + offset per element, as a frozen Dense over the flattened sample whose kernel is
 * diag(scale): Dense is the one built-in layer with a per-element weight that every runtime
 * loads. Reshapes around it keep a multi-dimensional sample's shape.
 */
function affine(
  x: tf.SymbolicTensor,
  scale: number[],
  offset: number[],
  name: string,
  added: tf.layers.Layer[],
): tf.SymbolicTensor {
  const shape = x.shape.slice(1) as number[];
  const size = scale.length;
  const kernel = new Float32Array(size * size);
  scale.forEach((s, i) => (kernel[i * size + i] = s));
  const weights = [tf.tensor2d(kernel, [size, size]), tf.tensor1d(offset)];
  const dense = tf.layers.dense({ units: size, trainable: false, weights, name: `ringtrain_${name}` });
  added.push(dense);
  const flat =
    shape.length === 1
      ? x
      : (tf.layers.reshape({ targetShape: [size], name: `ringtrain_${name}_in` }).apply(x) as tf.SymbolicTensor);
  const out = dense.apply(flat) as tf.SymbolicTensor;
  tf.dispose(weights);
  return shape.length === 1
    ? out
    : (tf.layers.reshape({ targetShape: shape, name: `ringtrain_${name}_out` }).apply(out) as tf.SymbolicTensor);
}
