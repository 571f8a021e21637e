// The model replica on one rank: forward/backward on the rank's slice into a flat gradient
// buffer, the flat parameter layout, write-back after the optimizer step, evaluation.
//
// Flat layout: trainable weights in model.trainableWeights order, each row-major; likewise the
// non-trainable weights (BatchNorm moving mean/variance) in model.nonTrainableWeights order.
//
// Dropout: the mask of sample i at step s comes from Rng(seedFrom(job.seed, s, sampleIds[i])),
// drawing the dropout layers in model order, so it does not depend on how the global batch is
// sharded or micro-batched. tfjs's own (unseeded) dropout is never run in training.
//
// BatchNorm: training uses the statistics of this rank's slice, and every computeGradients call
// moves this rank's moving mean/variance towards them. With worldSize > 1 the moving statistics
// therefore differ between ranks (`syncBatchNorm` is not implemented yet); callers that need one
// value average or broadcast them with readNonTrainable/writeNonTrainable.
import * as tf from '@tensorflow/tfjs';
import type { Job, MetricName } from '../shared/job-schema.js';
import { Rng, seedFrom } from '../shared/rng.js';
import { perSampleLoss } from './losses.js';
import { metricSum } from './metrics.js';

/** Samples per forward pass in evaluate(). */
export const EVAL_BATCH_SIZE = 1024;

export interface ReplicaOptions {
  /** Std the regression labels were divided by; mae/mse are reported in label units. @default 1 */
  labelScale?: number;
}

/** One variable's place in a flat buffer. */
interface Slot {
  variable: tf.LayerVariable;
  shape: number[];
  offset: number;
  size: number;
}

/** A dropout layer in the manual forward pass: `units` values per sample. */
interface DropoutSite {
  rate: number;
  units: number;
}

export class Replica {
  /** Number of trainable parameters = length of the flat buffer (excluding the 2 trailing slots). */
  readonly paramCount: number;
  readonly nonTrainableCount: number;
  /** Floats per sample in `x` (product of job.model.input). */
  readonly featureSize: number;
  /** Floats per sample in `y`: 1 for sparse labels, else the model's output units. */
  readonly labelSize: number;
  private readonly trainableSlots: Slot[];
  private readonly nonTrainableSlots: Slot[];
  private readonly variables: tf.Variable[];
  private readonly dropoutSites: Map<tf.layers.Layer, DropoutSite>;
  private readonly featureShape: number[];
  private readonly outputUnits: number;
  private readonly labelScale: number;

  constructor(
    /** The replica owns the model: dispose() disposes it. Exported via model-export.ts. */
    readonly model: tf.Sequential,
    private readonly job: Job,
    options: ReplicaOptions = {},
  ) {
    this.trainableSlots = layoutOf(model.trainableWeights);
    this.nonTrainableSlots = layoutOf(model.nonTrainableWeights);
    this.paramCount = totalSize(this.trainableSlots);
    this.nonTrainableCount = totalSize(this.nonTrainableSlots);
    this.variables = this.trainableSlots.map((slot) => asVariable(slot.variable));
    this.dropoutSites = dropoutSitesOf(model);
    this.featureShape = [...job.model.input];
    this.featureSize = product(this.featureShape);
    this.outputUnits = product(model.outputs[0]?.shape.slice(1) ?? []);
    this.labelSize = job.loss === 'sparseCategoricalCrossentropy' ? 1 : this.outputUnits;
    this.labelScale = options.labelScale ?? 1;
  }

  /** Copies the current trainable weights into `out` (length ≥ paramCount), in model.trainableWeights order. */
  readParams(out: Float32Array): void {
    readInto(this.trainableSlots, this.paramCount, out);
  }

  /** Writes a flat buffer back into the variables (one tensor per variable, the old value disposed). */
  writeParams(params: Float32Array): void {
    writeFrom(this.trainableSlots, this.paramCount, params);
  }

  readNonTrainable(out: Float32Array): void {
    readInto(this.nonTrainableSlots, this.nonTrainableCount, out);
  }

  writeNonTrainable(values: Float32Array): void {
    writeFrom(this.nonTrainableSlots, this.nonTrainableCount, values);
  }

