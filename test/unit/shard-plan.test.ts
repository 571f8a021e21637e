// The shard plan is "What a step means": these tests pin its contract.
import { describe, expect, test } from 'vitest';
import {
  ShardPlan,
  batchesPerEpoch,
  cursorOf,
  epochOrder,
  evalShards,
  globalBatch,
  rankSlices,
  shardFor,
  stepOf,
} from '../../shared/shard-plan.js';

const sizes = (slices: Array<{ start: number; end: number }>): number[] => slices.map((s) => s.end - s.start);
const concat = (parts: Uint32Array[]): number[] => parts.flatMap((p) => [...p]);

describe('epochOrder', () => {
  test('is a permutation, deterministic, and differs across epochs and seeds', () => {
    const e0 = epochOrder(500, 42, 0);
    expect([...e0].sort((a, b) => a - b)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(epochOrder(500, 42, 0)).toEqual(e0);
    expect(epochOrder(500, 42, 1)).not.toEqual(e0);
    expect(epochOrder(500, 43, 0)).not.toEqual(e0);
  });

  test('does not depend on world size: batches of any N concatenate to the same order', () => {
    const trainCount = 1000;
    const order = epochOrder(trainCount, 7, 3);
    for (const worldSize of [1, 2, 3, 5, 8]) {
      const plan = new ShardPlan(trainCount, 128, 7);
      const seen: number[] = [];
      for (let b = 0; b < plan.batchesPerEpoch; b++) {
        const step = stepOf(3, b, trainCount, 128);
        for (let rank = 0; rank < worldSize; rank++) seen.push(...plan.shardAt(step, rank, worldSize));
      }
      expect(seen).toEqual([...order]);
    }
  });
});

describe('global batches', () => {
  test('batchesPerEpoch rounds up and the last batch is short', () => {
    expect(batchesPerEpoch(8000, 128)).toBe(63);
    expect(batchesPerEpoch(256, 128)).toBe(2);
    expect(batchesPerEpoch(0, 128)).toBe(0);
    const order = epochOrder(8000, 42, 0);
    expect(globalBatch(order, 128, 0)).toEqual(order.slice(0, 128));
    expect(globalBatch(order, 128, 62).length).toBe(8000 - 62 * 128);
    expect(() => globalBatch(order, 128, 63)).toThrow(RangeError);
    expect(() => batchesPerEpoch(10, 0)).toThrow(RangeError);
  });

  test('globalBatch returns a copy', () => {
    const order = epochOrder(10, 1, 0);
    const first = order[0];
    globalBatch(order, 4, 0).fill(99);
    expect(order[0]).toBe(first);
  });
});

describe('rankSlices', () => {
  test('128 over 3 is 43, 43, 42', () => {
    expect(rankSlices(128, 3)).toEqual([
      { start: 0, end: 43 },
      { start: 43, end: 86 },
      { start: 86, end: 128 },
    ]);
  });

  test('a batch smaller than the world leaves later ranks empty', () => {
    expect(sizes(rankSlices(2, 4))).toEqual([1, 1, 0, 0]);
    expect(sizes(rankSlices(0, 3))).toEqual([0, 0, 0]);
    expect(rankSlices(2, 4)[3]).toEqual({ start: 2, end: 2 });
  });

  test('slices tile the batch and differ by at most one', () => {
    for (let size = 0; size <= 40; size++) {
      for (let worldSize = 1; worldSize <= 7; worldSize++) {
        const slices = rankSlices(size, worldSize);
        expect(slices.length).toBe(worldSize);
        expect(slices[0]?.start).toBe(0);
        expect(slices[worldSize - 1]?.end).toBe(size);
        slices.slice(1).forEach((s, i) => expect(s.start).toBe(slices[i]?.end));
        const n = sizes(slices);
        expect(Math.max(...n) - Math.min(...n)).toBeLessThanOrEqual(1);
        expect(n).toEqual([...n].sort((a, b) => b - a));
      }
    }
  });
});

describe('shardFor and evalShards', () => {
  test('the union of shards over ranks is the global batch exactly, in order', () => {
    const order = epochOrder(1000, 42, 2);
    for (const worldSize of [1, 2, 3, 4, 7, 16]) {
      for (const b of [0, 7]) {
        const batch = globalBatch(order, 128, b);
        const shards = Array.from({ length: worldSize }, (_, r) => shardFor(batch, r, worldSize));
        expect(concat(shards)).toEqual([...batch]);
      }
    }
    expect(() => shardFor(order, 3, 3)).toThrow(RangeError);
  });

  test('evalShards splits 0..count-1, or given indices, the same way', () => {
    expect(evalShards(10, 3).map((s) => [...s])).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6],
      [7, 8, 9],
    ]);
    expect(evalShards(0, 2).map((s) => s.length)).toEqual([0, 0]);
    const given = Uint32Array.from([9, 4, 7, 1, 3]);
    expect(evalShards(given, 2).map((s) => [...s])).toEqual([
      [9, 4, 7],
      [1, 3],
    ]);
  });
});

describe('cursor arithmetic', () => {
  test('cursorOf and stepOf are inverse', () => {
    // 1000 samples / 128 = 8 batches per epoch.
    expect(cursorOf(0, 1000, 128)).toEqual({ epoch: 0, batchInEpoch: 0 });
    expect(cursorOf(7, 1000, 128)).toEqual({ epoch: 0, batchInEpoch: 7 });
    expect(cursorOf(8, 1000, 128)).toEqual({ epoch: 1, batchInEpoch: 0 });
    for (let step = 0; step < 50; step++) {
      const { epoch, batchInEpoch } = cursorOf(step, 1000, 128);
      expect(stepOf(epoch, batchInEpoch, 1000, 128)).toBe(step);
    }
    expect(() => stepOf(0, 8, 1000, 128)).toThrow(RangeError);
    expect(() => cursorOf(0, 0, 128)).toThrow(RangeError);
  });

  test('ShardPlan.batchAt agrees with the free functions across an epoch boundary', () => {
    const plan = new ShardPlan(300, 64, 5);
    for (const step of [0, 4, 5, 9, 10, 3]) {
      const { epoch, batchInEpoch } = cursorOf(step, 300, 64);
      expect(plan.batchAt(step)).toEqual(globalBatch(epochOrder(300, 5, epoch), 64, batchInEpoch));
    }
  });
});
