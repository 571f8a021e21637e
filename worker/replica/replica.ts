// The model replica on one rank: forward/backward on the rank's slice into a flat gradient
// buffer, the flat parameter layout, write-back after the optimizer step, evaluation.
//
// Flat layout (flat-layout.ts): trainable weights in model.trainableWeights order, each
// row-major; likewise the non-trainable weights (BatchNorm moving mean/variance).
//
// The model is any tf.LayersModel with one input and one output: a stack, a graph, nested models.
//
// Dropout (dropout-masks.ts): masks are seeded by (job.seed, step, global sample index), so they
// do not depend on sharding. Each Dropout layer's call is overridden to multiply by its mask in
// place of tfjs's own (unseeded) dropout, wherever it sits in the graph; layers with randomness
// we cannot seed are refused (unseeded-layers.ts).
//
// BatchNorm: computeGradients uses the statistics of this rank's slice, and every call moves this
// rank's moving mean/variance towards them, so with worldSize > 1 the moving statistics differ
// between ranks; TrainerReplica averages them over ranks after every step
// (readNonTrainable/writeNonTrainable). With `model.syncBatchNorm`, computeGradientsSynced uses
// statistics over the global batch through collectives (sync-batch-norm.ts), and the moving
// statistics stay identical on every rank. That pass runs the model's nodes in topological order and
// cuts them at the BatchNorm nodes (sync-batch-norm-graph.ts), so it works on stacks and graphs;
// it refuses only a BatchNorm inside a nested model and a layer applied at several places.
import * as tf from '@tensorflow/tfjs';
import type { Job, MetricName } from '../../shared/job-schema.js';
import { JobConfigError } from '../../shared/errors.js';
import { dropoutMasks, dropoutSitesOf, type DropoutSite } from './dropout-masks.js';
import { FlatLayout } from './flat-layout.js';
import { hostView } from '../backend/host-view.js';
import { lossFromLogits, lossName } from '../../shared/loss-spec.js';
import { perSampleLoss } from './losses.js';
import { metricSum } from './metrics.js';
import { batchNormSitesOf, type BatchNormSite, type Collective } from './sync-batch-norm.js';
import { syncBatchNormPass, type TensorMap } from './sync-batch-norm-pass.js';
import { syncGraphOf, type SyncGraph } from './sync-batch-norm-graph.js';
import { assertSeedable } from './unseeded-layers.js';

/**
 * Samples per forward pass in evaluate(). Small enough that evaluating does not grow the backend's
 * memory past what training steps use (with 1024, a lone worker's wasm heap grew by 16 MiB at
 * its first validation), large enough to keep the matmuls efficient.
 */
export const EVAL_BATCH_SIZE = 256;

export interface ReplicaOptions {
  /** Std the regression labels were divided by; mae/mse are reported in label units. @default 1 */
  labelScale?: number;
}

export class Replica {
  /** Number of trainable parameters = length of the flat buffer (excluding the 2 trailing slots). */
  readonly paramCount: number;
  readonly nonTrainableCount: number;
  /** Floats per sample in `x` (product of job.model.input). */
  readonly featureSize: number;
  /** Floats per sample in `y`: 1 for sparse labels, else the model's output units. */
  readonly labelSize: number;
  private readonly trainable: FlatLayout;
  private readonly nonTrainable: FlatLayout;
  private readonly variables: tf.Variable[];
  private readonly dropoutSites: DropoutSite[];
  private readonly featureShape: number[];
  private readonly outputUnits: number;
  private readonly labelScale: number;
  /** The dropout masks of the pass in progress (withMasks), read by the Dropout layers' call. */
  private activeMasks: Float32Array[] | null = null;
  /** BatchNorm layers whose statistics are global (empty unless job.model.syncBatchNorm). */
  private readonly syncSites: BatchNormSite[];
  /** The model's nodes as the synchronised pass cuts them (null unless job.model.syncBatchNorm). */
  private readonly syncGraph: SyncGraph | null;

  constructor(
    /** The replica owns the model: dispose() disposes it. Exported via model-export.ts. */
    readonly model: tf.LayersModel,
    private readonly job: Job,
    options: ReplicaOptions = {},
  ) {
    this.trainable = new FlatLayout(model.trainableWeights);
    this.nonTrainable = new FlatLayout(model.nonTrainableWeights);
    this.paramCount = this.trainable.size;
    this.nonTrainableCount = this.nonTrainable.size;
    this.variables = this.trainable.variables();
    if (model.inputs.length !== 1 || model.outputs.length !== 1)
      throw new JobConfigError('model', [
        `the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs; ringtrain trains models with one of each`,
      ]);
    assertSeedable(model);
    this.dropoutSites = dropoutSitesOf(model);
    this.dropoutSites.forEach((site, index) => this.installMask(site, index));
    this.featureShape = [...job.model.input];
    this.featureSize = product(this.featureShape);
    this.outputUnits = product(model.outputs[0]?.shape.slice(1) ?? []);
    this.labelSize = lossName(job.loss) === 'sparseCategoricalCrossentropy' ? 1 : this.outputUnits;
    this.labelScale = options.labelScale ?? 1;
    this.syncGraph = job.model.syncBatchNorm ? syncGraphOf(model) : null;
    this.syncSites = this.syncGraph === null ? [] : batchNormSitesOf(this.syncGraph.nodes.map((n) => n.layer));
  }

