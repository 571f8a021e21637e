// addFloat32Into must equal the plain float32 loop bit for bit: the ring's ranks stay
// bit-identical only if every reduction rounds exactly as before.
import { describe, expect, it } from 'vitest';
import {
  addFloat32Into,
  REDUCE_WINDOW_BYTES,
  reducerFor,
  reducibleFloat32Array,
  SIMD_ADD_AVAILABLE,
} from '../../worker/collectives/simd-add.js';
import { OptimizerArena } from '../../worker/replica/optimizers/optimizer-kernels.js';

function plainSum(target: Float32Array, source: Float32Array): Float32Array {
  const out = target.slice();
  for (let i = 0; i < source.length; i++) out[i] = out[i]! + source[i]!;
  return out;
}

/** Deterministic values spanning many exponents, so roundings and cancellations occur. */
function values(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  let state = seed >>> 0;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = (state / 2 ** 32 - 0.5) * 2 ** ((state % 41) - 20);
  }
  return out;
}

/** Index of the first element whose bits differ, or −1 (Object.is tells −0 from 0 and NaN from numbers). */
function firstDifference(actual: Float32Array, expected: Float32Array): number {
  if (actual.length !== expected.length) return Math.min(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) if (!Object.is(actual[i], expected[i])) return i;
  return -1;
}

describe('addFloat32Into', () => {
  it('runs the wasm SIMD path on this runtime', () => {
    expect(SIMD_ADD_AVAILABLE).toBe(true);
  });

  it.each([0, 1, 15, 16, 17, 63, 64, 65, 1000, 32768, 32769, 100_003])(
    'equals the plain loop bit for bit at length %i',
    (length) => {
      const target = values(length, length + 1);
      const source = values(length, length + 7);
      const expected = plainSum(target, source);
      addFloat32Into(target, source);
      expect(firstDifference(target, expected)).toBe(-1);
    },
  );

  it('handles unaligned views and adds only source.length elements', () => {
    const backing = values(70_000, 3);
    const target = backing.subarray(3, 3 + 40_001);
    const source = values(70_000, 5).subarray(1, 40_001);
    const after = backing[3 + 40_000];
    const expected = plainSum(target, source);
    addFloat32Into(target, source);
    expect(firstDifference(target, expected)).toBe(-1);
    expect(backing[3 + 40_000]).toBe(after);
  });

  it('rounds special values like the plain loop (±0, ±Infinity, NaN, subnormals, overflow)', () => {
    const specials = [0, -0, Infinity, -Infinity, NaN, 1e-45, -1e-45, 3.4e38, -3.4e38, 1, -1, 2 ** -149];
    const pairs = specials.flatMap((a) => specials.map((b) => [a, b] as const));
    const target = new Float32Array(Array.from({ length: 128 }, (_, i) => pairs[i % pairs.length]![0]));
    const source = new Float32Array(Array.from({ length: 128 }, (_, i) => pairs[i % pairs.length]![1]));
    const expected = plainSum(target, source);
    addFloat32Into(target, source);
    expect(firstDifference(target, expected)).toBe(-1);
  });

  it('rejects a target shorter than the source', () => {
    expect(() => addFloat32Into(new Float32Array(3), new Float32Array(4))).toThrow(RangeError);
  });
});

describe('in-place reduction from a receive window', () => {
  it.each([1, 15, 16, 17, 64, 1000, REDUCE_WINDOW_BYTES / 4])(
    'adds %i window floats into a buffer of the same memory, bit for bit as the plain loop',
    (count) => {
      const buffer = reducibleFloat32Array(count + 40);
      const reducer = reducerFor(buffer);
      expect(reducer).toBeDefined();
      buffer.set(values(count + 40, count));
      const source = values(count, count + 3);
      new Float32Array(reducer!.window.buffer, reducer!.window.byteOffset, count).set(source);
      // An unaligned region (offset 3) with untouched neighbours on both sides.
      const target = buffer.subarray(3, 3 + count);
      const expected = plainSum(target, source);
      const [before, after] = [buffer[2], buffer[3 + count]];
      reducer!.addWindowInto(target);
      expect(firstDifference(target, expected)).toBe(-1);
      expect([buffer[2], buffer[3 + count]]).toEqual([before, after]);
    },
  );

  it('gives each reducible buffer its own window, outside the buffer', () => {
    const [a, b] = [reducibleFloat32Array(1000), reducibleFloat32Array(1000)];
    const [windowA, windowB] = [reducerFor(a)!.window, reducerFor(b)!.window];
    expect(windowA.buffer).toBe(a.buffer);
    expect(windowA.buffer).not.toBe(windowB.buffer);
    expect(windowA.byteOffset).toBeGreaterThanOrEqual(a.byteOffset + a.byteLength);
    expect(windowA.byteOffset % 16).toBe(0);
  });

  it("serves the optimizer arena's buffers (the worker's gradient), and not plain arrays", () => {
    const arena = OptimizerArena.create([1000, 1000]);
    const gradient = arena!.allocate(1000);
    const reducer = reducerFor(gradient);
    expect(reducer?.serves(gradient)).toBe(true);
    expect(reducer!.window.byteOffset).toBeGreaterThanOrEqual(gradient.byteOffset + gradient.byteLength);
    expect(() => arena!.allocate(1001)).toThrow(/do not fit/); // the window is never handed out
    expect(reducerFor(new Float32Array(8))).toBeUndefined();
  });
});
