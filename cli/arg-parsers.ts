// Commander value parsers: each rejects bad input with a message naming the flag. (`--gpus` is
// parsed by shared/gpus.ts, which the library's train() uses too.)
import { InvalidArgumentError } from 'commander';
import { parseHttpAddress } from '../shared/http-address.js';

export { detectGpus, parseGpus, type GpuInventory } from '../shared/gpus.js';

/** Commander argument parser for positive integers. */
export function positiveInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0)
      throw new InvalidArgumentError(`${flag} must be a positive integer, got "${value}"`);
    return n;
  };
}

/** Commander argument parser for positive finite numbers (a learning rate). */
export function positiveNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = value.trim() === '' ? Number.NaN : Number(value);
    if (!Number.isFinite(n) || n <= 0)
      throw new InvalidArgumentError(`${flag} must be a positive number, got "${value}"`);
    return n;
  };
}

/** Commander argument parser for non-negative integers (ports, seeds). */
export function nonNegativeInt(flag: string, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > max)
      throw new InvalidArgumentError(`${flag} must be an integer from 0 to ${max}, got "${value}"`);
    return n;
  };
}

/** Commander argument parser for `--http`: a port or ADDR:PORT, kept as given (train() parses it). */
export function httpAddress(flag: string): (value: string) => string {
  return (value) => {
    if (parseHttpAddress(value) === undefined)
      throw new InvalidArgumentError(`${flag} must be a port (0 = any free port) or ADDR:PORT, got "${value}"`);
    return value;
  };
}
