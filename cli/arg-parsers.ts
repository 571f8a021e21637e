// Commander value parsers: each rejects bad input with a message naming the flag.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { FlagError } from '../shared/errors.js';

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

/** The GPUs this host has, and how that was found out (for messages). */
export interface GpuInventory {
  count: number;
  /** e.g. "nvidia-smi -L lists 2 GPUs", "no nvidia-smi and no /proc/driver/nvidia/gpus". */
  source: string;
}

/**
 * `--gpus all|N|0,2,...` to a list of GPU indices, each checked against the GPUs this host has
 * (`detect`): a worker pinned to a GPU that does not exist would silently train on the CPU while
 * recording that GPU. `all` means every GPU found; `N` means GPUs 0..N-1; a list is taken as given.
 */
export function parseGpus(value: string, detect: () => GpuInventory): number[] {
  const flag = `--gpus ${value}`;
  let indices: number[];
  if (value === 'all') {
    indices = [];
  } else if (/^\d+$/.test(value)) {
    const count = Number(value);
    if (count <= 0) throw new FlagError(flag, 'give at least one GPU');
    indices = Array.from({ length: count }, (_, i) => i);
  } else {
    const list = value.split(',').map((part) => part.trim());
    if (list.some((p) => !/^\d+$/.test(p)))
      throw new FlagError(`--gpus "${value}"`, 'use all, a count, or a comma-separated list of GPU indices like 0,2');
    indices = list.map(Number);
    if (new Set(indices).size !== indices.length) throw new FlagError(`--gpus "${value}"`, 'lists a GPU twice');
  }
  const found = detect();
  if (found.count === 0) throw new FlagError(flag, `no GPU is visible on this machine (${found.source})`);
  if (value === 'all') return Array.from({ length: found.count }, (_, i) => i);
  const missing = indices.filter((i) => i >= found.count);
  if (missing.length > 0)
    throw new FlagError(
      flag,
      `GPU ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not on this machine (${found.source})`,
    );
  return indices;
}

/** Where the NVIDIA driver lists one directory per GPU, when nvidia-smi is not installed. */
const PROC_NVIDIA_GPUS = '/proc/driver/nvidia/gpus';

/** The GPUs of this host: nvidia-smi -L, else the driver's /proc entries, else none. */
export function detectGpus(): GpuInventory {
  try {
    const count = execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((l) => l.startsWith('GPU ')).length;
    return { count, source: `nvidia-smi -L lists ${count} GPU${count === 1 ? '' : 's'}` };
  } catch {
    // No nvidia-smi, or it failed (no driver loaded): ask the driver directly.
  }
  try {
    const count = readdirSync(PROC_NVIDIA_GPUS).length;
    return { count, source: `${PROC_NVIDIA_GPUS} lists ${count} GPU${count === 1 ? '' : 's'}` };
  } catch {
    return { count: 0, source: `no nvidia-smi and no ${PROC_NVIDIA_GPUS}` };
  }
}
