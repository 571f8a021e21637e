// Robust mode (job `robust.gradientNormFactor`): before the gradient all-reduce, every rank shares
// the norm of its local mean gradient, and each rank whose norm is more than `factor` times the
// median of the others' is named an outlier. Every rank computes the same list from the same
// gathered norms, so they all abort the step alike and the coordinator evicts the named ranks.
//
// It catches a contribution scaled up or drowned in noise (a sign flip times ten, random values).
// It cannot catch a perturbation whose norm stays within the factor (a small bias, a flipped sign
// at the same scale), a colluding majority (the median is theirs), or tell who is honest when a
// rank's norm is smaller than the others' (only larger ones are named). With two ranks each is
// judged against the other alone.
import { CollectiveError } from '../../shared/errors.js';

/** A step aborted because ranks sent outlying gradients; `outlierRanks` are evicted. */
export class GradientOutlierError extends CollectiveError {
  constructor(
    readonly outlierRanks: number[],
    readonly norms: number[],
    readonly factor: number,
  ) {
    super(
      `gradient norm of rank(s) ${outlierRanks.join(', ')} is more than ${factor}x the median of the others (norms: ${norms.map((n) => n.toPrecision(4)).join(', ')})`,
    );
  }
}

/** L2 norm of `sum / count` (a rank's mean gradient), in float64. */
export function meanGradientNorm(sum: Float32Array, count: number): number {
  let squares = 0;
  for (let i = 0; i < sum.length; i++) squares += (sum[i] as number) ** 2;
  return Math.sqrt(squares) / Math.max(1, count);
}

/** Ranks whose finite norm exceeds `factor` × the median of the other ranks' norms. */
export function gradientOutliers(norms: ArrayLike<number>, factor: number): number[] {
  const all = Array.from(norms);
  if (all.length < 2) return [];
  const outliers: number[] = [];
  all.forEach((norm, rank) => {
    const others = all.filter((_, r) => r !== rank && Number.isFinite(all[r]));
    if (others.length === 0 || !Number.isFinite(norm)) return;
    if (norm > factor * median(others)) outliers.push(rank);
  });
  return outliers;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
