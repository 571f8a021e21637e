// The shard plan: which training samples form each global batch, and which slice each rank takes.
// This is "What a step means" in ARCHITECTURE.md, as pure functions:
//   - epoch e visits the training samples in permutation(seedFrom(seed, e)); world size plays no part;
//   - global batch b of an epoch is the next B samples of that order (the last one may be short);
//   - rank r of N takes a contiguous slice; sizes differ by at most 1, earlier ranks take the extra.
// Because the batch never depends on N, the mean gradient over it is the same for any N.
import { Rng, permutation, seedFrom } from './rng.js';

/** Order of training samples in epoch `epoch`: permutation seeded by seedFrom(seed, epoch); independent of world size. */
export function epochOrder(trainCount: number, seed: number, epoch: number): Uint32Array {
  checkCount('epochOrder: epoch', epoch);
  return permutation(trainCount, new Rng(seedFrom(seed, epoch)));
}

/** Number of global batches per epoch: ceil(trainCount / globalBatch) (the last one may be short). */
export function batchesPerEpoch(trainCount: number, globalBatch: number): number {
  checkCount('batchesPerEpoch: trainCount', trainCount);
  checkPositive('batchesPerEpoch: globalBatch', globalBatch);
  return Math.ceil(trainCount / globalBatch);
}

/** The sample indices of global batch `batchInEpoch` of `epoch` (a copy, safe to keep). */
export function globalBatch(order: Uint32Array, globalBatchSize: number, batchInEpoch: number): Uint32Array {
  const batches = batchesPerEpoch(order.length, globalBatchSize);
  if (!Number.isInteger(batchInEpoch) || batchInEpoch < 0 || batchInEpoch >= batches) {
    throw new RangeError(`globalBatch: batchInEpoch ${batchInEpoch} is outside [0, ${batches})`);
  }
  const start = batchInEpoch * globalBatchSize;
  return order.slice(start, Math.min(start + globalBatchSize, order.length));
}

/**
 * Contiguous slice bounds of a batch of `size` for each rank: sizes differ by at most 1, earlier
 * ranks take the extra (128 over 3 -> 43,43,42). A rank may get 0 when size < worldSize.
 * Invariant: slices are in rank order, touch end to start, and cover [0, size) exactly.
 */
export function rankSlices(size: number, worldSize: number): Array<{ start: number; end: number }> {
  checkCount('rankSlices: size', size);
  checkPositive('rankSlices: worldSize', worldSize);
  const base = Math.floor(size / worldSize);
  const extra = size % worldSize;
  const slices: Array<{ start: number; end: number }> = [];
  for (let rank = 0; rank < worldSize; rank++) {
    const start = rank * base + Math.min(rank, extra);
    slices.push({ start, end: start + base + (rank < extra ? 1 : 0) });
  }
  return slices;
}

/** Convenience: the indices rank r takes of that global batch. */
export function shardFor(batch: Uint32Array, rank: number, worldSize: number): Uint32Array {
  const slice = rankSlices(batch.length, worldSize)[rank];
  if (slice === undefined || !Number.isInteger(rank)) {
    throw new RangeError(`shardFor: rank ${rank} is outside [0, ${worldSize})`);
  }
  return batch.slice(slice.start, slice.end);
}

/** Evaluation sharding: split 0..count-1 (or given indices) contiguously over ranks the same way. */
export function evalShards(count: number | Uint32Array, worldSize: number): Uint32Array[] {
  const indices = typeof count === 'number' ? iota(count) : count;
  return rankSlices(indices.length, worldSize).map(({ start, end }) => indices.slice(start, end));
}

/** Cursor arithmetic: global step s -> (epoch, batchInEpoch). Steps count from 0 across epochs. */
export function cursorOf(
  step: number,
  trainCount: number,
  globalBatch: number,
): { epoch: number; batchInEpoch: number } {
  checkCount('cursorOf: step', step);
  const batches = batchesPerEpoch(trainCount, globalBatch);
  if (batches === 0) throw new RangeError('cursorOf: there are no training samples');
  return { epoch: Math.floor(step / batches), batchInEpoch: step % batches };
}

/** The epoch of the last of `stepsDone` steps (0 before any step): what an epoch-end event reports. */
export function epochOfStepsDone(stepsDone: number, trainCount: number, globalBatch: number): number {
  return stepsDone === 0 ? 0 : cursorOf(stepsDone - 1, trainCount, globalBatch).epoch;
}

/** Cursor arithmetic: (epoch, batchInEpoch) -> global step; the inverse of cursorOf. */
export function stepOf(epoch: number, batchInEpoch: number, trainCount: number, globalBatch: number): number {
  checkCount('stepOf: epoch', epoch);
  const batches = batchesPerEpoch(trainCount, globalBatch);
  if (!Number.isInteger(batchInEpoch) || batchInEpoch < 0 || batchInEpoch >= batches) {
    throw new RangeError(`stepOf: batchInEpoch ${batchInEpoch} is outside [0, ${batches})`);
  }
  return epoch * batches + batchInEpoch;
}

/**
 * The plan of one job, by global step. Keeps the current epoch's order, so walking steps in
 * sequence computes each permutation once.
 */
export class ShardPlan {
  private cachedEpoch = -1;
  private cachedOrder: Uint32Array = new Uint32Array(0);

  constructor(
    readonly trainCount: number,
    readonly globalBatchSize: number,
    readonly seed: number,
  ) {
    checkPositive('ShardPlan: trainCount', trainCount);
    checkPositive('ShardPlan: globalBatchSize', globalBatchSize);
  }

  get batchesPerEpoch(): number {
    return batchesPerEpoch(this.trainCount, this.globalBatchSize);
  }

  /** Sample indices of global step `step`. */
  batchAt(step: number): Uint32Array {
    const { epoch, batchInEpoch } = cursorOf(step, this.trainCount, this.globalBatchSize);
    if (epoch !== this.cachedEpoch) {
      this.cachedOrder = epochOrder(this.trainCount, this.seed, epoch);
      this.cachedEpoch = epoch;
    }
    return globalBatch(this.cachedOrder, this.globalBatchSize, batchInEpoch);
  }

  /** Sample indices rank `rank` of `worldSize` trains on at global step `step`. */
  shardAt(step: number, rank: number, worldSize: number): Uint32Array {
    return shardFor(this.batchAt(step), rank, worldSize);
  }
}

function iota(count: number): Uint32Array {
  checkCount('evalShards: count', count);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = i;
  return out;
}

function checkCount(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`${what} must be a non-negative integer, got ${value}`);
}

function checkPositive(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new RangeError(`${what} must be a positive integer, got ${value}`);
}
