// Synchronised BatchNorm (`model.syncBatchNorm: true`): batch statistics over the GLOBAL batch,
// so N ranks compute what one rank would on the whole batch. Used by Replica.computeGradientsSynced.
//
// A BatchNorm layer couples the samples of a batch, so its forward pass needs a collective
// mid-graph and so does its backward pass. The model is therefore cut at its BatchNorm layers
// into segments S0 | BN1 | S1 | ... | BNk | Sk (for a graph: its nodes in topological order, each
// cut carrying every live tensor, sync-batch-norm-graph.ts), each segment run by TensorFlow.js and
// each BatchNorm done here, per channel c (the last axis), over all M rows (samples × positions) of
// the global batch:
//
//   forward   one all-reduce of [Σ(a − s), Σ(a − s)², rows], s = the moving mean (the same on
//             every rank; the shift keeps the one-pass variance accurate):
//             μ = s + S1/M,  σ² = S2/M − (S1/M)²  (biased, as tfjs),  x̂ = (a − μ)/√(σ² + ε),
//             y = γ·x̂ + β;  moving ← moving − (moving − stat)·(1 − momentum)  (tfjs's update)
//   backward  g = ∂L/∂y for this rank's rows (from the segment after, itself exact), then one
//             all-reduce of [Σg, Σg·x̂]:
//             ∂L/∂a = γ/√(σ² + ε) · (g − Σg/M − x̂·Σg·x̂/M),  ∂L/∂β = Σg,  ∂L/∂γ = Σg·x̂
//             (the parameter sums are this rank's share; the gradient all-reduce adds them up).
//
// L is the SUM of per-sample losses over the global batch, as everywhere in ringtrain. Each
// segment's backward is tf.variableGrads of Σ_k Σ(output_k·g_k) with the inputs held in
// temporary variables, so segments run forward twice (statistics pass, then backward pass).
// Invariant: every rank issues the same collectives in the same order (2 per BatchNorm layer),
// a rank with an empty slice included, so the ring never waits on a rank that skipped one.
import * as tf from '@tensorflow/tfjs';

/** An in-place sum over all ranks of a small buffer (one per call, in call order). */
export type Collective = (buffer: Float32Array) => Promise<void>;

/** One BatchNorm layer of the model and its variables. */
export interface BatchNormSite {
  index: number;
  channels: number;
  gamma: tf.Variable;
  beta: tf.Variable;
  movingMean: tf.LayerVariable;
  movingVariance: tf.LayerVariable;
  momentum: number;
  epsilon: number;
}

/** The BatchNorm layers among `layers` (a model's nodes in order); `index` is the position in `layers`. */
export function batchNormSitesOf(layers: readonly tf.layers.Layer[]): BatchNormSite[] {
  const sites: BatchNormSite[] = [];
  layers.forEach((layer, index) => {
    if (layer.getClassName() !== 'BatchNormalization') return;
    const config = layer.getConfig() as { momentum?: unknown; epsilon?: unknown; axis?: unknown };
    const axis = config.axis;
    if (axis !== -1 && axis !== (layer.outputShape as unknown[]).length - 1) {
      throw new Error(
        `syncBatchNorm: layer ${layer.name} normalises axis ${String(axis)}; only the last axis is supported`,
      );
    }
    const weight = (suffix: string): tf.LayerVariable => {
      const found = layer.weights.find((w) => w.originalName.endsWith(`/${suffix}`));
      if (found === undefined) throw new Error(`syncBatchNorm: layer ${layer.name} has no ${suffix}`);
      return found;
    };
    const gamma = weight('gamma').read() as tf.Variable;
    sites.push({
      index,
      channels: gamma.size,
      gamma,
      beta: weight('beta').read() as tf.Variable,
      movingMean: weight('moving_mean'),
      movingVariance: weight('moving_variance'),
      momentum: Number(config.momentum),
      epsilon: Number(config.epsilon),
    });
  });
  return sites;
}

/** Global statistics of one BatchNorm layer for this step. */
interface GlobalStats {
  mean: Float32Array;
  variance: Float32Array;
  rows: number;
}

/**
 * The forward collective: local [Σ(a − s), Σ(a − s)², rows] (zeros for an empty slice) summed
 * over ranks, turned into the global mean and variance, and the moving statistics updated.
 */
