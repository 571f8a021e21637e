// Seeded RNG: known answers (so every machine and every release replays the same stream),
// state round trip, distribution sanity, and permutations.
import { describe, expect, test } from 'vitest';
import { Rng, permutation, seedFrom } from '../../shared/rng.js';

function draws(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.nextUint32());
}

describe('seedFrom', () => {
  test('is a pure function of its parts, with known answers', () => {
    expect(seedFrom(42, 0)).toBe(334482226);
    expect(seedFrom(42, 1)).toBe(2581837624);
    expect(seedFrom(42, 0)).toBe(seedFrom(42, 0));
  });

  test('separates order, arity and the high 32 bits', () => {
    const seeds = [
      seedFrom(1, 2),
      seedFrom(2, 1),
      seedFrom(1, 2, 0),
      seedFrom(1),
      seedFrom(1, 2 ** 32 + 2),
      seedFrom(1, -2),
    ];
    expect(new Set(seeds).size).toBe(seeds.length);
    for (const s of seeds) expect(Number.isInteger(s) && s >= 0 && s < 2 ** 32).toBe(true);
  });

  test('rejects non-integers', () => {
    expect(() => seedFrom(1.5)).toThrow(RangeError);
    expect(() => seedFrom(Number.NaN)).toThrow(RangeError);
  });
});

describe('Rng', () => {
  test('replays a known stream for a seed', () => {
    expect(draws(new Rng(42), 4)).toEqual([1073135188, 1283745302, 1919301084, 319986671]);
    expect(draws(new Rng(42), 100)).toEqual(draws(new Rng(42), 100));
    expect(draws(new Rng(43), 4)).not.toEqual(draws(new Rng(42), 4));
  });

  test('state() and fromState() continue the same stream', () => {
    const rng = new Rng(7);
    draws(rng, 37);
    rng.normal();
    const saved = JSON.parse(JSON.stringify(rng.state())) as number[];
    const expected = [...draws(rng, 10), rng.next(), rng.nextInt(1000), rng.normal()];
    const restored = Rng.fromState(saved);
    expect([...draws(restored, 10), restored.next(), restored.nextInt(1000), restored.normal()]).toEqual(expected);
  });

  test('fromState rejects malformed state', () => {
    expect(() => Rng.fromState([1, 2, 3])).toThrow(RangeError);
    expect(() => Rng.fromState([1, 2, 3, -1])).toThrow(RangeError);
    expect(() => Rng.fromState([1, 2, 3, 2 ** 32])).toThrow(RangeError);
  });

  test('next() is in [0, 1) with a mean near 1/2', () => {
    const rng = new Rng(1);
    const xs = Array.from({ length: 20_000 }, () => rng.next());
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(Math.abs(xs.reduce((a, b) => a + b, 0) / xs.length - 0.5)).toBeLessThan(0.01);
  });

  test('nextInt covers [0, max) evenly and validates max', () => {
    const rng = new Rng(2);
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 60_000; i++) counts[rng.nextInt(6)]! += 1;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
    expect(() => rng.nextInt(0)).toThrow(RangeError);
    expect(() => rng.nextInt(2.5)).toThrow(RangeError);
    expect(new Rng(3).nextInt(1)).toBe(0);
  });

  test('normal() has mean ~0 and variance ~1', () => {
    const rng = new Rng(3);
    const xs = Array.from({ length: 20_000 }, () => rng.normal());
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
    expect(xs.every(Number.isFinite)).toBe(true);
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
  });
});

describe('permutation', () => {
  test('is a permutation of 0..n-1', () => {
    for (const n of [0, 1, 2, 17, 1000]) {
      const p = permutation(n, new Rng(n));
      expect(p).toBeInstanceOf(Uint32Array);
      expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    }
  });

  test('is deterministic per seed and differs across seeds', () => {
    expect(permutation(100, new Rng(seedFrom(42, 0)))).toEqual(permutation(100, new Rng(seedFrom(42, 0))));
    expect(permutation(100, new Rng(seedFrom(42, 0)))).not.toEqual(permutation(100, new Rng(seedFrom(42, 1))));
  });
});
