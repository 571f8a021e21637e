// The coordinator builds the job's model once (the "probe") before any worker starts, from
// whatever source it has, and checks it against the data: the model's input must be the data's
// per-sample shape, its output the labels' units, its final activation the loss's
// (output-guards.ts; a YAML stack gets those in coordinator.ts once it is known to fit memory). Its parameter count and layer output sizes feed
// the memory estimate of models the YAML walk cannot see (from, module, graphs).
import * as tf from '@tensorflow/tfjs';
import type { DataShape } from '../shared/data/data-source.js';
import { checkModelOutput } from '../shared/data/labels.js';
import { JobConfigError } from '../shared/errors.js';
import type { Job } from '../shared/job-schema.js';
import type { ModelShape } from '../shared/memory-estimate.js';
import { lossName } from '../shared/loss-spec.js';
import { isGraph } from '../shared/model-graph.js';
import { layersOf } from '../worker/replica/dropout-masks.js';
import { stackOutputShape } from '../worker/replica/model-builder.js';
import { createJobModel } from '../worker/replica/model-source.js';
import { checkOutputGuards } from '../worker/replica/output-guards.js';
import { Replica } from '../worker/replica/replica.js';

/** Layers that reshape a view of their input: no new activation memory (as memory-estimate.ts). */
const VIEWS = new Set(['InputLayer', 'Flatten', 'Reshape']);

/**
 * Refuses a model that cannot train on this data exactly; returns the size of a built model
 * (graph, from, module), or undefined for a YAML stack (memory-estimate.ts walks its specs).
 */
export async function probeModel(job: Job, dataset: DataShape, source: string): Promise<ModelShape | undefined> {
  const outputUnits =
    lossName(job.loss) === 'sparseCategoricalCrossentropy' ? (dataset.numClasses ?? 1) : dataset.labelSize;
  const expected = { task: dataset.task, outputUnits, numClasses: dataset.numClasses };
  const stack = job.model.layers !== undefined && !isGraph(job.model.layers) ? job.model.layers : undefined;
  if (stack !== undefined) {
    // A stack is checked by shape arithmetic alone (it may be too large to build here; the
    // memory estimate walks its specs), and cannot hold what the replica would refuse.
    checkModelOutput(job, expected, stackOutputShape(job.model.input, stack), source);
    return undefined;
  }
  tf.enableProdMode(); // no tfjs console banners on the coordinator's stderr (as worker/backend/backend.ts)
  await tf.ready();
  const model = await buildOrExplain(job, source);
  try {
    // The replica refuses what cannot train exactly: several inputs or outputs, unseedable
    // randomness, syncBatchNorm where the pass cannot cut (a BatchNorm inside a nested model).
    new Replica(model, job);
    const input = model.inputs[0]?.shape ?? [];
    if (input.length !== job.model.input.length + 1 || job.model.input.some((d, i) => input[i + 1] !== d))
      throw new JobConfigError(source, [
        `model: the model's input has shape ${shapeText(input)}, but the data's samples (model.input) are [null, ${job.model.input.join(', ')}]; make them agree`,
      ]);
    checkModelOutput(job, expected, model.outputs[0]?.shape ?? [], source);
    checkOutputGuards(job, dataset.task, model);
    refuseDoubleScaling(job, model, source);
    return { paramCount: model.countParams(), layerOutputs: layerOutputFloats(model) };
  } finally {
    model.dispose();
  }
}

/**
 * A model ringtrain exported takes raw features (and answers in the label's units): its own
 * layers standardise them. Training it further on standardised data would scale twice.
 */
function refuseDoubleScaling(job: Job, model: tf.LayersModel, source: string): void {
  if (job.model.from === undefined || job.data.format !== 'csv' || !job.data.normalize) return;
  const scaling = layersOf(model).find((l) => /^ringtrain_(standardize|label_scale|unstandardize)$/.test(l.name));
  if (scaling === undefined) return;
  throw new JobConfigError(source, [
    `model.from: ${job.model.from} is a model ringtrain exported, which standardises raw features itself (layer ${scaling.name}); set data.normalize: false so the data is not scaled twice`,
  ]);
}

async function buildOrExplain(job: Job, source: string): Promise<tf.LayersModel> {
  try {
    return await createJobModel(job);
  } catch (error) {
    if (error instanceof JobConfigError) throw error;
    // tf.js explains a layer that cannot take its input's shape (e.g. add of [8] and [4]).
    const why = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
    throw new JobConfigError(source, [`model: cannot be built: ${why}`], { cause: error });
  }
}

/** Σ over layers of their output floats per sample. */
function layerOutputFloats(model: tf.LayersModel): number {
  let total = 0;
  for (const layer of layersOf(model)) {
    if (VIEWS.has(layer.getClassName())) continue;
    let shape: (number | null)[];
    try {
      shape = layer.outputShape as (number | null)[];
    } catch {
      continue; // a layer applied at several places with different shapes: counted by none
    }
    if (Array.isArray(shape[0])) continue;
    total += shape.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1);
  }
  return total;
}

function shapeText(shape: readonly (number | null)[]): string {
  return `[${shape.map((d) => (d === null ? 'null' : String(d))).join(', ')}]`;
}