  /**
   * Forward + backward on this rank's slice. Writes the gradient of the SUM of per-sample
   * losses into grad[0..paramCount) with one device-to-host copy; grad[paramCount..) is left
   * alone. count 0 yields zeros without touching TensorFlow.
   */
  computeGradients(x: Float32Array, y: Float32Array, count: number, step: number, sampleIds: Uint32Array, grad: Float32Array): { lossSum: number; count: number } {
    this.checkBatch(x, y, count);
    if (grad.length < this.paramCount) throw new RangeError(`computeGradients: grad holds ${grad.length} floats, need ${this.paramCount}`);
    if (sampleIds.length < count) throw new RangeError(`computeGradients: ${sampleIds.length} sample ids for ${count} samples`);
    if (count === 0) {
      grad.fill(0, 0, this.paramCount);
      return { lossSum: 0, count: 0 };
    }
    const masks = this.dropoutMasks(step, sampleIds, count);
    const flat = tf.tidy(() => {
      const [xs, ys] = this.toTensors(x, y, 0, count);
      const { value, grads } = tf.variableGrads(() => tf.sum(perSampleLoss(this.job.loss, ys, this.forward(xs, masks))), this.variables);
      // Loss sum rides in the last slot so gradient and loss cost one dataSync together.
      const parts = this.variables.map((v) => tf.reshape(grads[v.name] ?? tf.zerosLike(v), [-1]));
      return tf.concat([...parts, tf.reshape(value, [1])]);
    });
    const data = flat.dataSync();
    flat.dispose();
    grad.set(data.subarray(0, this.paramCount));
    return { lossSum: data[this.paramCount] as number, count };
  }

  /** Inference-mode loss and metric SUMS over `count` samples, EVAL_BATCH_SIZE per forward pass. */
  evaluate(x: Float32Array, y: Float32Array, count: number, metrics: MetricName[]): { lossSum: number; count: number; metricSums: Record<string, number> } {
    this.checkBatch(x, y, count);
    const sums = new Float64Array(1 + metrics.length);
    for (let start = 0; start < count; start += EVAL_BATCH_SIZE) {
      const end = Math.min(count, start + EVAL_BATCH_SIZE);
      const batchSums = tf.tidy(() => {
        const [xs, ys] = this.toTensors(x, y, start, end);
        const pred = this.forward(xs, null);
        const options = { sparseLabels: this.job.loss === 'sparseCategoricalCrossentropy', labelScale: this.labelScale };
        const scalars = [tf.sum(perSampleLoss(this.job.loss, ys, pred)), ...metrics.map((m) => metricSum(m, ys, pred, options))];
        return tf.stack(scalars);
      });
      const values = batchSums.dataSync();
      batchSums.dispose();
      for (let i = 0; i < sums.length; i++) sums[i] = (sums[i] as number) + (values[i] as number);
    }
    const metricSums: Record<string, number> = {};
    metrics.forEach((m, i) => (metricSums[m] = sums[i + 1] as number));
    return { lossSum: sums[0] as number, count, metricSums };
  }

  /** Disposes the model's variables; the replica is unusable afterwards. */
  dispose(): void {
    this.model.dispose();
  }

  /**
   * Runs the layers one by one. With `masks` (training) each dropout layer multiplies by its
   * seeded mask and every other layer runs with training=true (BatchNorm: batch statistics);
   * with null (inference) every layer runs with training=false.
   */
  private forward(xs: tf.Tensor, masks: Float32Array[] | null): tf.Tensor {
    const training = masks !== null;
    let h = xs;
    let dropoutIndex = 0;
    for (const layer of this.model.layers) {
      const site = this.dropoutSites.get(layer);
      if (site !== undefined && training) {
        const mask = masks[dropoutIndex++];
        if (mask !== undefined && site.rate > 0) h = tf.mul(h, tf.tensor(mask, h.shape, 'float32'));
        continue;
      }
      const out = layer.apply(h, { training });
      if (!(out instanceof tf.Tensor)) throw new TypeError(`layer ${layer.name} did not return a single tensor`);
      h = out;
    }
    return h;
  }

