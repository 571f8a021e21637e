// `--gpus` (the CLI) and `gpus` (train()): which GPU indices a list names, checked against the
// GPUs this host has.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { FlagError } from './errors.js';

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
