// Rows of `ringtrain bench allreduce`: the `--json` row, the printed table's columns, and how
// per-rank timings become a row (nccl-tests figures, ratios to the same run's baselines and link).
import type { WireCodec } from '../worker/collectives/wire-compression.js';
import type { SizeResult } from './allreduce-rank.js';
import type { BenchMessage } from './bench-child.js';
import { fixed, type Column } from './bench-table.js';
import type { GlooResult } from './gloo-peer.js';
import type { LinkSpec } from './link-lab.js';
import { formatBytes, gigabytesPerSecond, median } from './units.js';

/** One measurement: the `--json` row. Rows without `kind` (older files) are ringtrain's. */
export interface AllreduceRow {
  kind?: 'ringtrain' | 'gloo';
  /** gloo rows: intra-op threads per rank. */
  threads?: number;
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
  /** ringtrain rows with --peer gloo: busbw ÷ the better gloo row's busbw at this size and N. */
  vsGloo?: number;
  /** --link: the link as given, its rate in GB/s, and busbw ÷ that rate. */
  link?: string;
  linkGBps?: number;
  busbwOverLink?: number;
  iterations: number;
  /** Every value on every rank matched the expected sum (ringtrain: and all ranks ended bit-identical). */
  verified: boolean;
  maxAbsError: number;
}

/** What a table row shows besides ringtrain's own figures. */
export interface TableRow extends AllreduceRow {
  glooOneThread?: AllreduceRow;
  glooDefault?: AllreduceRow;
}

export function columns(peer: boolean, link: boolean): Array<Column<TableRow>> {
  const busbw = (r: AllreduceRow | undefined): string => (r === undefined ? '-' : fixed(r.busbwGBps, 3));
  return [
    { title: 'size', width: 10, value: (r) => formatBytes(r.bytes) },
    { title: 'count', width: 10, value: (r) => String(r.bytes / 4) },
    { title: 'workers', width: 7, value: (r) => String(r.workers) },
    { title: 'time(us)', width: 11, value: (r) => fixed(r.seconds * 1e6, 1) },
    { title: 'algbw(GB/s)', width: 11, value: (r) => fixed(r.algbwGBps, 3) },
    { title: 'busbw(GB/s)', width: 11, value: (r) => fixed(r.busbwGBps, 3) },
    ...(link
      ? [{ title: 'busbw/link', width: 10, value: (r: TableRow) => fixed(r.busbwOverLink ?? Number.NaN, 3) }]
      : [
          { title: 'busbw/TCP', width: 9, value: (r: TableRow) => fixed(r.busbwOverTcp, 3) },
          { title: 'busbw/bidir', width: 11, value: (r: TableRow) => fixed(r.busbwOverTcpBidir, 3) },
        ]),
    ...(peer
      ? [
          { title: 'gloo-1t busbw', width: 13, value: (r: TableRow) => busbw(r.glooOneThread) },
          { title: 'gloo busbw', width: 10, value: (r: TableRow) => busbw(r.glooDefault) },
          { title: 'vs gloo', width: 7, value: (r: TableRow) => fixed(r.vsGloo ?? Number.NaN, 2) },
        ]
      : []),
    { title: 'verified', width: 8, value: (r) => (r.verified ? 'ok' : 'WRONG') },
  ];
}

export interface Baselines {
  tcpGBps: number;
  tcpBidirGBps: number;
}

export function glooRow(
  result: GlooResult,
  workers: number,
  threads: number,
  options: { link?: LinkSpec },
  baselines: Baselines,
): AllreduceRow {
  return {
    kind: 'gloo',
    threads,
    ...figures(result.bytes, result.seconds, workers, options, baselines),
    compression: 'none',
    iterations: result.iterations,
    verified: result.verified,
    maxAbsError: result.maxAbsError,
  };
}

/** The slowest rank sets each iteration's time; digests must agree for the ranks to be bit-identical. */
export function aggregate(
  bytes: number,
  results: SizeResult[],
  workers: number,
  options: { compression: WireCodec; link?: LinkSpec },
  baselines: Baselines,
): AllreduceRow {
  const iterations = Math.min(...results.map((r) => r.seconds.length));
  const slowest = Array.from({ length: iterations }, (_, i) => Math.max(...results.map((r) => r.seconds[i] ?? 0)));
  const identical = results.every((r) => r.digest === results[0]?.digest);
  return {
    kind: 'ringtrain',
    ...figures(bytes, median(slowest), workers, options, baselines),
    compression: options.compression,
    iterations,
    verified: identical && results.every((r) => r.verified && r.bytes === bytes),
    maxAbsError: Math.max(...results.map((r) => r.maxAbsError)),
  };
}

/** nccl-tests' figures for one size, and their ratios to the same run's baselines and link. */
export function figures(
  bytes: number,
  seconds: number,
  workers: number,
  options: { link?: LinkSpec },
  { tcpGBps, tcpBidirGBps }: Baselines,
): Pick<
  AllreduceRow,
  | 'bytes'
  | 'workers'
  | 'seconds'
  | 'algbwGBps'
  | 'busbwGBps'
  | 'tcpGBps'
  | 'busbwOverTcp'
  | 'tcpBidirGBps'
  | 'busbwOverTcpBidir'
  | 'link'
  | 'linkGBps'
  | 'busbwOverLink'
> {
  const algbwGBps = gigabytesPerSecond(bytes, seconds);
  const busbwGBps = (algbwGBps * 2 * (workers - 1)) / workers;
  const linkGBps = options.link === undefined ? undefined : options.link.rateBitsPerSecond / 8 / 1e9;
  return {
    bytes,
    workers,
    seconds,
    algbwGBps,
    busbwGBps,
    tcpGBps,
    busbwOverTcp: tcpGBps > 0 ? busbwGBps / tcpGBps : Number.NaN,
    tcpBidirGBps,
    busbwOverTcpBidir: tcpBidirGBps > 0 ? busbwGBps / tcpBidirGBps : Number.NaN,
    ...(options.link !== undefined && linkGBps !== undefined
      ? { link: options.link.text, linkGBps, busbwOverLink: busbwGBps / linkGBps }
      : {}),
  };
}

export function asSizeResult(message: BenchMessage): SizeResult {
  return {
    bytes: Number(message['bytes']),
    seconds: (message['seconds'] as number[] | undefined) ?? [],
    verified: message['verified'] === true,
    maxAbsError: Number(message['maxAbsError']),
    digest: String(message['digest']),
  };
}