export async function globalStatistics(
  site: BatchNormSite,
  a: tf.Tensor | null,
  collective: Collective,
): Promise<GlobalStats> {
  const c = site.channels;
  const shift = site.movingMean.read().dataSync() as Float32Array;
  const buffer = new Float32Array(2 * c + 1);
  if (a !== null) {
    const sums = tf.tidy(() => {
      const d = tf.sub(tf.reshape(a, [-1, c]), site.movingMean.read());
      return tf.concat([tf.sum(d, 0), tf.sum(tf.square(d), 0)]);
    });
    buffer.set(sums.dataSync());
    sums.dispose();
    buffer[2 * c] = a.size / c;
  }
  await collective(buffer);
  const rows = buffer[2 * c] as number;
  const mean = new Float32Array(c);
  const variance = new Float32Array(c);
  for (let ch = 0; ch < c; ch++) {
    const m1 = (buffer[ch] as number) / rows;
    mean[ch] = (shift[ch] as number) + m1;
    variance[ch] = Math.max(0, (buffer[c + ch] as number) / rows - m1 * m1);
  }
  updateMoving(site.movingMean, mean, site.momentum);
  updateMoving(site.movingVariance, variance, site.momentum);
  return { mean, variance, rows };
}

function updateMoving(variable: tf.LayerVariable, value: Float32Array, momentum: number): void {
  tf.tidy(() => {
    const current = variable.read();
    variable.write(tf.sub(current, tf.mul(tf.sub(current, tf.tensor1d(value)), 1 - momentum)));
  });
}

/** What the backward pass keeps of a BatchNorm forward: x̂ and γ/√(σ² + ε). */
export interface NormalizedCache {
  xhat: tf.Tensor;
  scale: tf.Tensor1D;
  rows: number;
}

/** y = γ·x̂ + β with the global statistics; returns y and the cache (caller disposes both). */
export function normalize(
  site: BatchNormSite,
  a: tf.Tensor,
  stats: GlobalStats,
): { y: tf.Tensor; cache: NormalizedCache } {
  return tf.tidy(() => {
    const invStd = tf.rsqrt(tf.add(tf.tensor1d(stats.variance), site.epsilon));
    const xhat = tf.mul(tf.sub(a, tf.tensor1d(stats.mean)), invStd);
    const y = tf.add(tf.mul(xhat, site.gamma), site.beta);
    return { y, cache: { xhat, scale: tf.mul<tf.Tensor1D>(site.gamma, invStd), rows: stats.rows } };
  });
}

/**
 * The backward collective: from g = ∂L/∂y on this rank's rows (null for an empty slice) to
 * ∂L/∂a, plus this rank's shares of ∂L/∂γ and ∂L/∂β.
 */
export async function backward(
  site: BatchNormSite,
  g: tf.Tensor | null,
  cache: NormalizedCache | null,
  collective: Collective,
): Promise<{ dA: tf.Tensor | null; dGamma: tf.Tensor1D; dBeta: tf.Tensor1D }> {
  const c = site.channels;
  const buffer = new Float32Array(2 * c);
  if (g === null || cache === null) {
    await collective(buffer);
    return { dA: null, dGamma: tf.zeros([c]), dBeta: tf.zeros([c]) };
  }
  const [dBeta, dGamma] = tf.tidy(() => {
    const g2 = tf.reshape(g, [-1, c]);
    return [tf.sum<tf.Tensor1D>(g2, 0), tf.sum<tf.Tensor1D>(tf.mul(g2, tf.reshape(cache.xhat, [-1, c])), 0)];
  });
  const sums = tf.concat([dBeta, dGamma]);
  buffer.set(sums.dataSync());
  sums.dispose();
  try {
    await collective(buffer);
  } catch (error) {
    tf.dispose([dBeta, dGamma]);
    throw error;
  }
  const dA = tf.tidy(() => {
    const meanG = tf.tensor1d(buffer.subarray(0, c).map((v) => v / cache.rows));
    const meanGx = tf.tensor1d(buffer.subarray(c).map((v) => v / cache.rows));
    return tf.mul(cache.scale, tf.sub(tf.sub(g, meanG), tf.mul(cache.xhat, meanGx)));
  });
  return { dA, dGamma, dBeta };
}
