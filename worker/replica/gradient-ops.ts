// Post-processing of the all-reduced gradient (average, clip, finiteness), and the parameter hash
// that proves replicas agree. Each function is a sequential loop with float64 accumulation and
// no dependence on rank or world size, so every rank gets bit-identical results from equal input.

/**
 * Divides the summed gradient by the global sample count in place (division, not multiplication
 * by 1/count, keeps each element correctly rounded) and returns globalNorm of the result, in one
 * pass. The norm is finite exactly when every averaged element
 * is: a float32 squared is at most ≈ 1.2e77, so no float64 sum of fewer than 2^53 of them
 * overflows — one pass also answers allFinite.
 */
export function averageWithNorm(grad: Float32Array, count: number): number {
  if (!(count > 0) || !Number.isFinite(count))
    throw new RangeError(`averageWithNorm: count must be a positive finite number, got ${count}`);
  let sumSquares = 0;
  for (let i = 0; i < grad.length; i++) {
    const g = Math.fround((grad[i] as number) / count);
    grad[i] = g;
    sumSquares += g * g;
  }
  return Math.sqrt(sumSquares);
}

/** L2 norm (float64 accumulation, fixed summation order). */
export function globalNorm(grad: Float32Array): number {
  let sumSquares = 0;
  for (let i = 0; i < grad.length; i++) {
    const g = grad[i] as number;
    sumSquares += g * g;
  }
  return Math.sqrt(sumSquares);
}

/**
 * Scales in place so the global norm is at most clipNorm (no-op when clipNorm <= 0 or
 * norm <= clipNorm); returns the pre-clip norm. A non-finite norm is returned untouched:
 * scaling would only turn Infinity into NaN, and the caller decides what to do via allFinite.
 * `norm` may be passed when already known (averageWithNorm).
 */
export function clipByGlobalNorm(grad: Float32Array, clipNorm: number, norm = globalNorm(grad)): number {
  if (!(clipNorm > 0) || !(norm > clipNorm) || !Number.isFinite(norm)) return norm;
  const scale = clipNorm / norm;
  for (let i = 0; i < grad.length; i++) grad[i] = (grad[i] as number) * scale;
  return norm;
}

/** True when every element is finite (no NaN, no ±Infinity). */
export function allFinite(buf: Float32Array): boolean {
  for (let i = 0; i < buf.length; i++) {
    // x - x is 0 for finite x and NaN for NaN and ±Infinity; cheaper than Number.isFinite.
    const x = buf[i] as number;
    if (x - x !== 0) return false;
  }
  return true;
}

export { hashParams } from '../../shared/param-hash.js';
