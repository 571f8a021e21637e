// Robust mode's verdict: which ranks' gradient norms are outliers against the median of the others.
import { describe, expect, it } from 'vitest';
import { gradientOutliers, meanGradientNorm } from '../../worker/replica/gradient-outliers.js';

describe('gradientOutliers', () => {
  it('names a rank more than the factor above the median of the others, and only it', () => {
    expect(gradientOutliers([1, 1.2, 12, 0.9], 4)).toEqual([2]);
    expect(gradientOutliers([1, 1.2, 3.9, 0.9], 4)).toEqual([]);
  });

  it('names nobody for a single rank, and ignores non-finite norms (the NaN skip handles those)', () => {
    expect(gradientOutliers([100], 4)).toEqual([]);
    expect(gradientOutliers([1, Number.NaN, 1.1], 4)).toEqual([]);
    expect(gradientOutliers([1, Number.NaN, 50], 4)).toEqual([2]);
  });

  it('with two ranks judges each against the other: only the larger can be named', () => {
    expect(gradientOutliers([1, 10], 4)).toEqual([1]);
    expect(gradientOutliers([10, 1], 4)).toEqual([0]);
  });

  it('cannot see a colluding majority: the median is theirs', () => {
    expect(gradientOutliers([1, 10, 10], 4)).toEqual([]);
  });
});

describe('meanGradientNorm', () => {
  it('is the L2 norm of sum / count', () => {
    expect(meanGradientNorm(new Float32Array([3, 4]), 5)).toBeCloseTo(1, 12);
    expect(meanGradientNorm(new Float32Array([3, 4]), 0)).toBe(5);
  });
});
