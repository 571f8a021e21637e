// fp16/bf16 wire compression: exact casts against reference values, round-trip error bounds,
// no overflow for huge magnitudes, non-finite values preserved, and re-encoding stability.
import { describe, expect, it } from 'vitest';
import {
  chooseScaleExponent,
  decodeScaled,
  encodeScaled,
  float32BitsToBf16,
  float32BitsToFp16,
  quantizeInPlace,
  RELATIVE_CAST_ERROR,
  type NarrowCodec,
} from '../../worker/collectives/wire-compression.js';

const CODECS: NarrowCodec[] = ['fp16', 'bf16'];

function bitsOf(value: number): number {
  return new Uint32Array(Float32Array.of(value).buffer)[0]!;
}

function makeRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

function roundTrip(
  values: Float32Array,
  codec: NarrowCodec,
): { decoded: Float32Array; exponent: number; wire: Uint16Array } {
  const exponent = chooseScaleExponent(values, codec);
  const wire = new Uint16Array(values.length);
  encodeScaled(values, codec, exponent, wire);
  const decoded = new Float32Array(values.length);
  decodeScaled(wire, codec, exponent, decoded);
  return { decoded, exponent, wire };
}

describe('scalar casts', () => {
  it('matches IEEE binary16 on normals, subnormals, ties and specials', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00], // ties to even at the top: rounds up to infinity
      [2 ** -14, 0x0400],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // exact tie between 0 and the smallest subnormal: even is 0
      [3 * 2 ** -26, 0x0001],
      [1 + 2 ** -11, 0x3c00], // tie: stays on the even mantissa
      [1 + 3 * 2 ** -11, 0x3c02], // tie: rounds up to the even mantissa
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
    ];
    for (const [value, expected] of cases) expect(float32BitsToFp16(bitsOf(value)), String(value)).toBe(expected);
    expect(float32BitsToFp16(bitsOf(Number.NaN)) & 0x7c00).toBe(0x7c00);
    expect(float32BitsToFp16(bitsOf(Number.NaN)) & 0x03ff).not.toBe(0);
  });

  it('matches bfloat16 rounding to nearest even', () => {
    expect(float32BitsToBf16(bitsOf(1))).toBe(0x3f80);
    expect(float32BitsToBf16(bitsOf(-1))).toBe(0xbf80);
    expect(float32BitsToBf16(bitsOf(1 + 2 ** -8))).toBe(0x3f80); // tie, even stays
    expect(float32BitsToBf16(bitsOf(1 + 3 * 2 ** -8))).toBe(0x3f82); // tie, rounds up to even
    expect(float32BitsToBf16(bitsOf(Infinity))).toBe(0x7f80);
    expect(float32BitsToBf16(bitsOf(Number.NaN)) & 0x7fc0).toBe(0x7fc0);
  });
});

describe.each(CODECS)('%s round trip', (codec) => {
  it('stays within half an ulp of the scaled chunk maximum', () => {
    const random = makeRandom(codec === 'fp16' ? 1 : 2);
    for (const magnitude of [1e-30, 1e-6, 1, 3e4, 1e12, 3e38]) {
      const values = Float32Array.from({ length: 4096 }, () => (random() * 2 - 1) * magnitude);
      const { decoded } = roundTrip(values, codec);
      let max = 0;
      for (const v of values) max = Math.max(max, Math.abs(v));
      for (let i = 0; i < values.length; i++) {
        const error = Math.abs(decoded[i]! - values[i]!);
        // Relative to the value, plus the fp16 subnormal floor at 2^-24 of the scaled range.
        const bound = RELATIVE_CAST_ERROR[codec] * Math.abs(values[i]!) * 1.0001 + max * 2 ** -38;
        if (error > bound) expect.fail(`magnitude ${magnitude} element ${i}: ${values[i]} -> ${decoded[i]}`);
      }
    }
  });

  it('never overflows: values near the float32 maximum come back finite', () => {
    const values = Float32Array.of(3.4e38, -3.4e38, 1.7e38, 1, -65504, 1e-45);
    const { decoded } = roundTrip(values, codec);
    for (let i = 0; i < 3; i++) {
      expect(Number.isFinite(decoded[i]!)).toBe(true);
      expect(Math.abs(decoded[i]! - values[i]!)).toBeLessThanOrEqual(Math.abs(values[i]!) * RELATIVE_CAST_ERROR[codec]);
    }
    // Without the scale, fp16 would turn 65536 into infinity; with it, the sign and size survive.
    const big = roundTrip(Float32Array.of(65536, -1e6), codec).decoded;
    expect(big[0]).toBe(65536);
    expect(Math.abs(big[1]! + 1e6)).toBeLessThanOrEqual(1e6 * RELATIVE_CAST_ERROR[codec]);
  });

  it('keeps infinities and NaN, and scales by the finite values only', () => {
    const values = Float32Array.of(Infinity, -Infinity, Number.NaN, 0.5, -0.25);
    const { decoded } = roundTrip(values, codec);
    expect(decoded[0]).toBe(Infinity);
    expect(decoded[1]).toBe(-Infinity);
    expect(Number.isNaN(decoded[2])).toBe(true);
    expect([decoded[3], decoded[4]]).toEqual([0.5, -0.25]);
  });

  it('encodes an all-zero chunk with exponent 0 and decodes zeros', () => {
    const { decoded, exponent } = roundTrip(new Float32Array(7), codec);
    expect(exponent).toBe(0);
    expect([...decoded]).toEqual(new Array(7).fill(0));
  });

  it('re-encodes decoded values to the same bytes with the same exponent (forwarding is lossless)', () => {
    const random = makeRandom(3);
    const values = Float32Array.from({ length: 2000 }, () => (random() * 2 - 1) ** 7 * 123.456);
    const { decoded, exponent, wire } = roundTrip(values, codec);
    const again = new Uint16Array(values.length);
    encodeScaled(decoded, codec, exponent, again);
    expect(Buffer.from(again.buffer).equals(Buffer.from(wire.buffer))).toBe(true);
    const quantized = values.slice();
    quantizeInPlace(quantized, codec, exponent, new Uint16Array(values.length));
    expect(Buffer.from(quantized.buffer).equals(Buffer.from(decoded.buffer))).toBe(true);
  });
});

describe('scale exponent', () => {
  it('puts the chunk maximum into the target binade, exactly at powers of two', () => {
    expect(chooseScaleExponent(Float32Array.of(1), 'fp16')).toBe(14);
    expect(chooseScaleExponent(Float32Array.of(-(2 ** 20), 3), 'fp16')).toBe(-6);
    expect(chooseScaleExponent(Float32Array.of(0.75), 'bf16')).toBe(1);
    expect(chooseScaleExponent(Float32Array.of(Infinity, 4), 'bf16')).toBe(-2);
  });
});
