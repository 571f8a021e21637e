// Random-access data: what the coordinator plans with (split sizes, shapes, hash) and what a
// worker gathers its slice of each batch from (`fill`). Three kinds stand behind it: the
// in-memory Dataset of the built-in formats, a packed folder read by offset (packed-source.ts),
// and a user's data module (module-source.ts). Any rank can serve any index: that is what keeps
// the step contract independent of where the data lives.
//
// Invariants:
// - fill writes rows in the order of `indices`, from offset 0 of xOut/yOut (featureSize and
//   labelSize floats per row); an index at or past the split's count is a RangeError.
// - `hash` identifies the exact bytes fill returns (for a module: its code and settings), so a
//   worker whose data differs from the coordinator's is refused at join.
import type { Job } from '../job-schema.js';
import { loadDataset, type Dataset, type Split, type SplitName } from './dataset.js';
import { openModuleSource } from './module-source.js';
import { openPackedSource } from './packed-source.js';

/** Everything about a dataset but its samples. */
export type DatasetInfo = Omit<Dataset, SplitName>;

/** What planning, probing and export need: the metadata and each split's size, no samples. */
export type DataShape = DatasetInfo & Record<SplitName, { count: number }>;

export interface DataSource extends DataShape {
  /** Copies the rows `indices` of `split` into xOut and yOut. Synchronous. */
  fill: (split: SplitName, indices: Uint32Array, xOut: Float32Array, yOut: Float32Array) => void;
  /**
   * A hint that `indices` of `split` are wanted next (the coordinator sends each step's order one
   * ahead): a source may start reading them. Bounded: a later hint replaces an earlier one.
   */
  readAhead?: (split: SplitName, indices: Uint32Array) => void;
  /** Resolves once a read-ahead of exactly these rows has finished (at once when there is none). */
  settle?: (split: SplitName, indices: Uint32Array) => Promise<void>;
  /** Frees files and buffers. */
  close?: () => void;
}

/** The job's data as a source: packed and module sources open by reference, the rest load whole. */
export async function openDataSource(job: Job): Promise<DataSource> {
  switch (job.data.format) {
    case 'packed':
      return openPackedSource(job);
    case 'module':
      return openModuleSource(job);
    default:
      return memorySource(loadDataset(job));
  }
}

/** An in-memory Dataset as a source. */
export function memorySource(dataset: Dataset): DataSource & Dataset {
  return {
    ...dataset,
    fill: (split, indices, xOut, yOut) =>
      gatherInto(dataset[split], dataset.featureSize, dataset.labelSize, indices, xOut, yOut),
  };
}

/** Rows `indices` of an in-memory split into xOut/yOut. */
export function gatherInto(
  split: Split,
  featureSize: number,
  labelSize: number,
  indices: Uint32Array,
  xOut: Float32Array,
  yOut: Float32Array,
): void {
  for (let i = 0; i < indices.length; i++) {
    const row = indices[i] ?? 0;
    if (row >= split.count) throw new RangeError(`sample index ${row} is outside the split (${split.count} samples)`);
    xOut.set(split.x.subarray(row * featureSize, (row + 1) * featureSize), i * featureSize);
    yOut.set(split.y.subarray(row * labelSize, (row + 1) * labelSize), i * labelSize);
  }
}

/** A source as it is, or an in-memory Dataset served as one. */
export function asDataSource(data: DataSource | Dataset): DataSource {
  return 'fill' in data ? data : memorySource(data);
}