  /** True when training steps must go through computeGradientsSynced (syncBatchNorm with BatchNorm layers). */
  get needsCollectives(): boolean {
    return this.syncSites.length > 0;
  }

  /** Copies the current trainable weights into `out` (length ≥ paramCount), in model.trainableWeights order. */
  readParams(out: Float32Array): void {
    this.trainable.read(out);
  }

  /** Writes a flat buffer back into the variables (one tensor per variable, the old value disposed). */
  writeParams(params: Float32Array): void {
    this.trainable.write(params);
  }

  readNonTrainable(out: Float32Array): void {
    this.nonTrainable.read(out);
  }

  writeNonTrainable(values: Float32Array): void {
    this.nonTrainable.write(values);
  }

  /**
   * Forward + backward on this rank's slice. Writes the gradient of the SUM of per-sample
   * losses into grad[0..paramCount) with one device-to-host copy; grad[paramCount..) is left
   * alone. count 0 yields zeros without touching TensorFlow.
   */
  computeGradients(
    x: Float32Array,
    y: Float32Array,
    count: number,
    step: number,
    sampleIds: Uint32Array,
    grad: Float32Array,
  ): { lossSum: number; count: number } {
    this.checkBatch(x, y, count);
    if (grad.length < this.paramCount)
      throw new RangeError(`computeGradients: grad holds ${grad.length} floats, need ${this.paramCount}`);
    if (sampleIds.length < count)
      throw new RangeError(`computeGradients: ${sampleIds.length} sample ids for ${count} samples`);
    if (count === 0) {
      grad.fill(0, 0, this.paramCount);
      return { lossSum: 0, count: 0 };
    }
    // variableGrads refuses an empty variable list; a parameter-free model only has a loss.
    if (this.paramCount === 0) return { lossSum: this.evaluate(x, y, count, []).lossSum, count };
    const masks = dropoutMasks(this.dropoutSites, this.job.seed, step, sampleIds, count);
    const flat = tf.tidy(() => {
      const [xs, ys] = this.toTensors(x, y, 0, count);
      const { value, grads } = tf.variableGrads(
        () => tf.sum(perSampleLoss(this.job.loss, ys, this.forward(xs, masks))),
        this.variables,
      );
      // Loss sum rides in the last slot so gradient and loss cost one dataSync together.
      const parts = this.variables.map((v) => tf.reshape(grads[v.name] ?? tf.zerosLike(v), [-1]));
      return tf.concat([...parts, tf.reshape(value, [1])]);
    });
    const data = hostView(flat);
    grad.set(data.subarray(0, this.paramCount));
    const lossSum = data[this.paramCount] as number;
    flat.dispose();
    return { lossSum, count };
  }

  /**
   * computeGradients with global-batch BatchNorm statistics: `collective` (an in-place sum over
   * all ranks) is called twice per BatchNorm layer, by every rank in the same order, an empty
   * slice included. Same contract for `grad` and the result otherwise.
   */
  async computeGradientsSynced(
    x: Float32Array,
    y: Float32Array,
    count: number,
    step: number,
    sampleIds: Uint32Array,
    grad: Float32Array,
    collective: Collective,
  ): Promise<{ lossSum: number; count: number }> {
    this.checkBatch(x, y, count);
    if (grad.length < this.paramCount)
      throw new RangeError(`computeGradientsSynced: grad holds ${grad.length} floats, need ${this.paramCount}`);
    const masks = count === 0 ? [] : dropoutMasks(this.dropoutSites, this.job.seed, step, sampleIds, count);
    const [xs, ys] = count === 0 ? [null, null] : this.toTensors(x, y, 0, count);
    const graph = this.syncGraph as SyncGraph;
    const runner = {
      graph,
      run: (values: TensorMap, from: number, to: number) => this.runNodes(graph, values, from, to, masks),
      variablesOf: (from: number, to: number) => this.variablesOf(graph, from, to),
      lossSum: (out: tf.Tensor) => tf.sum<tf.Scalar>(perSampleLoss(this.job.loss, ys as tf.Tensor, out)),
    };
    try {
      const { grads, lossSum } = await syncBatchNormPass(runner, this.syncSites, xs, collective);
      const flat = tf.tidy(() =>
        tf.concat(this.variables.map((v) => tf.reshape(grads.get(v.name) ?? tf.zerosLike(v), [-1]))),
      );
      tf.dispose([...grads.values()]);
      grad.set(hostView(flat).subarray(0, this.paramCount));
      flat.dispose();
      return { lossSum, count };
    } finally {
      tf.dispose([xs, ys].filter((t): t is tf.Tensor => t !== null));
    }
  }

