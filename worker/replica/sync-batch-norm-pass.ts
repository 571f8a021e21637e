// One forward/backward pass of a model whose BatchNorm layers use global-batch statistics
// (sync-batch-norm.ts has the math). The model's nodes are cut at its BatchNorm nodes into
// segments (sync-batch-norm-graph.ts); this module walks them: forward to gather every layer's
// statistics, then backward from the loss, one segment and one BatchNorm at a time. Each cut
// carries a set of tensors (one for a stack; more where a branch or residual spans the cut), so
// a segment's backward is a vjp over several inputs and outputs.
//
// Collective order, identical on every rank: the forward collective of BatchNorm 1..k, then the
// backward collective of BatchNorm k..1 (a rank with no samples joins each with zeros).
import * as tf from '@tensorflow/tfjs';
import {
  backward,
  globalStatistics,
  normalize,
  type BatchNormSite,
  type Collective,
  type NormalizedCache,
} from './sync-batch-norm.js';
import type { Segment, SyncGraph } from './sync-batch-norm-graph.js';

/** Tensors by symbolic tensor id. */
export type TensorMap = Map<number, tf.Tensor>;

/** What the pass needs from the replica. */
export interface SegmentRunner {
  readonly graph: SyncGraph;
  /** Nodes [from, to) in training mode (seeded dropout masks), adding their outputs to `values`. */
  run(values: TensorMap, from: number, to: number): void;
  /** Trainable variables of nodes [from, to). */
  variablesOf(from: number, to: number): tf.Variable[];
  /** Sum of the per-sample losses of the model's output. */
  lossSum(output: tf.Tensor): tf.Scalar;
}

export interface PassResult {
  /** Gradient of the loss sum by variable name; the caller disposes them. */
  grads: Map<string, tf.Tensor>;
  lossSum: number;
}

/** Runs the pass on `xs` (null: an empty slice that only joins the collectives). sites[i] is cut i. */
export async function syncBatchNormPass(
  runner: SegmentRunner,
  sites: readonly BatchNormSite[],
  xs: tf.Tensor | null,
  collective: Collective,
): Promise<PassResult> {
  const grads = new Map<string, tf.Tensor>();
  if (xs === null) {
    for (const site of sites) await globalStatistics(site, null, collective);
    for (const site of [...sites].reverse()) {
      const { dGamma, dBeta } = await backward(site, null, null, collective);
      tf.dispose([dGamma, dBeta]);
    }
    return { grads, lossSum: 0 };
  }
  const owned = new Set<tf.Tensor>(); // every tensor the forward made and kept (xs is the caller's)
  const caches: NormalizedCache[] = [];
  const release = (): void => {
    owned.delete(xs);
    tf.dispose([...owned]);
    for (const cache of caches) tf.dispose([cache.xhat, cache.scale]);
  };
  try {
    const inputs = await forward(runner, sites, xs, collective, owned, caches);
    return await backwardPass(runner, sites, inputs, caches, collective, grads);
  } finally {
    release();
  }
}

/** The inputs of every segment (inputs[0] = {xs}), gathering global statistics on the way. */
async function forward(
  runner: SegmentRunner,
  sites: readonly BatchNormSite[],
  xs: tf.Tensor,
  collective: Collective,
  owned: Set<tf.Tensor>,
  caches: NormalizedCache[],
): Promise<TensorMap[]> {
  const { graph } = runner;
  const inputs: TensorMap[] = [new Map([[graph.input, xs]])];
  for (const [j, site] of sites.entries()) {
    const segment = graph.segments[j] as Segment;
    const current = inputs[j] as TensorMap;
    const outs = tf.tidy(() => {
      const values: TensorMap = new Map(current);
      runner.run(values, segment.from, segment.to);
      return segment.outputs.map((id) => values.get(id) as tf.Tensor);
    });
    outs.forEach((t) => owned.add(t));
    const a = outs[0] as tf.Tensor;
    const { y, cache } = normalize(site, a, await globalStatistics(site, a, collective));
    owned.add(y);
    caches.push(cache);
    const node = graph.nodes[graph.cuts[j] as number];
    const available: TensorMap = new Map(current);
    segment.outputs.forEach((id, i) => available.set(id, outs[i] as tf.Tensor));
    available.set(node?.outputs[0] as number, y);
    const next = graph.segments[j + 1] as Segment;
    inputs.push(new Map(next.inputs.map((id) => [id, available.get(id) as tf.Tensor])));
    // The BatchNorm's input is kept only if a later segment reads it too (its cache holds x̂),
    // or if it is one of this segment's inputs (the backward pass runs the segment again).
    if (!next.inputs.includes(segment.outputs[0] as number) && ![...current.values()].includes(a)) {
      owned.delete(a);
      a.dispose();
    }
  }
  return inputs;
}