  /**
   * Inverted-dropout masks, one Float32Array per dropout layer ([count × units], values 0 or
   * 1/(1−rate)). Each sample's Rng draws all of its layers' masks in model order.
   */
  private dropoutMasks(step: number, sampleIds: Uint32Array, count: number): Float32Array[] {
    const sites = [...this.dropoutSites.values()];
    const masks = sites.map((site) => new Float32Array(site.rate > 0 ? count * site.units : 0));
    if (sites.every((site) => site.rate === 0)) return masks;
    for (let i = 0; i < count; i++) {
      const rng = new Rng(seedFrom(this.job.seed, step, sampleIds[i] as number));
      sites.forEach((site, s) => {
        if (site.rate === 0) return;
        const mask = masks[s] as Float32Array;
        const keep = 1 / (1 - site.rate);
        for (let u = 0, at = i * site.units; u < site.units; u++, at++) mask[at] = rng.next() < site.rate ? 0 : keep;
      });
    }
    return masks;
  }

  /** Samples [start, end) as tensors; callers own them (inside a tidy). */
  private toTensors(x: Float32Array, y: Float32Array, start: number, end: number): [tf.Tensor, tf.Tensor] {
    const n = end - start;
    // slice() copies: the cpu backend would otherwise alias the caller's buffer.
    const xs = tf.tensor(x.slice(start * this.featureSize, end * this.featureSize), [n, ...this.featureShape], 'float32');
    const ys = tf.tensor(y.slice(start * this.labelSize, end * this.labelSize), [n, this.labelSize], 'float32');
    return [xs, ys];
  }

  private checkBatch(x: Float32Array, y: Float32Array, count: number): void {
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
    if (x.length < count * this.featureSize) throw new RangeError(`x holds ${x.length} floats, need ${count} × ${this.featureSize}`);
    if (y.length < count * this.labelSize) throw new RangeError(`y holds ${y.length} floats, need ${count} × ${this.labelSize}`);
  }
}

function layoutOf(variables: tf.LayerVariable[]): Slot[] {
  let offset = 0;
  return variables.map((variable) => {
    const shape = variable.read().shape;
    const size = product(shape);
    const slot = { variable, shape, offset, size };
    offset += size;
    return slot;
  });
}

function readInto(slots: Slot[], total: number, out: Float32Array): void {
  if (out.length < total) throw new RangeError(`buffer holds ${out.length} floats, need ${total}`);
  if (total === 0) return;
  const flat = tf.tidy(() => tf.concat(slots.map((slot) => tf.reshape(slot.variable.read(), [-1]))));
  out.set(flat.dataSync());
  flat.dispose();
}

function writeFrom(slots: Slot[], total: number, values: Float32Array): void {
  if (values.length < total) throw new RangeError(`buffer holds ${values.length} floats, need ${total}`);
  for (const slot of slots) {
    // The variable takes its own reference to the new data; tidy then frees our handle to it.
    tf.tidy(() => {
      slot.variable.write(tf.tensor(values.slice(slot.offset, slot.offset + slot.size), slot.shape, 'float32'));
    });
  }
}

function dropoutSitesOf(model: tf.Sequential): Map<tf.layers.Layer, DropoutSite> {
  const sites = new Map<tf.layers.Layer, DropoutSite>();
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'Dropout') continue;
    const rate = (layer.getConfig() as { rate?: unknown }).rate;
    if (typeof rate !== 'number') throw new TypeError(`dropout layer ${layer.name} has no numeric rate`);
    const shape = layer.outputShape as (number | null)[];
    sites.set(layer, { rate, units: product(shape.slice(1).map((d) => d ?? 1)) });
  }
  return sites;
}

/** LayerVariable.read() returns the backing tf.Variable, which variableGrads needs. */
function asVariable(layerVariable: tf.LayerVariable): tf.Variable {
  const value = layerVariable.read();
  if (!(value instanceof tf.Variable)) throw new TypeError(`weight ${layerVariable.name} is not backed by a tf.Variable`);
  return value;
}

function totalSize(slots: Slot[]): number {
  return slots.reduce((sum, slot) => sum + slot.size, 0);
}

function product(dims: readonly (number | null)[]): number {
  return dims.reduce<number>((a, b) => a * (b ?? 1), 1);
}
