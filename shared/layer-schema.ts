// The layers a job file's model.layers can name: one strict object per layer type, options named
// as in TensorFlow.js (units, filters, kernelSize, ...). worker/replica/layer-factory.ts turns
// each into TensorFlow.js layers.
import { z } from 'zod';

const positiveInt = z.number().int().positive();

export const ACTIVATIONS = ['relu', 'leakyRelu', 'sigmoid', 'tanh', 'softmax', 'linear'] as const;
export const activationSchema = z.enum(ACTIVATIONS);

/**
 * Keys every layer takes, for the graph form of model.layers: `name` (unique; default
 * `<type>_<index>`) and `inputs` (names of earlier layers, or "input"; default: the layer just
 * before, or the model input for the first). Every member of layerSchema spreads them.
 */
export const graphKeys = {
  name: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'use a letter, then letters, digits and "_"')
    .optional(),
  inputs: z.array(z.string().min(1)).min(1).optional(),
};

const kernelSize = z.union([positiveInt, z.tuple([positiveInt, positiveInt])]);
const padding = z.enum(['valid', 'same']);

/** Activations tfjs recurrent layers accept (leakyRelu and softmax are not among them). */
const recurrentActivationSchema = z.enum(['tanh', 'sigmoid', 'hardSigmoid', 'relu', 'linear']);

/**
 * Recurrent dropout in TensorFlow.js draws its masks from an unseeded generator, so ranks (and
 * runs) would train different models: only 0 is accepted. A dropout layer after the recurrent
 * layer (seeded by global sample index) is the exact alternative.
 */
const unseededDropout = z
  .literal(0, {
    error: 'recurrent dropout is unseeded in TensorFlow.js, so ranks would differ; use a dropout layer after this one',
  })
  .optional();

const recurrentKeys = {
  units: positiveInt,
  /** @default 'tanh' */
  activation: recurrentActivationSchema.default('tanh'),
  /** Output the whole sequence [steps, units] instead of the last step's [units]. @default false */
  returnSequences: z.boolean().default(false),
  dropout: unseededDropout,
  recurrentDropout: unseededDropout,
};

const pool1dKeys = {
  poolSize: positiveInt.default(2),
  strides: positiveInt.optional(),
  padding: padding.default('valid'),
};

export const layerSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('dense'),
    ...graphKeys,
    units: positiveInt,
    activation: activationSchema.default('linear'),
    /** Negative slope for leakyRelu. @default 0.2 */
    alpha: z.number().nonnegative().optional(),
    useBias: z.boolean().default(true),
  }),
  z.strictObject({ type: z.literal('dropout'), rate: z.number().min(0).lt(1), ...graphKeys }),
  z.strictObject({
    type: z.literal('batchNormalization'),
    ...graphKeys,
    momentum: z.number().min(0).max(1).default(0.99),
    epsilon: z.number().positive().default(0.001),
  }),
  z.strictObject({
    type: z.literal('conv2d'),
    ...graphKeys,
    filters: positiveInt,
    kernelSize,
    strides: kernelSize.default(1),
    padding: padding.default('valid'),
    activation: activationSchema.default('linear'),
    alpha: z.number().nonnegative().optional(),
  }),
  z.strictObject({
    type: z.literal('maxPooling2d'),
    ...graphKeys,
    poolSize: kernelSize.default(2),
    strides: kernelSize.optional(),
    padding: padding.default('valid'),
  }),
  z.strictObject({ type: z.literal('flatten'), ...graphKeys }),
  z.strictObject({ type: z.literal('reshape'), targetShape: z.array(positiveInt).min(1), ...graphKeys }),
  z.strictObject({
    type: z.literal('activation'),
    ...graphKeys,
    activation: activationSchema,
    alpha: z.number().nonnegative().optional(),
  }),
  /** Input normalization: (x - mean) / std with constants, e.g. { mean: 0.1307, std: 0.3081 }. */
  z.strictObject({
    type: z.literal('normalization'),
    ...graphKeys,
    mean: z.number().default(0),
    std: z.number().positive().default(1),
  }),
  // Sequence and normalization layers (issue 12). Inputs to embedding are token ids as floats,
  // truncated to integers by TensorFlow.js.
  z.strictObject({ type: z.literal('embedding'), ...graphKeys, inputDim: positiveInt, outputDim: positiveInt }),
  z.strictObject({
    type: z.literal('lstm'),
    ...graphKeys,
    ...recurrentKeys,
    /** Activation of the input, forget and output gates. @default 'hardSigmoid' (as tfjs) */
    recurrentActivation: recurrentActivationSchema.default('hardSigmoid'),
  }),
  z.strictObject({
    type: z.literal('gru'),
    ...graphKeys,
    ...recurrentKeys,
    /** Activation of the update and reset gates. @default 'hardSigmoid' (as tfjs) */
    recurrentActivation: recurrentActivationSchema.default('hardSigmoid'),
  }),
  z.strictObject({ type: z.literal('simpleRnn'), ...graphKeys, ...recurrentKeys }),
  z.strictObject({
    type: z.literal('conv1d'),
    ...graphKeys,
    filters: positiveInt,
    kernelSize: positiveInt,
    strides: positiveInt.default(1),
    padding: padding.default('valid'),
    activation: activationSchema.default('linear'),
    alpha: z.number().nonnegative().optional(),
  }),
  z.strictObject({
    type: z.literal('averagePooling2d'),
    ...graphKeys,
    poolSize: kernelSize.default(2),
    strides: kernelSize.optional(),
    padding: padding.default('valid'),
  }),
  z.strictObject({ type: z.literal('averagePooling1d'), ...graphKeys, ...pool1dKeys }),
  z.strictObject({ type: z.literal('maxPooling1d'), ...graphKeys, ...pool1dKeys }),
  z.strictObject({ type: z.literal('globalAveragePooling1d'), ...graphKeys }),
  z.strictObject({ type: z.literal('globalAveragePooling2d'), ...graphKeys }),
  z.strictObject({ type: z.literal('globalMaxPooling1d'), ...graphKeys }),
  z.strictObject({ type: z.literal('globalMaxPooling2d'), ...graphKeys }),
  z.strictObject({
    type: z.literal('layerNormalization'),
    ...graphKeys,
    /** Axis normalised over; -1 is the last (features). @default -1 */
    axis: z.number().int().default(-1),
    epsilon: z.number().positive().default(0.001),
  }),
  /** Graph form: the element-wise sum of its `inputs` (two or more, same shape), e.g. a residual. */
  z.strictObject({ type: z.literal('add'), ...graphKeys }),
  /** Graph form: its `inputs` (two or more) joined along `axis`. @default axis -1 */
  z.strictObject({ type: z.literal('concatenate'), ...graphKeys, axis: z.number().int().default(-1) }),
]);

export type LayerSpec = z.output<typeof layerSchema>;
export type Activation = z.output<typeof activationSchema>;
