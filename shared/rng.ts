// Deterministic randomness for everything that must replay identically on every rank and
// every run: sample orders, dataset splits, noise, dropout masks. Math.random is never used.
//
// Generator: sfc32 (Small Fast Counting, 128-bit state, period >= 2^32) seeded through
// splitmix32. Seeds are derived from structured keys with seedFrom (murmur3-style mixing), so
// seedFrom(seed, epoch) and seedFrom(seed, step, sampleIndex) give unrelated streams.

const TWO_POW_32 = 0x1_0000_0000;
const TWO_POW_53 = 2 ** 53;

/** Mixes integers into a 32-bit seed (e.g. seedFrom(seed, epoch), seedFrom(seed, step, sampleIndex)). */
export function seedFrom(...parts: number[]): number {
  let h = 0x9e3779b9 ^ parts.length;
  for (const part of parts) {
    if (!Number.isSafeInteger(part)) throw new RangeError(`seedFrom: ${part} is not a safe integer`);
    // Both 32-bit halves take part, so 2^32 + 1 and 1 give different seeds.
    h = absorbWord(h, part >>> 0);
    h = absorbWord(h, Math.floor(part / TWO_POW_32) >>> 0);
  }
  return fmix32(h ^ (parts.length * 8)) >>> 0;
}

/** One murmur3_32 block step. */
function absorbWord(h: number, word: number): number {
  let k = Math.imul(word, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  let out = h ^ k;
  out = (out << 13) | (out >>> 19);
  return (Math.imul(out, 5) + 0xe6546b64) | 0;
}

/** murmur3 finaliser: every input bit affects every output bit. */
function fmix32(h: number): number {
  let x = h;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x;
}

/** sfc32 generator. Its whole state is four uint32 words, exposed by state() for checkpoints. */
export class Rng {
  private a = 0;
  private b = 0;
  private c = 0;
  private d = 0;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`Rng: seed ${seed} is not a safe integer`);
    // splitmix32 spreads a small seed over all four words; 12 warm-up draws are sfc32's usual.
    let s = seedFrom(seed);
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) | 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** Uniform integer in [0, 2^32). */
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  next(): number {
    const high = this.nextUint32() >>> 5; // 27 bits
    const low = this.nextUint32() >>> 6; // 26 bits
    return (high * 0x400_0000 + low) / TWO_POW_53;
  }

  /**
   * Uniform integer in [0, maxExclusive), maxExclusive <= 2^32. Uses 53-bit multiplication
   * instead of rejection sampling, so it always takes exactly two draws; the bias is below 2^-21.
   */
  nextInt(maxExclusive: number): number {
    if (!Number.isInteger(maxExclusive) || maxExclusive < 1 || maxExclusive > TWO_POW_32) {
      throw new RangeError(`Rng.nextInt: maxExclusive must be an integer in [1, 2^32], got ${maxExclusive}`);
    }
    return Math.floor(this.next() * maxExclusive);
  }

  /** Standard normal sample (Box-Muller). Draws two uniforms per call and keeps no spare, so state() stays four words. */
  normal(): number {
    const u1 = 1 - this.next(); // (0, 1]: log stays finite
    const u2 = this.next();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** The four state words as unsigned integers; Rng.fromState(state()) continues the same stream. */
  state(): number[] {
    return [this.a >>> 0, this.b >>> 0, this.c >>> 0, this.d >>> 0];
  }

  static fromState(state: readonly number[]): Rng {
    if (state.length !== 4 || !state.every((w) => Number.isInteger(w) && w >= 0 && w < TWO_POW_32)) {
      throw new RangeError(`Rng.fromState: expected four uint32 words, got [${state.join(', ')}]`);
    }
    const rng = new Rng(0);
    [rng.a, rng.b, rng.c, rng.d] = state.map((w) => w | 0) as [number, number, number, number];
    return rng;
  }
}

/** Fisher–Yates permutation of 0..n-1 (Uint32Array). */
export function permutation(n: number, rng: Rng): Uint32Array {
  if (!Number.isInteger(n) || n < 0 || n > TWO_POW_32) throw new RangeError(`permutation: bad length ${n}`);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const tmp = out[i] as number;
    out[i] = out[j] as number;
    out[j] = tmp;
  }
  return out;
}
