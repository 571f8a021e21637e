// A synthetic dataset of any size for `bench data`, computed from the sample index (never held
// in memory): `featureSize` uniform features in [-0.5, 0.5) from an integer hash, and a class
// label (index mod classes) that also lifts feature `label` by 1, so a model can learn it.
import type { DataSource } from '../shared/data/data-source.js';
import type { SplitName } from '../shared/data/dataset.js';

export const SYNTHETIC_CLASSES = 10;

/** `count` training samples (no validation or test split) with sparse class labels. */
export function syntheticSource(count: number, featureSize: number): DataSource {
  const fill = (split: SplitName, indices: Uint32Array, x: Float32Array, y: Float32Array): void => {
    if (split !== 'train' && indices.length > 0) throw new RangeError(`the synthetic set has no ${split} samples`);
    for (let i = 0; i < indices.length; i++) {
      const sample = indices[i] ?? 0;
      if (sample >= count) throw new RangeError(`sample index ${sample} is outside the split (${count} samples)`);
      const label = sample % SYNTHETIC_CLASSES;
      const row = i * featureSize;
      for (let j = 0; j < featureSize; j++) x[row + j] = hash(sample, j) / 4294967296 - 0.5;
      x[row + (label % featureSize)] = (x[row + (label % featureSize)] ?? 0) + 1;
      y[i] = label;
    }
  };
  return {
    name: `synthetic:${count}x${featureSize}`,
    inputShape: [featureSize],
    featureSize,
    labelSize: 1,
    task: 'classification',
    numClasses: SYNTHETIC_CLASSES,
    hash: `synthetic-${count}-${featureSize}`,
    train: { count },
    validation: { count: 0 },
    test: { count: 0 },
    fill,
  };
}

/** A 32-bit mix of (sample, feature) (murmur3's finaliser): cheap, deterministic, well spread. */
function hash(sample: number, feature: number): number {
  let h = Math.imul(sample, 0x9e3779b1) ^ Math.imul(feature + 1, 0x85ebca6b);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
