// Averaging, global-norm clipping, finiteness checks and the replica hash.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  allFinite,
  averageWithNorm,
  clipByGlobalNorm,
  globalNorm,
  hashParams,
} from '../../worker/replica/gradient-ops.js';

describe('averageWithNorm', () => {
  it('divides every element by the count', () => {
    const grad = new Float32Array([2, -4, 6, 0]);
    expect(averageWithNorm(grad, 4)).toBe(Math.sqrt(0.25 + 1 + 2.25));
    expect([...grad]).toEqual([0.5, -1, 1.5, 0]);
  });

  it('gives the same bits as dividing each element, then globalNorm', () => {
    const values = Float32Array.from({ length: 1001 }, (_, i) => Math.sin(i * 1.7) * 10 ** ((i % 13) - 6));
    const separate = values.map((v) => v / 3);
    const fused = values.slice();
    expect(averageWithNorm(fused, 3)).toBe(globalNorm(separate));
    expect(fused).toEqual(separate);
  });

  it('returns a non-finite norm exactly when an element is non-finite, never for large finite ones', () => {
    expect(averageWithNorm(new Float32Array([3.4e38, -3.4e38, 3.4e38]), 1)).toBeLessThan(Infinity);
    expect(averageWithNorm(new Float32Array([1, NaN, 2]), 2)).toBeNaN();
    expect(averageWithNorm(new Float32Array([1, -Infinity]), 2)).toBe(Infinity);
    expect(() => averageWithNorm(new Float32Array(1), 0)).toThrow(RangeError);
    expect(() => averageWithNorm(new Float32Array(1), NaN)).toThrow(RangeError);
    expect(() => averageWithNorm(new Float32Array(1), Infinity)).toThrow(RangeError);
  });
});

describe('globalNorm', () => {
  it('is the L2 norm', () => {
    expect(globalNorm(new Float32Array([3, 4]))).toBe(5);
    expect(globalNorm(new Float32Array([1, 2, 2, 4]))).toBe(5);
    expect(globalNorm(new Float32Array(0))).toBe(0);
  });

  it('accumulates in float64 (no float32 overflow for large elements)', () => {
    expect(globalNorm(new Float32Array([3e30, 4e30])) / 5e30).toBeCloseTo(1, 6);
  });
});

describe('clipByGlobalNorm', () => {
  it('scales down to clipNorm and returns the norm before clipping', () => {
    const grad = new Float32Array([3, 4]);
    expect(clipByGlobalNorm(grad, 1)).toBe(5);
    expect(grad[0]).toBeCloseTo(0.6, 6);
    expect(grad[1]).toBeCloseTo(0.8, 6);
    expect(globalNorm(grad)).toBeCloseTo(1, 6);
  });

  it('gives norm clipNorm for a larger random vector', () => {
    const grad = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i * 0.37) * 10);
    const before = globalNorm(grad);
    expect(clipByGlobalNorm(grad, 2.5)).toBe(before);
    expect(globalNorm(grad)).toBeCloseTo(2.5, 5);
  });

  it('leaves the gradient bit-identical when the norm is within clipNorm or clipping is off', () => {
    for (const clipNorm of [5, 10, 0, -1]) {
      const grad = new Float32Array([3, 4]);
      expect(clipByGlobalNorm(grad, clipNorm)).toBe(5);
      expect([...grad]).toEqual([3, 4]);
    }
  });

  it('does not touch a non-finite gradient', () => {
    const grad = new Float32Array([Infinity, 1]);
    expect(clipByGlobalNorm(grad, 1)).toBe(Infinity);
    expect([...grad]).toEqual([Infinity, 1]);
  });
});

describe('allFinite', () => {
  it('detects NaN and ±Infinity anywhere', () => {
    expect(allFinite(new Float32Array([0, -0, 1e-45, 3.4e38, -1]))).toBe(true);
    expect(allFinite(new Float32Array(0))).toBe(true);
    expect(allFinite(new Float32Array([1, NaN]))).toBe(false);
    expect(allFinite(new Float32Array([Infinity, 1]))).toBe(false);
    expect(allFinite(new Float32Array([1, 2, -Infinity]))).toBe(false);
  });
});

describe('hashParams', () => {
  it('is the first 64 bits of SHA-256 over the little-endian float32 bytes', () => {
    expect(hashParams(new Float32Array(0))).toBe('e3b0c44298fc1c14');
    // 1.0f = 0x3f800000, stored little-endian as 00 00 80 3f.
    const expected = createHash('sha256')
      .update(Uint8Array.from([0, 0, 0x80, 0x3f]))
      .digest('hex')
      .slice(0, 16);
    expect(hashParams(new Float32Array([1]))).toBe(expected);
  });

  it('depends on content only, not on the view offset', () => {
    const backing = new Float32Array([9, 1, 2, 3]);
    expect(hashParams(backing.subarray(1))).toBe(hashParams(new Float32Array([1, 2, 3])));
  });

  it('changes with a one-ulp difference and with the sign of zero', () => {
    const a = new Float32Array([1, 2, 3]);
    const b = a.slice();
    const bBits = new Uint32Array(b.buffer);
    bBits[2] = (bBits[2] ?? 0) + 1;
    expect(hashParams(b)).not.toBe(hashParams(a));
    expect(hashParams(new Float32Array([-0]))).not.toBe(hashParams(new Float32Array([0])));
  });
});