/** From the loss back to the input: segment k, BatchNorm k, segment k−1, ..., segment 0. */
async function backwardPass(
  runner: SegmentRunner,
  sites: readonly BatchNormSite[],
  inputs: readonly TensorMap[],
  caches: readonly NormalizedCache[],
  collective: Collective,
  grads: Map<string, tf.Tensor>,
): Promise<PassResult> {
  const { graph } = runner;
  let upstream: tf.Tensor[] | null = null; // ∂L/∂(outputs of segment j), in segment.outputs order
  let lossSum = 0;
  try {
    for (let j = graph.segments.length - 1; j >= 0; j--) {
      const segment = graph.segments[j] as Segment;
      const result = segmentGradients(runner, segment, inputs[j] as TensorMap, upstream, j > 0);
      if (j === graph.segments.length - 1) lossSum = result.value;
      tf.dispose(upstream ?? []);
      upstream = null;
      for (const [name, grad] of result.grads) grads.set(name, grad);
      if (j === 0) break;
      const site = sites[j - 1] as BatchNormSite;
      const cache = caches[j - 1] as NormalizedCache;
      const y = graph.nodes[graph.cuts[j - 1] as number]?.outputs[0] as number;
      const g = result.inputGrads.get(y) ?? tf.zerosLike(cache.xhat);
      const { dA, dGamma, dBeta } = await backward(site, g, cache, collective);
      grads.set(site.gamma.name, dGamma);
      grads.set(site.beta.name, dBeta);
      const before = graph.segments[j - 1] as Segment;
      upstream = before.outputs.map((id, i) => {
        const carried = result.inputGrads.get(id);
        if (i > 0) return carried === undefined ? tf.zerosLike(inputs[j]?.get(id) as tf.Tensor) : tf.clone(carried);
        return carried === undefined ? (dA as tf.Tensor) : tf.tidy(() => tf.add(dA as tf.Tensor, carried));
      });
      if (upstream[0] !== dA) dA?.dispose();
      tf.dispose([...result.inputGrads.values(), ...(result.inputGrads.has(y) ? [] : [g])]);
    }
  } catch (error) {
    tf.dispose(upstream ?? []);
    for (const grad of grads.values()) grad.dispose();
    throw error;
  }
  return { grads, lossSum };
}

/**
 * Gradients of one segment: of the loss sum for the last segment (upstream null), else of
 * Σ_k Σ(output_k · upstream_k), with respect to its variables and, when asked, its inputs.
 */
function segmentGradients(
  runner: SegmentRunner,
  segment: Segment,
  inputs: TensorMap,
  upstream: readonly tf.Tensor[] | null,
  wantInputGrads: boolean,
): { grads: Map<string, tf.Tensor>; inputGrads: Map<number, tf.Tensor>; value: number } {
  const inputVars = new Map<number, tf.Variable>();
  if (wantInputGrads)
    for (const id of segment.inputs) inputVars.set(id, tf.variable(inputs.get(id) as tf.Tensor, true));
  const variables = [...runner.variablesOf(segment.from, segment.to), ...inputVars.values()];
  try {
    if (variables.length === 0) return { grads: new Map(), inputGrads: new Map(), value: 0 };
    const { value, grads } = tf.variableGrads(() => {
      const values: TensorMap = new Map(
        segment.inputs.map((id) => [id, inputVars.get(id) ?? (inputs.get(id) as tf.Tensor)]),
      );
      runner.run(values, segment.from, segment.to);
      const outs = segment.outputs.map((id) => values.get(id) as tf.Tensor);
      if (upstream === null) return runner.lossSum(outs[0] as tf.Tensor);
      const terms = outs.map((out, k) => tf.sum<tf.Scalar>(tf.mul(out, upstream[k] as tf.Tensor)));
      return terms.length === 1 ? (terms[0] as tf.Scalar) : tf.addN(terms);
    }, variables);
    const loss = value.dataSync()[0] as number;
    value.dispose();
    const inputGrads = new Map<number, tf.Tensor>();
    const varNames = new Set<string>();
    for (const [id, v] of inputVars) {
      varNames.add(v.name);
      const grad = grads[v.name];
      if (grad !== undefined) inputGrads.set(id, grad);
    }
    const own = new Map(Object.entries(grads).filter(([name]) => !varNames.has(name)));
    return { grads: own, inputGrads, value: loss };
  } finally {
    for (const v of inputVars.values()) v.dispose();
  }
}
