// Commander value parsers: each rejects bad input with a message naming the flag.
import { execFileSync } from 'node:child_process';
import { InvalidArgumentError } from 'commander';

/** Commander argument parser for positive integers. */
export function positiveInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0)
      throw new InvalidArgumentError(`${flag} must be a positive integer, got "${value}"`);
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

/**
 * `--gpus all|N|0,2,...` to a list of GPU indices. `all` asks nvidia-smi (via `detect`); `N`
 * means GPUs 0..N-1; a list is taken as given (no duplicates).
 */
export function parseGpus(value: string, detect: () => number): number[] {
  if (value === 'all') {
    const count = detect();
    if (count === 0)
      throw new InvalidArgumentError('--gpus all: no GPU is visible (nvidia-smi -L lists none or is not installed)');
    return Array.from({ length: count }, (_, i) => i);
  }
  if (/^\d+$/.test(value)) {
    const count = Number(value);
    if (count <= 0) throw new InvalidArgumentError(`--gpus ${value}: give at least one GPU`);
    return Array.from({ length: count }, (_, i) => i);
  }
  const list = value.split(',').map((part) => part.trim());
  if (list.some((p) => !/^\d+$/.test(p)))
    throw new InvalidArgumentError(
      `--gpus "${value}": use all, a count, or a comma-separated list of GPU indices like 0,2`,
    );
  const indices = list.map(Number);
  if (new Set(indices).size !== indices.length) throw new InvalidArgumentError(`--gpus "${value}": lists a GPU twice`);
  return indices;
}

/** GPUs nvidia-smi lists on this host (0 when it is missing or fails). */
export function detectGpuCount(): number {
  try {
    return execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((l) => l.startsWith('GPU ')).length;
  } catch {
    return 0;
  }
}
