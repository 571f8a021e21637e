// Turns the job's YAML layers into a tf.LayersModel whose initial weights depend only on the job
// seed, so every rank of every world size starts bit-identical: a tf.Sequential for a stack, a
// functional tf.model for the graph form (shared/model-graph.ts: layers that name their inputs,
// add, concatenate).
//
// Layer names are fixed (`<type>_<index>` unless the layer has a `name`), which keeps weight
// names in model.json stable across processes. Input normalization is a built-in `Rescaling`
// layer (x · 1/std + (−mean/std)), so an exported model needs no custom classes and predicts on
// raw inputs in any TensorFlow.js runtime.
import * as tf from '@tensorflow/tfjs';
import type { Job } from '../../shared/job-schema.js';
import type { LayerSpec } from '../../shared/layer-schema.js';
import { isGraph, layerName, MODEL_INPUT, resolveGraph } from '../../shared/model-graph.js';
import { toTfLayers, type BaseArgs } from './layer-factory.js';
import { initialiseKernels } from './seeded-init.js';

export { DEFAULT_LEAKY_ALPHA } from './layer-factory.js';

/**
 * Builds the job's YAML model. Kernels are Glorot-uniform, recurrent kernels orthogonal and
 * embeddings uniform ±0.05, from our own PRNG (one stream per layer, seedFrom(seed, INIT_STREAM,
 * layerIndex, 0)); biases 0 (an LSTM's forget gate 1); gamma 1, beta 0; BatchNorm moving mean 0,
 * moving variance 1 (tfjs defaults, which are constants). See seeded-init.ts.
 */
export function buildModel(job: Job): tf.LayersModel {
  const specs = job.model.layers;
  if (specs === undefined) throw new TypeError('buildModel: the job has no model.layers (see model-source.ts)');
  const name = job.name.replace(/[^A-Za-z0-9_]/g, '_');
  const model = isGraph(specs) ? buildGraph(job.model.input, specs, name) : buildStack(job.model.input, specs, name);
  const unseeded = initialiseKernels(model, job.seed);
  // Every weight a job's layers make has a known role; one that had not would start from a tfjs
  // random initializer, different on every rank.
  if (unseeded.length > 0) throw new Error(`buildModel: no seeded initial values for ${unseeded.join(', ')}`);
  return model;
}

function buildStack(input: readonly number[], specs: readonly LayerSpec[], name: string): tf.Sequential {
  const layers: tf.layers.Layer[] = [];
  specs.forEach((spec, index) => {
    const base: BaseArgs = { name: `${spec.type}_${index}` };
    if (index === 0) base.inputShape = [...input];
    layers.push(...toTfLayers(spec, base));
  });
  return tf.sequential({ layers, name });
}

/** The graph form; resolveGraph's invariants (checked when the job was resolved) make list order topological. */
function buildGraph(input: readonly number[], specs: readonly LayerSpec[], name: string): tf.LayersModel {
  const { nodes, problems } = resolveGraph(specs);
  if (problems.length > 0) throw new TypeError(`buildModel: ${problems.join('; ')}`);
  const modelInput = tf.input({ shape: [...input], name: MODEL_INPUT });
  const outputs = new Map<string, tf.SymbolicTensor>([[MODEL_INPUT, modelInput]]);
  let last: tf.SymbolicTensor = modelInput;
  specs.forEach((spec, index) => {
    const node = nodes[index] as (typeof nodes)[number];
    const inputs = node.inputs.map((from) => outputs.get(from) as tf.SymbolicTensor);
    let h: tf.SymbolicTensor | tf.SymbolicTensor[] = inputs.length === 1 ? (inputs[0] as tf.SymbolicTensor) : inputs;
    for (const layer of toTfLayers(spec, { name: layerName(spec, index) })) h = layer.apply(h) as tf.SymbolicTensor;
    last = h as tf.SymbolicTensor;
    outputs.set(node.name, last);
  });
  return tf.model({ inputs: modelInput, outputs: last, name });
}

/**
 * The output shape of a YAML stack, from the layers' shape arithmetic alone: nothing is built or
 * allocated, so the coordinator can check a model too large to build (memory-estimate.ts refuses it).
 */
export function stackOutputShape(input: readonly number[], specs: readonly LayerSpec[]): (number | null)[] {
  let shape: (number | null)[] = [null, ...input];
  specs.forEach((spec, index) => {
    for (const layer of toTfLayers(spec, { name: `${spec.type}_${index}` }))
      shape = layer.computeOutputShape(shape) as (number | null)[];
  });
  return shape;
}
