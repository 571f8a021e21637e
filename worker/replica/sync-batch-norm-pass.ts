// One forward/backward pass of a model whose BatchNorm layers use global-batch statistics
// (sync-batch-norm.ts has the math). The model is cut at its BatchNorm layers into segments;
// this module walks them: forward to gather every layer's statistics, then backward from the
// loss, one segment and one BatchNorm at a time.
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

/** What the pass needs from the replica. */
export interface SegmentRunner {
  readonly layerCount: number;
  /** Layers [from, to) in training mode (seeded dropout masks); the caller owns the result. */
  run(h: tf.Tensor, from: number, to: number): tf.Tensor;
  /** Trainable variables of layers [from, to). */
  variablesOf(from: number, to: number): tf.Variable[];
  /** Sum of the per-sample losses of the model's output. */
  lossSum(output: tf.Tensor): tf.Scalar;
}

export interface PassResult {
  /** Gradient of the loss sum by variable name; the caller disposes them. */
  grads: Map<string, tf.Tensor>;
  lossSum: number;
}

/** Runs the pass on `xs` (null: an empty slice that only joins the collectives). */
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
  const bounds = segmentBounds(runner.layerCount, sites);
  const { inputs, caches } = await forward(runner, sites, bounds, xs, collective);
  try {
    return await backwardPass(runner, sites, bounds, inputs, caches, collective, grads);
  } finally {
    tf.dispose(inputs.slice(1));
    for (const cache of caches) tf.dispose([cache.xhat, cache.scale]);
  }
}

/** Segment j is layers [from, to): before the first BatchNorm, between two, after the last. */
function segmentBounds(layerCount: number, sites: readonly BatchNormSite[]): Array<{ from: number; to: number }> {
  const cuts = sites.map((s) => s.index);
  return [...cuts, layerCount].map((to, j) => ({ from: j === 0 ? 0 : (cuts[j - 1] as number) + 1, to }));
}

/** Inputs of every segment (inputs[0] = xs) and every BatchNorm's cache, gathering global statistics on the way. */
async function forward(
  runner: SegmentRunner,
  sites: readonly BatchNormSite[],
  bounds: ReadonlyArray<{ from: number; to: number }>,
  xs: tf.Tensor,
  collective: Collective,
): Promise<{ inputs: tf.Tensor[]; caches: NormalizedCache[] }> {
  const inputs = [xs];
  const caches: NormalizedCache[] = [];
  try {
    for (const [j, site] of sites.entries()) {
      const { from, to } = bounds[j] as { from: number; to: number };
      const a = runner.run(inputs[j] as tf.Tensor, from, to);
      try {
        const { y, cache } = normalize(site, a, await globalStatistics(site, a, collective));
        inputs.push(y);
        caches.push(cache);
      } finally {
        a.dispose();
      }
    }
  } catch (error) {
    tf.dispose(inputs.slice(1));
    for (const cache of caches) tf.dispose([cache.xhat, cache.scale]);
    throw error;
  }
  return { inputs, caches };
}

/** From the loss back to the input: segment k, BatchNorm k, segment k−1, ..., segment 0. */
async function backwardPass(
  runner: SegmentRunner,
  sites: readonly BatchNormSite[],
  bounds: ReadonlyArray<{ from: number; to: number }>,
  inputs: readonly tf.Tensor[],
  caches: readonly NormalizedCache[],
  collective: Collective,
  grads: Map<string, tf.Tensor>,
): Promise<PassResult> {
  let upstream: tf.Tensor | null = null; // ∂L/∂(output of segment j)
  let lossSum = 0;
  try {
    for (let j = bounds.length - 1; j >= 0; j--) {
      const { from, to } = bounds[j] as { from: number; to: number };
      const segment = segmentGradients(runner, from, to, inputs[j] as tf.Tensor, upstream, j > 0);
      if (j === bounds.length - 1) lossSum = segment.value;
      upstream?.dispose();
      upstream = null;
      for (const [name, grad] of segment.grads) grads.set(name, grad);
      if (j === 0) break;
      const site = sites[j - 1] as BatchNormSite;
      const { dA, dGamma, dBeta } = await backward(
        site,
        segment.inputGrad,
        caches[j - 1] as NormalizedCache,
        collective,
      );
      segment.inputGrad?.dispose();
      grads.set(site.gamma.name, dGamma);
      grads.set(site.beta.name, dBeta);
      upstream = dA;
    }
  } catch (error) {
    upstream?.dispose();
    for (const grad of grads.values()) grad.dispose();
    throw error;
  }
  return { grads, lossSum };
}

/**
 * Gradients of one segment: of the loss sum for the last segment (upstream null), else of
 * Σ(segment(input) · upstream), with respect to its variables and, when asked, its input.
 */
function segmentGradients(
  runner: SegmentRunner,
  from: number,
  to: number,
  input: tf.Tensor,
  upstream: tf.Tensor | null,
  wantInputGrad: boolean,
): { grads: Map<string, tf.Tensor>; inputGrad: tf.Tensor | null; value: number } {
  const inputVar = wantInputGrad ? tf.variable(input, true) : null;
  const variables = [...runner.variablesOf(from, to), ...(inputVar === null ? [] : [inputVar])];
  try {
    if (variables.length === 0) return { grads: new Map(), inputGrad: null, value: 0 };
    const { value, grads } = tf.variableGrads(() => {
      const out = runner.run(inputVar ?? input, from, to);
      return upstream === null ? runner.lossSum(out) : tf.sum(tf.mul(out, upstream));
    }, variables);
    const loss = value.dataSync()[0] as number;
    value.dispose();
    const inputGrad = inputVar === null ? null : (grads[inputVar.name] ?? null);
    const own = new Map(Object.entries(grads).filter(([name]) => name !== inputVar?.name));
    return { grads: own, inputGrad, value: loss };
  } finally {
    inputVar?.dispose();
  }
}
