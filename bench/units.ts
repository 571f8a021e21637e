// Parsing and printing the quantities benchmarks talk in: sizes (4KiB, 1MiB), lists (1,2,4),
// bandwidths in decimal GB/s as nccl-tests prints them.
import { InvalidArgumentError } from 'commander';

const BINARY_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** "256MiB" -> 268435456. Units are binary (KiB = 1024 B); a bare number is bytes. */
export function parseByteSize(text: string, flag: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const factor = match === null ? undefined : BINARY_UNITS[(match[2] ?? '').toLowerCase()];
  if (match === null || factor === undefined)
    throw new InvalidArgumentError(`${flag}: "${text}" is not a size like 4KiB, 64MiB or 1048576`);
  const bytes = Math.round(Number(match[1]) * factor);
  if (bytes <= 0) throw new InvalidArgumentError(`${flag}: "${text}" must be positive`);
  return bytes;
}

/** "4KiB,1MiB" -> sizes in bytes, each a whole number of float32 values. */
export function parseSizeList(flag: string): (value: string) => number[] {
  return (value) =>
    value.split(',').map((part) => {
      const bytes = parseByteSize(part, flag);
      if (bytes % 4 !== 0)
        throw new InvalidArgumentError(
          `${flag}: ${part} is not a whole number of float32 values (a multiple of 4 bytes)`,
        );
      return bytes;
    });
}

/** "1,2,4" -> [1, 2, 4]; each an integer in [min, max]. */
export function parseIntList(flag: string, min: number, max: number): (value: string) => number[] {
  return (value) =>
    value.split(',').map((part) => {
      const n = Number(part.trim());
      if (!Number.isInteger(n) || n < min || n > max)
        throw new InvalidArgumentError(`${flag}: "${part}" must be an integer from ${min} to ${max}`);
      return n;
    });
}

/** 4096 -> "4 KiB", 1536 -> "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Decimal gigabytes per second (1 GB = 1e9 bytes), the nccl-tests unit. */
export function gigabytesPerSecond(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / seconds / 1e9 : 0;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}
