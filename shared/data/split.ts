// Train / validation / test split: one seeded permutation of all samples; its first
// round(test × count) go to test, the next round(validation × count) to validation, the rest to
// train. The permutation depends on the job's seed only, never on world size or rank.
import { Rng, permutation, seedFrom } from '../rng.js';

/** Salt that separates the split permutation from the epoch orders (seedFrom(seed, epoch)). */
const SPLIT_SALT = 0x5_91_17; // "split"

export interface SplitFractions {
  validation: number;
  test: number;
}

export interface SplitIndices {
  train: Uint32Array;
  validation: Uint32Array;
  test: Uint32Array;
}

export function splitIndices(count: number, fractions: SplitFractions, seed: number): SplitIndices {
  const order = permutation(count, new Rng(seedFrom(seed, SPLIT_SALT)));
  const testCount = Math.min(count, Math.round(fractions.test * count));
  const validationCount = Math.min(count - testCount, Math.round(fractions.validation * count));
  return {
    test: order.slice(0, testCount),
    validation: order.slice(testCount, testCount + validationCount),
    train: order.slice(testCount + validationCount),
  };
}

/** Rows `indices` of a row-major matrix with `rowSize` columns, in that order. */
export function gatherRows(matrix: Float32Array, rowSize: number, indices: Uint32Array): Float32Array {
  const out = new Float32Array(indices.length * rowSize);
  indices.forEach((row, i) => out.set(matrix.subarray(row * rowSize, (row + 1) * rowSize), i * rowSize));
  return out;
}
