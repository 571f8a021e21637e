// One rank of `ringtrain bench allreduce` (the hidden `bench allreduce-rank` subcommand): a real
// data port and communicator, exactly as a worker builds them, measured size by size.
// Per iteration: fill a known pattern, a one-float barrier all-reduce (so ranks start together),
// then the timed all-reduce, a second barrier, then a check of every reduced value. Rank r holds
// (r + 1)·p(i) with p(i) a small integer, so the exact sum is p(i)·N(N+1)/2 and float32 gets it
// exactly; a ring that drops, repeats or misplaces a chunk cannot pass.
import { createHash } from 'node:crypto';
import { componentLogger, logLevel } from '../shared/logger.js';
import { reducibleFloat32Array } from '../worker/collectives/simd-add.js';
import type { RingCollective } from '../worker/collectives/ring-collective.js';
import { RingEndpoint } from '../worker/transport/ring-endpoint.js';
import { RELATIVE_CAST_ERROR, type WireCodec } from '../worker/collectives/wire-compression.js';
import { readOrder, report } from './bench-child.js';

/** Pattern values are p ∈ [−PATTERN_HALF, PATTERN_HALF], cycling with the element index. */
const PATTERN_HALF = 8;
const PATTERN_PERIOD = 2 * PATTERN_HALF + 1;
const ORDER_TIMEOUT_MS = 120_000;
const ITERATION_REFERENCE_BYTES = 16 * 1024 * 1024;

export interface AllreduceRankOptions {
  rank: number;
  worldSize: number;
  /** Address the data port listens on (the rank's own under --link). */
  host: string;
  compression: WireCodec;
  /** Buffer sizes in bytes (multiples of 4). */
  sizes: number[];
  warmup: number;
  iters: number;
  chunkBytes: number;
  collectiveTimeoutMs: number;
}

export interface SizeResult {
  bytes: number;
  /** Seconds of each timed iteration on this rank. */
  seconds: number[];
  verified: boolean;
  maxAbsError: number;
  /** sha1 of the final reduced buffer: equal on every rank when the ranks are bit-identical. */
  digest: string;
}

export async function runAllreduceRank(options: AllreduceRankOptions): Promise<void> {
  // Only errors by default: neighbours closing at the end is how every benchmark ends.
  const logger = componentLogger('bench-rank', { rank: options.rank }).child({}, { level: logLevel('error') });
  const endpoint = await RingEndpoint.start({ host: options.host, port: 0, logger });
  let comm: RingCollective | undefined;
  try {
    report({ event: 'listening', port: endpoint.port });
    const peers = (await readOrder(ORDER_TIMEOUT_MS))['peers'] as string[];
    const { rank, worldSize } = options;
    const position = {
      rank,
      worldSize,
      generation: 1,
      leftAddress: peers[(rank - 1 + worldSize) % worldSize] ?? '',
      rightAddress: peers[(rank + 1) % worldSize] ?? '',
    };
    comm = await endpoint.connect(
      position,
      { chunkBytes: options.chunkBytes, transport: 'tcp', compression: options.compression },
      options.collectiveTimeoutMs,
      logger,
    );
    const steps = { next: 0 };
    for (const bytes of options.sizes) report({ event: 'result', ...(await measureSize(comm, bytes, options, steps)) });
    report({ event: 'done' });
    // Stay in the ring until every rank is done: leaving early would break a neighbour's last collective.
    await readOrder(ORDER_TIMEOUT_MS);
  } finally {
    await comm?.close();
    await endpoint.close();
  }
}

async function measureSize(
  comm: RingCollective,
  bytes: number,
  options: AllreduceRankOptions,
  steps: { next: number },
): Promise<SizeResult> {
  // As a worker's gradient lives in its optimizer arena: a WebAssembly memory the ring reduces in place.
  const buffer = reducibleFloat32Array(bytes / 4);
  const barrier = new Float32Array(1);
  const seconds: number[] = [];
  const tolerance = patternTolerance(options.worldSize, options.compression);
  let verified = true;
  let maxAbsError = 0;
  const warmup = iterationsFor(bytes, options.warmup, 1);
  const iters = iterationsFor(bytes, options.iters, 3);
  for (let iteration = 0; iteration < warmup + iters; iteration++) {
    fillPattern(buffer, options.rank, iteration);
    const step = steps.next++;
    await comm.allReduce(barrier, step, 0);
    const started = performance.now();
    await comm.allReduce(buffer, step, 1);
    const elapsedSeconds = (performance.now() - started) / 1000;
    // A second barrier before checking: no rank verifies (a full pass over the buffer) while a
    // slower one is still in its timed all-reduce, which on a machine with fewer cores than ranks
    // would take that rank's CPU. The gloo peer does the same.
    await comm.allReduce(barrier, step, 2);
    const error = patternError(buffer, options.worldSize, iteration);
    maxAbsError = Math.max(maxAbsError, error);
    if (!(error <= tolerance)) verified = false;
    if (iteration >= warmup) seconds.push(elapsedSeconds);
  }
  const digest = createHash('sha1')
    .update(new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength))
    .digest('hex');
  return { bytes, seconds, verified, maxAbsError, digest };
}

/** Above 16 MiB the requested count shrinks in proportion to size (never below `floor`), so 256 MiB stays quick. */
export function iterationsFor(bytes: number, requested: number, floor: number): number {
  return Math.max(
    Math.min(requested, floor),
    Math.min(requested, Math.round((requested * ITERATION_REFERENCE_BYTES) / bytes)),
  );
}

/** buffer[i] = (rank + 1)·p(i + iteration), p cycling through −8..8: the iteration shifts it, so a stale result fails. */
export function fillPattern(buffer: Float32Array, rank: number, iteration: number): void {
  const factor = rank + 1;
  let p = iteration % PATTERN_PERIOD;
  for (let i = 0; i < buffer.length; i++) {
    buffer[i] = factor * (p - PATTERN_HALF);
    if (++p === PATTERN_PERIOD) p = 0;
  }
}

/** Largest |reduced − exact| (NaN anywhere gives NaN, which fails every check). */
export function patternError(buffer: Float32Array, worldSize: number, iteration: number): number {
  const factor = (worldSize * (worldSize + 1)) / 2;
  let p = iteration % PATTERN_PERIOD;
  let worst = 0;
  for (let i = 0; i < buffer.length; i++) {
    const error = Math.abs(buffer[i]! - factor * (p - PATTERN_HALF));
    if (Number.isNaN(error)) return Number.NaN;
    if (error > worst) worst = error;
    if (++p === PATTERN_PERIOD) p = 0;
  }
  return worst;
}

/** Exact for float32; for a 16-bit wire form, one cast error per hop relative to the largest partial sum. */
export function patternTolerance(worldSize: number, compression: WireCodec): number {
  const largest = (PATTERN_HALF * worldSize * (worldSize + 1)) / 2;
  return 2 * worldSize * RELATIVE_CAST_ERROR[compression] * largest;
}
