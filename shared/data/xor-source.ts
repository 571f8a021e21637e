// The XOR toy set: the four corners (0,0)->0, (0,1)->1, (1,0)->1, (1,1)->0 repeated in that
// order to `samples` samples, each feature plus gaussian noise of std `noise` (seeded from the
// job's seed, so every rank builds the same samples).
import type { DataSpec } from '../job-schema.js';
import { Rng, seedFrom } from '../rng.js';
import type { RawSamples } from './raw-samples.js';

type XorSpec = Extract<DataSpec, { format: 'xor' }>;

/** Salt that separates the noise stream from every other use of the job's seed. */
const XOR_NOISE_SALT = 0x78_6f_72; // "xor"

const CORNERS: ReadonlyArray<readonly [number, number, number]> = [
  [0, 0, 0],
  [0, 1, 1],
  [1, 0, 1],
  [1, 1, 0],
];

export function makeXor(spec: XorSpec, seed: number): RawSamples {
  const count = spec.samples;
  const x = new Float32Array(count * 2);
  const classIndex = new Uint32Array(count);
  const rng = new Rng(seedFrom(seed, XOR_NOISE_SALT));
  for (let i = 0; i < count; i++) {
    const [a, b, label] = CORNERS[i % CORNERS.length] as readonly [number, number, number];
    x[2 * i] = spec.noise > 0 ? a + spec.noise * rng.normal() : a;
    x[2 * i + 1] = spec.noise > 0 ? b + spec.noise * rng.normal() : b;
    classIndex[i] = label;
  }
  return { file: 'xor', count, featureSize: 2, x, target: { kind: 'classes', classIndex, numClasses: 2 } };
}
