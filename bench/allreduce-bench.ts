// `ringtrain bench allreduce`: N real rank processes on 127.0.0.1, each with the data port and
// communicator a worker uses, all-reduce buffers of the given sizes; the table follows
// nccl-tests (algbw = bytes/time, busbw = algbw·2(N−1)/N) and divides busbw by the same run's
// raw TCP bandwidth: one-way (what the issue asks for) and bidirectional (both processes sending
// and receiving at once, the traffic of an N = 2 ring: the ceiling when the cores that run the
// ring also do every kernel copy). Every reduced value is checked on every rank and the ranks' results must be
// bit-identical; any failure makes the command fail after printing what it measured.
import { writeFile } from 'node:fs/promises';
import { RingtrainError } from '../shared/errors.js';
import type { WireCodec } from '../worker/collectives/wire-compression.js';
import type { SizeResult } from './allreduce-rank.js';
import { BenchChild, type BenchMessage } from './bench-child.js';
import { fixed, headerLine, rowLine, type Column } from './bench-table.js';
import { measureTcpBaseline } from './tcp-baseline.js';
import { formatBytes, gigabytesPerSecond, median } from './units.js';

const START_TIMEOUT_MS = 60_000;
/** Bound on one size's warm-up + timed iterations on every rank. */
const SIZE_TIMEOUT_MS = 600_000;

export interface AllreduceBenchOptions {
  workers: number;
  sizes: number[];
  compression: WireCodec;
  warmup: number;
  iters: number;
  chunkBytes: number;
  collectiveTimeoutMs: number;
  /** Bytes per TCP baseline run, and how many runs (best is kept). */
  tcpBytes: number;
  tcpRuns: number;
  json?: string;
  write: (line: string) => void;
}

/** One measurement: the `--json` row. */
export interface AllreduceRow {
  bytes: number;
  workers: number;
  compression: WireCodec;
  /** Median over timed iterations of the slowest rank's time. */
  seconds: number;
  algbwGBps: number;
  busbwGBps: number;
  tcpGBps: number;
  busbwOverTcp: number;
  /** Per direction, with both directions busy at once. */
  tcpBidirGBps: number;
  busbwOverTcpBidir: number;
  iterations: number;
  /** Every value on every rank matched the expected sum, and all ranks ended bit-identical. */
  verified: boolean;
  maxAbsError: number;
}

const COLUMNS: ReadonlyArray<Column<AllreduceRow>> = [
  { title: 'size', width: 10, value: (r) => formatBytes(r.bytes) },
  { title: 'count', width: 10, value: (r) => String(r.bytes / 4) },
  { title: 'workers', width: 7, value: (r) => String(r.workers) },
  { title: 'time(us)', width: 11, value: (r) => fixed(r.seconds * 1e6, 1) },
  { title: 'algbw(GB/s)', width: 11, value: (r) => fixed(r.algbwGBps, 3) },
  { title: 'busbw(GB/s)', width: 11, value: (r) => fixed(r.busbwGBps, 3) },
  { title: 'busbw/TCP', width: 9, value: (r) => fixed(r.busbwOverTcp, 3) },
  { title: 'busbw/bidir', width: 11, value: (r) => fixed(r.busbwOverTcpBidir, 3) },
  { title: 'verified', width: 8, value: (r) => (r.verified ? 'ok' : 'WRONG') },
];

