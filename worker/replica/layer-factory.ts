// One job-file layer spec (shared/layer-schema.ts) becomes TensorFlow.js layers. Kernels are
// created zero-initialised here; model-builder.ts overwrites them with seeded values.
import * as tf from '@tensorflow/tfjs';
import type { Activation, LayerSpec } from '../../shared/layer-schema.js';

/** Default negative slope for leakyRelu (see job-schema `alpha`). */
export const DEFAULT_LEAKY_ALPHA = 0.2;

type TfActivation = Exclude<Activation, 'leakyRelu'>;
export type BaseArgs = { name: string; inputShape?: number[] };

/** One spec layer becomes one tfjs layer, or two when a leakyRelu activation follows it. */
export function toTfLayers(spec: LayerSpec, base: BaseArgs): tf.layers.Layer[] {
  switch (spec.type) {
    case 'dense': {
      const dense = tf.layers.dense({
        ...base,
        units: spec.units,
        useBias: spec.useBias,
        activation: linearFor(spec.activation),
        kernelInitializer: 'zeros',
      });
      return withLeaky(dense, spec.activation, spec.alpha, base.name);
    }
    case 'conv2d': {
      const conv = tf.layers.conv2d({
        ...base,
        filters: spec.filters,
        kernelSize: spec.kernelSize,
        strides: spec.strides,
        padding: spec.padding,
        activation: linearFor(spec.activation),
        kernelInitializer: 'zeros',
      });
      return withLeaky(conv, spec.activation, spec.alpha, base.name);
    }
    case 'dropout':
      return [tf.layers.dropout({ ...base, rate: spec.rate })];
    case 'batchNormalization':
      return [tf.layers.batchNormalization({ ...base, momentum: spec.momentum, epsilon: spec.epsilon })];
    case 'maxPooling2d':
      return [
        tf.layers.maxPooling2d({
          ...base,
          poolSize: spec.poolSize,
          padding: spec.padding,
          ...(spec.strides === undefined ? {} : { strides: spec.strides }),
        }),
      ];
    case 'flatten':
      return [tf.layers.flatten(base)];
    case 'reshape':
      return [tf.layers.reshape({ ...base, targetShape: [...spec.targetShape] })];
    case 'activation':
      if (spec.activation === 'leakyRelu')
        return [tf.layers.leakyReLU({ ...base, alpha: spec.alpha ?? DEFAULT_LEAKY_ALPHA })];
      return [tf.layers.activation({ ...base, activation: spec.activation })];
    case 'normalization':
      return [tf.layers.rescaling({ ...base, scale: 1 / spec.std, offset: -spec.mean / spec.std })];
    case 'embedding':
      return [
        tf.layers.embedding({
          ...base,
          inputDim: spec.inputDim,
          outputDim: spec.outputDim,
          embeddingsInitializer: 'zeros',
        }),
      ];
    case 'lstm':
    case 'gru':
    case 'simpleRnn':
      return [recurrentLayer(spec, base)];
    case 'conv1d': {
      const conv = tf.layers.conv1d({
        ...base,
        filters: spec.filters,
        kernelSize: spec.kernelSize,
        strides: spec.strides,
        padding: spec.padding,
        activation: linearFor(spec.activation),
        kernelInitializer: 'zeros',
      });
      return withLeaky(conv, spec.activation, spec.alpha, base.name);
    }
    case 'averagePooling2d':
      return [
        tf.layers.averagePooling2d({
          ...base,
          poolSize: spec.poolSize,
          padding: spec.padding,
          ...(spec.strides === undefined ? {} : { strides: spec.strides }),
        }),
      ];
    case 'averagePooling1d':
    case 'maxPooling1d': {
      const args = {
        ...base,
        poolSize: spec.poolSize,
        padding: spec.padding,
        ...(spec.strides === undefined ? {} : { strides: spec.strides }),
      };
      return [spec.type === 'maxPooling1d' ? tf.layers.maxPooling1d(args) : tf.layers.averagePooling1d(args)];
    }
    case 'globalAveragePooling1d':
      return [tf.layers.globalAveragePooling1d(base)];
    case 'globalAveragePooling2d':
      return [tf.layers.globalAveragePooling2d(base)];
    case 'globalMaxPooling1d':
      return [tf.layers.globalMaxPooling1d(base)];
    case 'globalMaxPooling2d':
      return [tf.layers.globalMaxPooling2d(base)];
    case 'layerNormalization':
      return [
        tf.layers.layerNormalization({
          ...base,
          axis: spec.axis,
          epsilon: spec.epsilon,
          gammaInitializer: 'ones',
          betaInitializer: 'zeros',
        }),
      ];
    case 'add':
      return [tf.layers.add({ name: base.name })];
    case 'concatenate':
      return [tf.layers.concatenate({ name: base.name, axis: spec.axis })];
  }
}

type RecurrentSpec = Extract<LayerSpec, { type: 'lstm' | 'gru' | 'simpleRnn' }>;

/**
 * Every initializer is a constant here; seeded-init.ts writes the random ones (Glorot kernel,
 * orthogonal recurrent kernel) and the LSTM's unit-forget bias from the job seed.
 */
function recurrentLayer(spec: RecurrentSpec, base: BaseArgs): tf.layers.Layer {
  const args = {
    ...base,
    units: spec.units,
    activation: spec.activation,
    returnSequences: spec.returnSequences,
    kernelInitializer: 'zeros',
    recurrentInitializer: 'zeros',
    biasInitializer: 'zeros',
  } as const;
  if (spec.type === 'simpleRnn') return tf.layers.simpleRNN(args);
  if (spec.type === 'gru') return tf.layers.gru({ ...args, recurrentActivation: spec.recurrentActivation });
  return tf.layers.lstm({ ...args, recurrentActivation: spec.recurrentActivation, unitForgetBias: true });
}

/** tfjs dense/conv have no leakyRelu activation string: run them linear and add a LeakyReLU layer. */
function linearFor(activation: Activation): TfActivation {
  return activation === 'leakyRelu' ? 'linear' : activation;
}

function withLeaky(
  layer: tf.layers.Layer,
  activation: Activation,
  alpha: number | undefined,
  name: string,
): tf.layers.Layer[] {
  if (activation !== 'leakyRelu') return [layer];
  return [layer, tf.layers.leakyReLU({ name: `${name}_leaky_relu`, alpha: alpha ?? DEFAULT_LEAKY_ALPHA })];
}