  /** Inference-mode loss and metric SUMS over `count` samples, EVAL_BATCH_SIZE per forward pass. */
  evaluate(
    x: Float32Array,
    y: Float32Array,
    count: number,
    metrics: MetricName[],
  ): { lossSum: number; count: number; metricSums: Record<string, number> } {
    this.checkBatch(x, y, count);
    const sums = new Float64Array(1 + metrics.length);
    for (let start = 0; start < count; start += EVAL_BATCH_SIZE) {
      const end = Math.min(count, start + EVAL_BATCH_SIZE);
      const batchSums = tf.tidy(() => {
        const [xs, ys] = this.toTensors(x, y, start, end);
        const pred = this.forward(xs, null);
        const options = {
          sparseLabels: lossName(this.job.loss) === 'sparseCategoricalCrossentropy',
          fromLogits: lossFromLogits(this.job.loss),
          labelScale: this.labelScale,
        };
        const scalars = [
          tf.sum(perSampleLoss(this.job.loss, ys, pred)),
          ...metrics.map((m) => metricSum(m, ys, pred, options)),
        ];
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
   * The whole model. With `masks` (training) each Dropout layer multiplies by its seeded mask and
   * every other layer runs with training=true (BatchNorm: batch statistics); with null
   * (inference) every layer runs with training=false.
   */
  private forward(xs: tf.Tensor, masks: Float32Array[] | null): tf.Tensor {
    return this.withMasks(masks, () => {
      const out = this.model.apply(xs, { training: masks !== null });
      if (!(out instanceof tf.Tensor)) throw new TypeError('the model did not return a single tensor');
      return out;
    });
  }

  /** Nodes [from, to) of the graph (syncBatchNorm only), as in forward(); their outputs go into `values`. */
  private runNodes(graph: SyncGraph, values: TensorMap, from: number, to: number, masks: Float32Array[] | null): void {
    this.withMasks(masks, () => {
      for (const node of graph.nodes.slice(from, to)) {
        const args = node.inputs.map((id) => values.get(id) as tf.Tensor);
        const out = node.layer.apply(args.length === 1 ? (args[0] as tf.Tensor) : args, {
          ...node.kwargs,
          training: masks !== null,
        });
        const outs = Array.isArray(out) ? out : [out];
        if (outs.length !== node.outputs.length || !outs.every((t) => t instanceof tf.Tensor))
          throw new TypeError(`layer ${node.layer.name} did not return its ${node.outputs.length} tensors`);
        node.outputs.forEach((id, i) => values.set(id, outs[i] as tf.Tensor));
      }
    });
  }

  /** Runs `fn` with `masks` visible to the Dropout layers' overridden call (installMask). */
  private withMasks<T>(masks: Float32Array[] | null, fn: () => T): T {
    this.activeMasks = masks;
    try {
      return fn();
    } finally {
      this.activeMasks = null;
    }
  }

  /**
   * Replaces the Dropout layer's call: in training, multiply by site `index`'s seeded mask (a
   * rate-0 site keeps its input); otherwise tfjs's own call (the identity at inference).
   * Invariant: training calls happen only inside withMasks, so a missing mask is a bug.
   */
  private installMask(site: DropoutSite, index: number): void {
    const original = site.layer.call.bind(site.layer);
    site.layer.call = (inputs, kwargs) => {
      if (kwargs['training'] !== true) return original(inputs, kwargs);
      const masks = this.activeMasks;
      if (masks === null) throw new Error(`dropout layer ${site.layer.name} ran in training outside a seeded pass`);
      const x = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
      const mask = masks[index] as Float32Array;
      return mask.length === 0 ? tf.clone(x) : tf.mul(x, tf.tensor(mask, x.shape, 'float32'));
    };
  }

  /** Trainable tf.Variables of the graph's nodes [from, to). */
  private variablesOf(graph: SyncGraph, from: number, to: number): tf.Variable[] {
    const owned = new Set(
      graph.nodes.slice(from, to).flatMap((node) => node.layer.trainableWeights.map((w) => w.read())),
    );
    return this.variables.filter((v) => owned.has(v));
  }

  /** Samples [start, end) as tensors; callers own them (inside a tidy). */
  private toTensors(x: Float32Array, y: Float32Array, start: number, end: number): [tf.Tensor, tf.Tensor] {
    const n = end - start;
    // slice() copies: the cpu backend would otherwise alias the caller's buffer.
    const xs = tf.tensor(
      x.slice(start * this.featureSize, end * this.featureSize),
      [n, ...this.featureShape],
      'float32',
    );
    const ys = tf.tensor(y.slice(start * this.labelSize, end * this.labelSize), [n, this.labelSize], 'float32');
    return [xs, ys];
  }

  private checkBatch(x: Float32Array, y: Float32Array, count: number): void {
    if (!Number.isInteger(count) || count < 0)
      throw new RangeError(`count must be a non-negative integer, got ${count}`);
    if (x.length < count * this.featureSize)
      throw new RangeError(`x holds ${x.length} floats, need ${count} × ${this.featureSize}`);
    if (y.length < count * this.labelSize)
      throw new RangeError(`y holds ${y.length} floats, need ${count} × ${this.labelSize}`);
  }
}

function product(dims: readonly (number | null)[]): number {
  return dims.reduce<number>((a, b) => a * (b ?? 1), 1);
}