export async function runAllreduceBench(options: AllreduceBenchOptions): Promise<AllreduceRow[]> {
  const { write } = options;
  write(
    `# ringtrain bench allreduce: ${options.workers} worker processes, compression ${options.compression}, chunk ${formatBytes(options.chunkBytes)}`,
  );
  write(
    `# ${options.warmup} warm-up + ${options.iters} timed iterations per size (fewer above 16 MiB, at least 1 + 3); time = median over iterations of the slowest rank`,
  );
  const tcp = await measureTcpBaseline(options.tcpBytes, options.tcpRuns);
  write(
    `# TCP baseline (one loopback socket between two processes, best of ${tcp.runs.length} × ${formatBytes(tcp.bytesPerRun)}): ${tcp.gigabytesPerSecond.toFixed(3)} GB/s`,
  );
  const bidir = await measureTcpBaseline(options.tcpBytes, options.tcpRuns, true);
  write(
    `# bidirectional TCP (both processes sending and receiving at once, as in an N = 2 ring; per direction, best of ${bidir.runs.length}): ${bidir.gigabytesPerSecond.toFixed(3)} GB/s`,
  );
  write('#');
  write(headerLine(COLUMNS));
  const rows: AllreduceRow[] = [];
  const ranks = Array.from({ length: options.workers }, (_, rank) =>
    BenchChild.spawn(`rank ${rank}`, rankArgs(options, rank)),
  );
  try {
    const listening = await Promise.all(ranks.map((child) => child.next('listening', START_TIMEOUT_MS)));
    const peers = listening.map((message) => `127.0.0.1:${Number(message['port'])}`);
    for (const child of ranks) child.send({ peers });
    for (const bytes of options.sizes) {
      const results = await Promise.all(ranks.map((child) => child.next('result', SIZE_TIMEOUT_MS)));
      const row = aggregate(bytes, results.map(asSizeResult), options, {
        tcpGBps: tcp.gigabytesPerSecond,
        tcpBidirGBps: bidir.gigabytesPerSecond,
      });
      rows.push(row);
      write(rowLine(COLUMNS, row));
    }
    await Promise.all(ranks.map((child) => child.next('done', START_TIMEOUT_MS)));
    for (const child of ranks) child.send({ close: true });
    await Promise.all(ranks.map((child) => child.exited));
  } finally {
    for (const child of ranks) child.kill();
  }
  if (options.json !== undefined) await writeFile(options.json, `${JSON.stringify(rows, null, 2)}\n`);
  const wrong = rows.filter((row) => !row.verified);
  if (wrong.length > 0) {
    throw new RingtrainError(
      `all-reduce produced wrong or diverging values for ${wrong.map((r) => formatBytes(r.bytes)).join(', ')}`,
    );
  }
  return rows;
}

function rankArgs(options: AllreduceBenchOptions, rank: number): string[] {
  return [
    'bench',
    'allreduce-rank',
    '--rank',
    String(rank),
    '--world-size',
    String(options.workers),
    '--sizes',
    options.sizes.join(','),
    '--compression',
    options.compression,
    '--warmup',
    String(options.warmup),
    '--iters',
    String(options.iters),
    '--chunk-bytes',
    String(options.chunkBytes),
    '--timeout-ms',
    String(options.collectiveTimeoutMs),
  ];
}

/** The slowest rank sets each iteration's time; digests must agree for the ranks to be bit-identical. */
function aggregate(
  bytes: number,
  results: SizeResult[],
  options: AllreduceBenchOptions,
  { tcpGBps, tcpBidirGBps }: { tcpGBps: number; tcpBidirGBps: number },
): AllreduceRow {
  const iterations = Math.min(...results.map((r) => r.seconds.length));
  const slowest = Array.from({ length: iterations }, (_, i) => Math.max(...results.map((r) => r.seconds[i] ?? 0)));
  const seconds = median(slowest);
  const algbwGBps = gigabytesPerSecond(bytes, seconds);
  const busbwGBps = (algbwGBps * 2 * (options.workers - 1)) / options.workers;
  const identical = results.every((r) => r.digest === results[0]?.digest);
  return {
    bytes,
    workers: options.workers,
    compression: options.compression,
    seconds,
    algbwGBps,
    busbwGBps,
    tcpGBps,
    busbwOverTcp: tcpGBps > 0 ? busbwGBps / tcpGBps : Number.NaN,
    tcpBidirGBps,
    busbwOverTcpBidir: tcpBidirGBps > 0 ? busbwGBps / tcpBidirGBps : Number.NaN,
    iterations,
    verified: identical && results.every((r) => r.verified && r.bytes === bytes),
    maxAbsError: Math.max(...results.map((r) => r.maxAbsError)),
  };
}

function asSizeResult(message: BenchMessage): SizeResult {
  return {
    bytes: Number(message['bytes']),
    seconds: (message['seconds'] as number[] | undefined) ?? [],
    verified: message['verified'] === true,
    maxAbsError: Number(message['maxAbsError']),
    digest: String(message['digest']),
  };
}
