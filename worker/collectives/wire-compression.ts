// fp16 / bf16 wire form of float32 gradient chunks, with a power-of-two scale per chunk.
//
// Why a scale, and why a power of two:
//   - fp16 overflows above 65504, so a chunk is multiplied by 2^e before the cast, with e chosen
//     from the chunk's largest finite magnitude (fp16: into [2^14, 2^15); bf16: into [1, 2)).
//     Nothing finite can overflow, and small values keep as much of the format's range as possible.
//   - Multiplying by 2^e is exact in float32, so the scale adds no rounding of its own; decoding
//     multiplies by 2^-e, also exact.
// Non-finite values survive the round trip (±Inf stays ±Inf, NaN stays NaN), so the trainer
// still sees a poisoned gradient and skips the step.
// Invariant for bit-identical replicas: decode(encode(x, e), e) re-encoded with the same e gives
// the same bytes, so a chunk forwarded with the exponent it arrived with decodes identically on
// every rank.

export const WIRE_CODECS = ['none', 'fp16', 'bf16'] as const;
export type WireCodec = (typeof WIRE_CODECS)[number];
/** A codec that actually narrows the payload. */
export type NarrowCodec = Exclude<WireCodec, 'none'>;

/** Wire bytes per element for each codec. */
export const WIRE_BYTES_PER_ELEMENT: Readonly<Record<WireCodec, number>> = { none: 4, fp16: 2, bf16: 2 };

/** Largest rounding error of one cast, relative to the scaled chunk maximum (half an ulp at the top binade). */
export const RELATIVE_CAST_ERROR: Readonly<Record<WireCodec, number>> = { none: 0, fp16: 2 ** -11, bf16: 2 ** -8 };

/** log2 of the binade the chunk maximum is scaled into. */
const TARGET_BINADE: Readonly<Record<NarrowCodec, number>> = { fp16: 14, bf16: 0 };

const FLOAT32_MAX = 3.4028234663852886e38;
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);
let fp16Table: Float32Array | undefined;

/** Largest |x| over the finite values (0 when there are none). */
export function maxAbsFinite(values: Float32Array): number {
  let max = 0;
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i]!);
    if (a > max && a !== Infinity) max = a;
  }
  return max;
}

/** Exponent e such that maxAbsFinite(values)·2^e lies in the codec's target binade; 0 for an all-zero chunk. */
export function chooseScaleExponent(values: Float32Array, codec: NarrowCodec): number {
  const max = maxAbsFinite(values);
  return max === 0 ? 0 : TARGET_BINADE[codec] - floorLog2(max);
}

/** Writes values·2^exponent, cast to the codec's 16-bit form, into `out` (same length). */
export function encodeScaled(values: Float32Array, codec: NarrowCodec, exponent: number, out: Uint16Array): void {
  if (out.length < values.length) throw new RangeError(`encode needs ${values.length} slots, got ${out.length}`);
  const scale = 2 ** exponent;
  const cast = codec === 'fp16' ? float32BitsToFp16 : float32BitsToBf16;
  for (let i = 0; i < values.length; i++) {
    scratchF32[0] = values[i]! * scale;
    out[i] = cast(scratchU32[0]!);
  }
}

/** Inverse of `encodeScaled`: out[i] = value(input[i])·2^-exponent. */
export function decodeScaled(input: Uint16Array, codec: NarrowCodec, exponent: number, out: Float32Array): void {
  if (out.length < input.length) throw new RangeError(`decode needs ${input.length} slots, got ${out.length}`);
  const unscale = 2 ** -exponent;
  // Only a chunk whose maximum sits at the very top of float32 can round up past it.
  if (TARGET_BINADE[codec] + 1 - exponent >= 128) {
    decodeSaturating(input, codec, unscale, out);
    return;
  }
  if (codec === 'fp16') {
    const table = fp16Values();
    for (let i = 0; i < input.length; i++) out[i] = table[input[i]!]! * unscale;
    return;
  }
  for (let i = 0; i < input.length; i++) {
    scratchU32[0] = input[i]! << 16;
    out[i] = scratchF32[0]! * unscale;
  }
}

/** Slow path of `decodeScaled`: a finite wire value that overflows float32 becomes ±FLT_MAX. */
function decodeSaturating(input: Uint16Array, codec: NarrowCodec, unscale: number, out: Float32Array): void {
  for (let i = 0; i < input.length; i++) {
    const h = input[i]!;
    scratchU32[0] = h << 16;
    const wire = codec === 'fp16' ? fp16Values()[h]! : scratchF32[0]!;
    const value = Math.fround(wire * unscale);
    out[i] = Number.isFinite(wire) && !Number.isFinite(value) ? Math.sign(wire) * FLOAT32_MAX : value;
  }
}

/** Replaces `values` by what a receiver decodes from encode(values, exponent); `scratch` holds the encoding. */
export function quantizeInPlace(
  values: Float32Array,
  codec: NarrowCodec,
  exponent: number,
  scratch: Uint16Array,
): void {
  encodeScaled(values, codec, exponent, scratch);
  decodeScaled(scratch.subarray(0, values.length), codec, exponent, values);
}

/** IEEE binary16 bits of the float32 with bits `f`, rounded to nearest even. */
export function float32BitsToFp16(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const abs = f & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | (abs > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (abs >= 0x47800000) return sign | 0x7c00; // ≥ 65536 after rounding: overflow (never reached after scaling)
  if (abs >= 0x38800000) {
    // Normal: rebias the exponent (127 → 15) and round away 13 mantissa bits.
    const rebased = abs - 0x38000000;
    return sign | ((rebased + 0x0fff + ((rebased >>> 13) & 1)) >>> 13);
  }
  if (abs < 0x33000000) return sign; // below 2^-25: rounds to zero
  // Subnormal: value = m·2^-24 with m = mantissa >> (126 − exponent), rounded to nearest even.
  const exponent = abs >>> 23;
  const mantissa = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - exponent;
  const half = 1 << (shift - 1);
  const rest = mantissa & ((1 << shift) - 1);
  let m = mantissa >>> shift;
  if (rest > half || (rest === half && (m & 1) === 1)) m++;
  return sign | m;
}

/** bfloat16 bits of the float32 with bits `f`, rounded to nearest even; NaN stays a quiet NaN. */
export function float32BitsToBf16(f: number): number {
  if ((f & 0x7fffffff) > 0x7f800000) return ((f >>> 16) & 0x8000) | 0x7fc0;
  return ((f + 0x7fff + ((f >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Value of every binary16 bit pattern, built once (256 KiB). */
function fp16Values(): Float32Array {
  if (fp16Table !== undefined) return fp16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) table[h] = sign * mantissa * 2 ** -24;
    else if (exponent === 31) table[h] = mantissa === 0 ? sign * Infinity : Number.NaN;
    else table[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  fp16Table = table;
  return table;
}

/** ⌊log2 x⌋ for a positive finite x, exact at powers of two (Math.log2 alone can be off by one). */
function floorLog2(x: number): number {
  let k = Math.floor(Math.log2(x));
  while (2 ** k > x) k--;
  while (2 ** (k + 1) <= x) k++;
  return k;
}
