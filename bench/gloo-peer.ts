// `bench allreduce --peer gloo`: PyTorch's gloo all-reduce (bench/peers/gloo_allreduce.py) on the
// same sizes, iteration counts, pattern and timing as ringtrain's ranks, one Python process per
// rank (so each may sit in its own network namespace under --link). Run twice per world size:
// one intra-op thread per rank, and torch's default. Its figures are a peer's, printed, never
// asserted.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RingtrainError } from '../shared/errors.js';
import { BenchChild, type BenchMessage } from './bench-child.js';
import { median } from './units.js';

const SCRIPT = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'bench',
  'peers',
  'gloo_allreduce.py',
);
const START_TIMEOUT_S = 120;
const SIZE_TIMEOUT_MS = 600_000;

/** Where a gloo rank runs: argv prefix, the address rank 0 listens on, and its interface. */
export interface GlooPlacement {
  prefix(rank: number): string[];
  masterAddress: string;
  /** GLOO_SOCKET_IFNAME for `rank` (undefined: gloo picks). */
  ifname(rank: number): string | undefined;
}

export const LOOPBACK_PLACEMENT: GlooPlacement = { prefix: () => [], masterAddress: '127.0.0.1', ifname: () => 'lo' };

export interface GlooSize {
  bytes: number;
  warmup: number;
  iters: number;
}

/** One size as gloo did it: the median over iterations of the slowest rank. */
export interface GlooResult {
  bytes: number;
  seconds: number;
  iterations: number;
  verified: boolean;
  maxAbsError: number;
}

export interface GlooRun {
  /** Intra-op threads per rank as torch reported them. */
  threads: number;
  version: string;
  results: GlooResult[];
}

/** Runs gloo's all-reduce over `workers` ranks; `threads` 0 leaves torch's default. */
export async function runGlooPeer(
  python: string,
  workers: number,
  sizes: GlooSize[],
  threads: number,
  port: number,
  placement: GlooPlacement = LOOPBACK_PLACEMENT,
): Promise<GlooRun> {
  const ranks = Array.from({ length: workers }, (_, rank) => {
    const spec = {
      rank,
      worldSize: workers,
      masterAddr: placement.masterAddress,
      masterPort: port,
      threads,
      ifname: placement.ifname(rank) ?? null,
      sizes,
      timeoutS: START_TIMEOUT_S,
    };
    return BenchChild.spawnProgram(`gloo rank ${rank}`, [
      ...placement.prefix(rank),
      python,
      SCRIPT,
      JSON.stringify(spec),
    ]);
  });
  try {
    const results: GlooResult[] = [];
    for (const size of sizes) {
      const reports = await Promise.all(ranks.map((child) => child.next('result', SIZE_TIMEOUT_MS)));
      results.push(aggregateGloo(size.bytes, reports));
    }
    const done = await Promise.all(ranks.map((child) => child.next('done', SIZE_TIMEOUT_MS)));
    const codes = await Promise.all(ranks.map((child) => child.exited));
    if (codes.some((code) => code !== 0)) throw new RingtrainError(`a gloo rank exited with ${codes.join(', ')}`);
    return { threads: Number(done[0]?.['threads']), version: String(done[0]?.['torch']), results };
  } finally {
    for (const child of ranks) child.kill();
  }
}

/** The slowest rank sets each iteration's time, as for ringtrain's rows. */
export function aggregateGloo(bytes: number, reports: BenchMessage[]): GlooResult {
  const series = reports.map((r) => (r['seconds'] as number[] | undefined) ?? []);
  const iterations = Math.min(...series.map((s) => s.length));
  const slowest = Array.from({ length: iterations }, (_, i) => Math.max(...series.map((s) => s[i] ?? 0)));
  return {
    bytes,
    seconds: median(slowest),
    iterations,
    verified: reports.every((r) => r['verified'] === true && Number(r['bytes']) === bytes),
    maxAbsError: Math.max(...reports.map((r) => Number(r['maxAbsError']))),
  };
}
